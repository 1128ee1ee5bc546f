package schemas

import (
	"time"

	"github.com/shopspring/decimal"
)

// MoneyScale is the fixed scale of every money column in Parquet: DECIMAL(18,10).
// Ten places hold the exact cost of any token count at prices with up to seven
// decimals per 1,000 tokens; the chargeback CSV carries full precision.
const MoneyScale = 10

// The Parquet schemas below use "name=x, type=INT64, ..." parquet struct tags
// (internal/parquetio reads and writes them). Column names
// equal the event's field names. Times are TIMESTAMP(isAdjustedToUTC=true, MILLIS);
// the dt partition lives in the object key only. Strings that repeat across rows
// (team, model, status) are dictionary encoded; ids are DELTA_BYTE_ARRAY and
// times, counters and money DELTA_BINARY_PACKED, the smallest on this data
// with ZSTD pages (BENCHMARKS.md, "One Parquet writer").

// EventRow is one row of the events table (raw usage events, one row per event
// as received, duplicates included) and of the daily table's event columns.
// model_alias came after the first files were written: a file without it
// reads as "" (parquetio:"may-be-absent").
type EventRow struct {
	SchemaVersion         int32  `parquet:"name=schema_version, type=INT32"`
	EventID               string `parquet:"name=event_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=DELTA_BYTE_ARRAY"`
	RequestID             string `parquet:"name=request_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=DELTA_BYTE_ARRAY"`
	Timestamp             int64  `parquet:"name=timestamp, type=INT64, logicaltype=TIMESTAMP, logicaltype.isadjustedtoutc=true, logicaltype.unit=MILLIS, encoding=DELTA_BINARY_PACKED"`
	TeamID                string `parquet:"name=team_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	CostCenter            string `parquet:"name=cost_center, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	ModelID               string `parquet:"name=model_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Operation             string `parquet:"name=operation, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Status                string `parquet:"name=status, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	InputTokens           int64  `parquet:"name=input_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	OutputTokens          int64  `parquet:"name=output_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	LatencyMS             int64  `parquet:"name=latency_ms, type=INT64, encoding=DELTA_BINARY_PACKED"`
	CacheReadInputTokens  int64  `parquet:"name=cache_read_input_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	CacheWriteInputTokens int64  `parquet:"name=cache_write_input_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	ImageCount            int64  `parquet:"name=image_count, type=INT64, encoding=DELTA_BINARY_PACKED"`
	ImageHeight           int64  `parquet:"name=image_height, type=INT64, encoding=DELTA_BINARY_PACKED"`
	ImageWidth            int64  `parquet:"name=image_width, type=INT64, encoding=DELTA_BINARY_PACKED"`
	ImageSteps            int64  `parquet:"name=image_steps, type=INT64, encoding=DELTA_BINARY_PACKED"`
	ImageQuality          string `parquet:"name=image_quality, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	APIKeyID              string `parquet:"name=api_key_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Region                string `parquet:"name=region, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	PricingTier           string `parquet:"name=pricing_tier, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	ModelAlias            string `parquet:"name=model_alias, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY" parquetio:"may-be-absent"`
}

// NewEventRow converts an event to its Parquet row.
func NewEventRow(e *Event) EventRow {
	return EventRow{
		SchemaVersion: int32(e.SchemaVersion), EventID: e.EventID, RequestID: e.RequestID,
		Timestamp: e.Timestamp.UnixMilli(), TeamID: e.TeamID, CostCenter: e.CostCenter, ModelID: e.ModelID,
		Operation: e.Operation, Status: e.Status, InputTokens: e.InputTokens, OutputTokens: e.OutputTokens,
		LatencyMS: e.LatencyMS, CacheReadInputTokens: e.CacheReadInputTokens, CacheWriteInputTokens: e.CacheWriteInputTokens,
		ImageCount: e.ImageCount, ImageHeight: e.ImageHeight, ImageWidth: e.ImageWidth, ImageSteps: e.ImageSteps,
		ImageQuality: e.ImageQuality, APIKeyID: e.APIKeyID, Region: e.Region, PricingTier: e.PricingTier,
		ModelAlias: e.ModelAlias,
	}
}

// Event converts a row back to the event it was written from.
func (r *EventRow) Event() Event {
	return Event{
		SchemaVersion: int(r.SchemaVersion), EventID: r.EventID, RequestID: r.RequestID,
		Timestamp: time.UnixMilli(r.Timestamp).UTC(), TeamID: r.TeamID, CostCenter: r.CostCenter, ModelID: r.ModelID,
		Operation: r.Operation, Status: r.Status, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens,
		LatencyMS: r.LatencyMS, CacheReadInputTokens: r.CacheReadInputTokens, CacheWriteInputTokens: r.CacheWriteInputTokens,
		ImageCount: r.ImageCount, ImageHeight: r.ImageHeight, ImageWidth: r.ImageWidth, ImageSteps: r.ImageSteps,
		ImageQuality: r.ImageQuality, APIKeyID: r.APIKeyID, Region: r.Region, PricingTier: r.PricingTier,
		ModelAlias: r.ModelAlias,
	}
}

// WindowRow is one row of the usage_windows table: the partial sums of one
// event-time window for one team, cost center, model, status and pricing tier,
// as one aggregator output saw them (requests deduplicated within its horizon).
type WindowRow struct {
	WindowStart           int64  `parquet:"name=window_start, type=INT64, logicaltype=TIMESTAMP, logicaltype.isadjustedtoutc=true, logicaltype.unit=MILLIS, encoding=DELTA_BINARY_PACKED"`
	WindowEnd             int64  `parquet:"name=window_end, type=INT64, logicaltype=TIMESTAMP, logicaltype.isadjustedtoutc=true, logicaltype.unit=MILLIS, encoding=DELTA_BINARY_PACKED"`
	TeamID                string `parquet:"name=team_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	CostCenter            string `parquet:"name=cost_center, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	ModelID               string `parquet:"name=model_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Status                string `parquet:"name=status, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	PricingTier           string `parquet:"name=pricing_tier, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Requests              int64  `parquet:"name=requests, type=INT64, encoding=DELTA_BINARY_PACKED"`
	InputTokens           int64  `parquet:"name=input_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	OutputTokens          int64  `parquet:"name=output_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	CacheReadInputTokens  int64  `parquet:"name=cache_read_input_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	CacheWriteInputTokens int64  `parquet:"name=cache_write_input_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	ImageCount            int64  `parquet:"name=image_count, type=INT64, encoding=DELTA_BINARY_PACKED"`
	LatencyMSSum          int64  `parquet:"name=latency_ms_sum, type=INT64, encoding=DELTA_BINARY_PACKED"`
}

// DailyRow is one row of the daily table: a deduplicated, priced event of the day.
type DailyRow struct {
	SchemaVersion         int32  `parquet:"name=schema_version, type=INT32"`
	EventID               string `parquet:"name=event_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=DELTA_BYTE_ARRAY"`
	RequestID             string `parquet:"name=request_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=DELTA_BYTE_ARRAY"`
	Timestamp             int64  `parquet:"name=timestamp, type=INT64, logicaltype=TIMESTAMP, logicaltype.isadjustedtoutc=true, logicaltype.unit=MILLIS, encoding=DELTA_BINARY_PACKED"`
	TeamID                string `parquet:"name=team_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	CostCenter            string `parquet:"name=cost_center, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	ModelID               string `parquet:"name=model_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Operation             string `parquet:"name=operation, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Status                string `parquet:"name=status, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	InputTokens           int64  `parquet:"name=input_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	OutputTokens          int64  `parquet:"name=output_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	LatencyMS             int64  `parquet:"name=latency_ms, type=INT64, encoding=DELTA_BINARY_PACKED"`
	CacheReadInputTokens  int64  `parquet:"name=cache_read_input_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	CacheWriteInputTokens int64  `parquet:"name=cache_write_input_tokens, type=INT64, encoding=DELTA_BINARY_PACKED"`
	ImageCount            int64  `parquet:"name=image_count, type=INT64, encoding=DELTA_BINARY_PACKED"`
	ImageHeight           int64  `parquet:"name=image_height, type=INT64, encoding=DELTA_BINARY_PACKED"`
	ImageWidth            int64  `parquet:"name=image_width, type=INT64, encoding=DELTA_BINARY_PACKED"`
	ImageSteps            int64  `parquet:"name=image_steps, type=INT64, encoding=DELTA_BINARY_PACKED"`
	ImageQuality          string `parquet:"name=image_quality, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	APIKeyID              string `parquet:"name=api_key_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Region                string `parquet:"name=region, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	PricingTier           string `parquet:"name=pricing_tier, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	ModelAlias            string `parquet:"name=model_alias, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY" parquetio:"may-be-absent"`
	InputCost             int64  `parquet:"name=input_cost, type=INT64, convertedtype=DECIMAL, scale=10, precision=18, encoding=DELTA_BINARY_PACKED"`
	OutputCost            int64  `parquet:"name=output_cost, type=INT64, convertedtype=DECIMAL, scale=10, precision=18, encoding=DELTA_BINARY_PACKED"`
	CacheReadCost         int64  `parquet:"name=cache_read_cost, type=INT64, convertedtype=DECIMAL, scale=10, precision=18, encoding=DELTA_BINARY_PACKED"`
	CacheWriteCost        int64  `parquet:"name=cache_write_cost, type=INT64, convertedtype=DECIMAL, scale=10, precision=18, encoding=DELTA_BINARY_PACKED"`
	ImageCost             int64  `parquet:"name=image_cost, type=INT64, convertedtype=DECIMAL, scale=10, precision=18, encoding=DELTA_BINARY_PACKED"`
	TotalCost             int64  `parquet:"name=total_cost, type=INT64, convertedtype=DECIMAL, scale=10, precision=18, encoding=DELTA_BINARY_PACKED"`
}

