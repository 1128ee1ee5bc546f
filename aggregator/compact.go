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

// Counts are calls and usage as every output counts them, the one rule of
// what is billable: tokens and images of successful calls only; a denied,
// throttled or failed call is counted by its status and bills nothing (a
// failed call may carry the tokens Bedrock reported, but is not billed).
// The chargeback and GET /usage both count with it.
type Counts struct {
	Invocations           int64 `json:"invocations"` // successful calls
	InputTokens           int64 `json:"input_tokens"`
	OutputTokens          int64 `json:"output_tokens"`
	CacheReadInputTokens  int64 `json:"cache_read_input_tokens"`
	CacheWriteInputTokens int64 `json:"cache_write_input_tokens"`
	ImageCount            int64 `json:"image_count"`
	Denied                int64 `json:"denied"`
	Throttled             int64 `json:"throttled"`
	Errors                int64 `json:"errors"` // client and upstream errors
}

// Count adds one call.
func (c *Counts) Count(e *schemas.Event) {
	switch e.Status {
	case schemas.StatusSuccess:
		c.Invocations++
		c.InputTokens += e.InputTokens
		c.OutputTokens += e.OutputTokens
		c.CacheReadInputTokens += e.CacheReadInputTokens
		c.CacheWriteInputTokens += e.CacheWriteInputTokens
		c.ImageCount += e.ImageCount
	case schemas.StatusDenied:
		c.Denied++
	case schemas.StatusThrottled:
		c.Throttled++
	default:
		c.Errors++
	}
}

// Add adds the counts of o.
func (c *Counts) Add(o Counts) {
	c.Invocations += o.Invocations
	c.InputTokens += o.InputTokens
	c.OutputTokens += o.OutputTokens
	c.CacheReadInputTokens += o.CacheReadInputTokens
	c.CacheWriteInputTokens += o.CacheWriteInputTokens
	c.ImageCount += o.ImageCount
	c.Denied += o.Denied
	c.Throttled += o.Throttled
	c.Errors += o.Errors
}

// ChargebackRow is one row of the chargeback CSV: a day's usage of one team,
// cost center and model, counted by Counts.
type ChargebackRow struct {
	Day, TeamID, CostCenter, ModelID string
	Counts
	Costs schemas.Costs
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
	// Unpriced is usage left out because it could not be priced (sorted by
	// model, team, cost center, tier).
	Unpriced []Unpriced
}

// CompactDay deduplicates a day's events exactly by request_id, prices each
// successful call with the price in force at its time, and sums the chargeback.
// Of several events with one request_id the earliest (by time, then event_id)
// is kept, so the result does not depend on the order events arrive in.
// A successful call that cannot be priced (no price in force for its model)
// is never billed at a silent zero: it is left out of the chargeback and the
// daily rows and listed in Unpriced, and every priced row is billed as usual.
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

func (g *ChargebackRow) merge(o *ChargebackRow) {
	g.Counts.Add(o.Counts)
	g.Costs = g.Costs.Add(o.Costs)
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
		text := schemas.NeutralizeCell
		rec := []string{r.Day, text(r.TeamID), text(r.CostCenter), text(r.ModelID), n(r.Invocations), n(r.InputTokens), n(r.OutputTokens),
			money(r.Costs.Input), money(r.Costs.Output), money(r.Costs.Total()),
			n(r.CacheReadInputTokens), n(r.CacheWriteInputTokens), money(r.Costs.CacheRead), money(r.Costs.CacheWrite),
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
