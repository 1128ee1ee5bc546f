// Command reconciler is the daily reconciliation as a scheduled AWS Lambda
// function (runtime provided.al2023, arm64, built as bootstrap with -tags
// lambda.norpc). An EventBridge rule invokes it after CloudTrail has
// delivered the day (for example cron(0 4 * * ? *)); it reconciles yesterday
// (UTC) with the same code as `meter reconcile` and writes
// reconciliation/dt=DAY/reconciliation-DAY.csv and summary.json.
//
// Environment:
//
//	METER_STORE               the store, s3://BUCKET/PREFIX (file://DIR for tests). Required.
//	METER_CLOUDTRAIL          lookup, or the trail's files s3://BUCKET/PREFIX. Required.
//	METER_DELIVERY_ALLOWANCE  metered calls younger than this are not yet
//	                          reported unconfirmed (default 1h, as the CLI)
//
// Unmetered calls are not an error of the function: they are in the report and
// in the meter_reconcile_unmetered_calls metric (an EMF line on stdout), which
// the meter-unmetered-calls alarm watches. An error (store or CloudTrail
// unreadable) fails the invocation, so Lambda retries it and then hands the
// event to the function's on-failure destination.
//
// An event's "detail" may name a day to reconcile: {"day": "YYYY-MM-DD"}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/reconcile"
	"github.com/meter-dev/meter/schemas"
)

// Output is what an invocation returns (and logs).
type Output struct {
	Day        string         `json:"day"`
	Counts     map[string]int `json:"counts"`
	ReportKey  string         `json:"report_key"`
	SummaryKey string         `json:"summary_key"`
}

// Handler reconciles one day per scheduled event.
type Handler struct {
	Getenv  func(string) string
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *metrics.EMF
}

// Handle reconciles the day before the event's time (UTC), or the day its
// detail names.
func (h *Handler) Handle(ctx context.Context, ev events.EventBridgeEvent) (*Output, error) {
	at := ev.Time
	if at.IsZero() {
		at = h.Now()
	}
	day := at.UTC().AddDate(0, 0, -1).Format(schemas.DayLayout)
	if len(ev.Detail) > 0 {
		var d struct {
			Day string `json:"day"`
		}
		if err := json.Unmarshal(ev.Detail, &d); err == nil && d.Day != "" {
			if _, err := time.Parse(schemas.DayLayout, d.Day); err != nil {
				return nil, fmt.Errorf("detail.day %q: want YYYY-MM-DD", d.Day)
			}
			day = d.Day
		}
	}
	loc, trail := h.Getenv("METER_STORE"), h.Getenv("METER_CLOUDTRAIL")
	if loc == "" || trail == "" {
		return nil, fmt.Errorf("METER_STORE and METER_CLOUDTRAIL are required")
	}
	allowance := time.Hour
	if s := h.Getenv("METER_DELIVERY_ALLOWANCE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("METER_DELIVERY_ALLOWANCE %q: want a duration such as 1h", s)
		}
		allowance = d
	}
	st, err := store.Open(ctx, loc)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", loc, err)
	}
	rep, err := reconcile.Run(ctx, reconcile.Config{Day: day, Store: st, CloudTrail: trail, Threshold: -1,
		DeliveryAllowance: allowance, Now: h.Now, Metrics: h.Metrics})
	if err != nil {
		return nil, fmt.Errorf("reconciling %s: %w", day, err)
	}
	report, summary := schemas.ReconciliationKeys(day)
	h.Logger.Info("reconciled", "day", day, "counts", rep.Counts, "usage_events", rep.UsageEvents, "trail_events", rep.TrailEvents)
	return &Output{Day: day, Counts: rep.Counts, ReportKey: report, SummaryKey: summary}, nil
}

func main() {
	h := &Handler{Getenv: os.Getenv, Now: time.Now, Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil)), Metrics: metrics.NewEMF(os.Stdout)}
	lambda.Start(h.Handle)
}
