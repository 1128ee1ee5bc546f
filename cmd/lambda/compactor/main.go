// Command compactor is the scheduled Lambda of the daily compaction: an
// EventBridge rule (for example cron(30 2 * * ? *), after the grace period for
// late events) invokes it, and it compacts yesterday (UTC) with the same code
// as `meter compact`, writing the chargeback CSV, daily Parquet and manifest.
//
// Environment:
//
//	METER_STORE   the store, s3://BUCKET/PREFIX (file://DIR for tests)
//	METER_PRICES  the price CSV: a path in the deployment package, or
//	              s3://BUCKET/KEY; empty uses the shipped price file
//	METER_SCALE   optional: CSV cost places (default exact)
//	METER_ATHENA_ABOVE_EVENTS, METER_ATHENA_WORKGROUP, METER_ATHENA_DATABASE,
//	METER_ATHENA_OUTPUT, METER_RECOMPACT_DAYS: see compaction.Env* (a day
//	larger than the threshold is compacted in Athena; every run also
//	recompacts the recent days that received late events)
//
// An event's "detail" may name a day to recompact: {"day": "YYYY-MM-DD"}
// (then only that day is compacted).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/config"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// Output is what an invocation returns (and logs).
type Output struct {
	Day         string `json:"day"`
	Revision    int    `json:"revision"`
	Unchanged   bool   `json:"unchanged"`
	RowsRead    int    `json:"rows_read"`
	Duplicates  int    `json:"duplicates_dropped"`
	Invocations int64  `json:"invocations"`
	TotalCost   string `json:"total_cost"`
	CSVKey      string `json:"csv_key"`
	Engine      string `json:"engine"`
	// Recompacted lists the earlier days compacted again for late events.
	Recompacted []RecompactedDay `json:"recompacted,omitempty"`
}

// Handler compacts one day per scheduled event.
type Handler struct {
	Getenv func(string) string
	Now    func() time.Time
	Logger *slog.Logger
	// Metrics receives one CloudWatch EMF line per compaction (stdout in Lambda).
	Metrics *metrics.EMF
}

// Handle compacts the day before the event's time (UTC), or the day its
// detail names.
func (h *Handler) Handle(ctx context.Context, ev events.EventBridgeEvent) (out *Output, err error) {
	start := time.Now()
	defer func() {
		dims := map[string]string{"stage": "compactor"}
		if err != nil {
			h.Metrics.Write(dims, []metrics.Value{{Name: metrics.CompactionFailures, Value: 1, Unit: "Count"}}, map[string]any{"error": err.Error()})
			return
		}
		cost, _ := strconv.ParseFloat(out.TotalCost, 64) // a metric's value; the bill is the CSV
		h.Metrics.Write(dims, []metrics.Value{
			{Name: metrics.CompactionRowsRead, Value: float64(out.RowsRead), Unit: "Count"},
			{Name: metrics.CompactionDuplicates, Value: float64(out.Duplicates), Unit: "Count"},
			{Name: metrics.CompactionCostUSD, Value: cost, Unit: "None"},
			{Name: metrics.CompactionSeconds, Value: time.Since(start).Seconds(), Unit: "Seconds"},
			{Name: metrics.CompactionFailures, Value: 0, Unit: "Count"},
		}, map[string]any{"day": out.Day, "revision": out.Revision, "unchanged": out.Unchanged, "invocations": out.Invocations})
	}()
	at := ev.Time
	if at.IsZero() {
		at = h.Now()
	}
	day := at.UTC().AddDate(0, 0, -1).Format(schemas.DayLayout)
	named := false
	if len(ev.Detail) > 0 {
		var d struct {
			Day string `json:"day"`
		}
		if err := json.Unmarshal(ev.Detail, &d); err == nil && d.Day != "" {
			day, named = d.Day, true
		}
	}
	loc := h.Getenv("METER_STORE")
	if loc == "" {
		return nil, fmt.Errorf("METER_STORE is not set")
	}
	st, err := store.Open(ctx, loc)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", loc, err)
	}
	book, priceCSV, err := config.PriceFile(ctx, h.Getenv("METER_PRICES"))
	if err != nil {
		return nil, err
	}
	engines, err := compaction.EnginesFromEnv(ctx, h.Getenv, loc, priceCSV)
	if err != nil {
		return nil, err
	}
	scale := -1
	if s := h.Getenv("METER_SCALE"); s != "" {
		if scale, err = strconv.Atoi(s); err != nil || scale > 12 {
			return nil, fmt.Errorf("METER_SCALE %q: want a number of places up to 12", s)
		}
	}
	cfg := compaction.Config{Store: st, Day: day, Prices: book, Scale: compaction.Places(scale), Now: h.Now, TempDir: os.TempDir()}
	res, err := engines.Compact(ctx, cfg)
	var unpriced *compaction.UnpricedError
	if err != nil && !errors.As(err, &unpriced) {
		return nil, fmt.Errorf("compacting %s: %w", day, err)
	}
	m := res.Manifest
	out = &Output{Day: day, Revision: m.Revision, Unchanged: res.Unchanged, RowsRead: m.RowsRead, Duplicates: m.DuplicatesDropped,
		Invocations: m.Totals.Invocations, TotalCost: m.Totals.TotalCost, CSVKey: res.CSVKey, Engine: m.Engine}
	h.Logger.Info("compacted", "day", day, "engine", m.Engine, "revision", m.Revision, "unchanged", res.Unchanged, "rows_read", m.RowsRead,
		"duplicates", m.DuplicatesDropped, "total_cost", m.Totals.TotalCost, "buckets", res.Buckets)
	var errs []error
	if unpriced != nil {
		errs = append(errs, fmt.Errorf("compacting %s: %w", day, err))
	}
	if !named {
		// Also when yesterday has unpriced usage: that must not hold back other days' late events.
		var lateErr error
		if out.Recompacted, lateErr = h.recompactLate(ctx, cfg, at, engines); lateErr != nil {
			errs = append(errs, lateErr)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func main() {
	h := &Handler{Getenv: os.Getenv, Now: time.Now, Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil)), Metrics: metrics.NewEMF(os.Stdout)}
	lambda.Start(h.Handle)
}