// NewDailyRow converts an event and its costs to a daily row. Costs are rounded
// half-up to MoneyScale places (they are exact at that scale for published prices).
func NewDailyRow(e *Event, c Costs) DailyRow {
	var r DailyRow
	r.SetEvent(e)
	r.InputCost, r.OutputCost, r.CacheReadCost = ScaledMoney(c.Input), ScaledMoney(c.Output), ScaledMoney(c.CacheRead)
	r.CacheWriteCost, r.ImageCost, r.TotalCost = ScaledMoney(c.CacheWrite), ScaledMoney(c.Image), ScaledMoney(c.Total())
	return r
}

// SetEvent sets every event column of r from e and zeroes the costs.
func (r *DailyRow) SetEvent(e *Event) {
	*r = DailyRow{
		SchemaVersion: int32(e.SchemaVersion), EventID: e.EventID, RequestID: e.RequestID, Timestamp: e.Timestamp.UnixMilli(),
		TeamID: e.TeamID, CostCenter: e.CostCenter, ModelID: e.ModelID, Operation: e.Operation, Status: e.Status,
		InputTokens: e.InputTokens, OutputTokens: e.OutputTokens, LatencyMS: e.LatencyMS,
		CacheReadInputTokens: e.CacheReadInputTokens, CacheWriteInputTokens: e.CacheWriteInputTokens,
		ImageCount: e.ImageCount, ImageHeight: e.ImageHeight, ImageWidth: e.ImageWidth, ImageSteps: e.ImageSteps,
		ImageQuality: e.ImageQuality, APIKeyID: e.APIKeyID, Region: e.Region, PricingTier: e.PricingTier,
		ModelAlias: e.ModelAlias,
	}
}

