package aggregator

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/schemas"
)

// Pricer prices events; *pricing.Book is the real one.
type Pricer interface {
	// Cost prices one event exactly.
	Cost(e *schemas.Event) (schemas.Costs, error)
	// EffectiveFrom returns when the prices in force for a model, tier and
	// region at a time took effect (false: none is). Prices change only
	// there, which lets a compaction learn each rate once and price events
	// in fixed point.
	EffectiveFrom(modelID, tier, region string, at time.Time) (time.Time, bool)
}

// ChargebackRow is one row of the chargeback CSV: a day's usage of one team,
// cost center and model. Tokens and costs count successful calls only.
type ChargebackRow struct {
	Day, TeamID, CostCenter, ModelID  string
	Invocations                       int64
	InputTokens, OutputTokens         int64
	CacheReadTokens, CacheWriteTokens int64
	ImageCount                        int64
	Costs                             schemas.Costs
	Denied, Throttled, Errors         int64
}

// DayResult is a compacted, priced day.
type DayResult struct {
	Day        string
	Chargeback []ChargebackRow    // sorted by team, cost center, model
	Daily      []schemas.DailyRow // one per request_id, sorted by team, model, time, request_id
	RowsRead   int                // events read, duplicates included
	Duplicates int                // events dropped because their request_id was already counted
	OtherDay   int                // events read whose event time is not on Day (ignored)
	Totals     ChargebackRow      // the sum of every chargeback row
}

// CompactDay deduplicates a day's events exactly by request_id, prices each
// successful call with the price in force at its time, and sums the chargeback.
// Of several events with one request_id the earliest (by time, then event_id)
// is kept, so the result does not depend on the order events arrive in.
// A successful call of a model with no price fails the whole day: nothing is
// billed at a silent zero.
//
// CompactDay holds the whole day in memory; a Compactor does the same work
// bucket by bucket for days larger than that.
func CompactDay(day string, events []schemas.Event, p Pricer) (*DayResult, error) {
	c, err := NewCompactor(day, p)
	if err != nil {
		return nil, err
	}
	daily, err := c.Bucket(events)
	if err != nil {
		return nil, err
	}
	res := c.Result()
	res.Daily = daily
	return res, nil
}

// count adds an event's calls and tokens to the row; costs are summed by the caller.
func (g *ChargebackRow) count(e *schemas.Event) {
	switch e.Status {
	case schemas.StatusSuccess:
		g.Invocations++
		g.InputTokens += e.InputTokens
		g.OutputTokens += e.OutputTokens
		g.CacheReadTokens += e.CacheReadInputTokens
		g.CacheWriteTokens += e.CacheWriteInputTokens
		g.ImageCount += e.ImageCount
	case schemas.StatusDenied:
		g.Denied++
	case schemas.StatusThrottled:
		g.Throttled++
	default:
		g.Errors++
	}
}

func (g *ChargebackRow) merge(o *ChargebackRow) {
	g.Invocations += o.Invocations
	g.InputTokens += o.InputTokens
	g.OutputTokens += o.OutputTokens
	g.CacheReadTokens += o.CacheReadTokens
	g.CacheWriteTokens += o.CacheWriteTokens
	g.ImageCount += o.ImageCount
	g.Costs = g.Costs.Add(o.Costs)
	g.Denied += o.Denied
	g.Throttled += o.Throttled
	g.Errors += o.Errors
}

// WriteChargebackCSV writes the chargeback CSV (columns schemas.ChargebackColumns).
// scale < 0 writes exact costs; otherwise costs are rounded half-up to scale places
// (each cell from its exact value, so total_cost may differ from the sum of
// rounded parts by the rounding).
func WriteChargebackCSV(w io.Writer, rows []ChargebackRow, scale int, revision int) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(schemas.ChargebackColumns); err != nil {
		return err
	}
	money := func(d decimal.Decimal) string {
		if scale >= 0 {
			return d.StringFixed(int32(scale))
		}
		return d.String()
	}
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, r := range rows {
		rec := []string{r.Day, r.TeamID, r.CostCenter, r.ModelID, n(r.Invocations), n(r.InputTokens), n(r.OutputTokens),
			money(r.Costs.Input), money(r.Costs.Output), money(r.Costs.Total()),
			n(r.CacheReadTokens), n(r.CacheWriteTokens), money(r.Costs.CacheRead), money(r.Costs.CacheWrite),
			n(r.ImageCount), money(r.Costs.Image), n(r.Denied), n(r.Throttled), n(r.Errors), strconv.Itoa(revision)}
		if len(rec) != len(schemas.ChargebackColumns) {
			return fmt.Errorf("chargeback row has %d fields for %d columns", len(rec), len(schemas.ChargebackColumns))
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