// Event returns the event a daily row was made from (its costs left out).
func (r *DailyRow) Event() Event {
	return Event{
		SchemaVersion: int(r.SchemaVersion), EventID: r.EventID, RequestID: r.RequestID,
		Timestamp: time.UnixMilli(r.Timestamp).UTC(), TeamID: r.TeamID, CostCenter: r.CostCenter, ModelID: r.ModelID,
		Operation: r.Operation, Status: r.Status, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens,
		LatencyMS: r.LatencyMS, CacheReadInputTokens: r.CacheReadInputTokens, CacheWriteInputTokens: r.CacheWriteInputTokens,
		ImageCount: r.ImageCount, ImageHeight: r.ImageHeight, ImageWidth: r.ImageWidth, ImageSteps: r.ImageSteps,
		ImageQuality: r.ImageQuality, APIKeyID: r.APIKeyID, Region: r.Region, PricingTier: r.PricingTier,
		ModelAlias: r.ModelAlias,
	}
}

// Costs are the exact costs of one event or a sum of events, in USD.
type Costs struct {
	Input, Output, CacheRead, CacheWrite, Image decimal.Decimal
}

// Total is the sum of every cost component.
func (c Costs) Total() decimal.Decimal {
	return c.Input.Add(c.Output).Add(c.CacheRead).Add(c.CacheWrite).Add(c.Image)
}

// Add returns the component-wise sum of c and o.
func (c Costs) Add(o Costs) Costs {
	return Costs{c.Input.Add(o.Input), c.Output.Add(o.Output), c.CacheRead.Add(o.CacheRead), c.CacheWrite.Add(o.CacheWrite), c.Image.Add(o.Image)}
}

// ScaledMoney returns d as an integer count of 10^-MoneyScale USD, rounded half-up.
func ScaledMoney(d decimal.Decimal) int64 {
	return d.Shift(MoneyScale).Round(0).IntPart()
}

// ChargebackColumns are the chargeback CSV's columns, in order. The first ten are
// fixed by the contract; the rest explain them.
var ChargebackColumns = []string{
	"day", "team_id", "cost_center", "model_id", "invocations", "input_tokens", "output_tokens",
	"input_cost", "output_cost", "total_cost",
	"cache_read_input_tokens", "cache_write_input_tokens", "cache_read_cost", "cache_write_cost",
	"image_count", "image_cost", "denied", "throttled", "errors", "revision",
}

// ReconciliationColumns are the reconciliation CSV's columns, in order.
var ReconciliationColumns = []string{
	"request_id", "status", "team_id", "model_id", "event_time", "cloudtrail_event_id",
	"cloudtrail_event_time", "cloudtrail_model_id", "operation", "caller", "detail",
}

// ReconciliationStatuses are the statuses of a reconciliation row.
var ReconciliationStatuses = []string{"matched", "unmetered", "unconfirmed", "mismatched"}
