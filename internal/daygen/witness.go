package daygen

// AWS's own records of a generated day, built from its compacted daily rows:
// the Bedrock model invocation log records Bedrock would deliver, and the
// Amazon Bedrock lines of a CUR 2.0 data export (Parquet). The record format
// follows AWS's published invocation log examples (schemaType
// ModelInvocationLog, requestId, input.inputTokenCount, ...); the export's
// columns are CUR 2.0's (line_item_usage_type, line_item_unblended_cost, ...),
// and its usage types REGION-MODEL[-cross-region]-TOKENTYPE with the token-type
// suffixes of AWS's "Understanding your Amazon Bedrock CUR data" page.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet"
	"github.com/apache/arrow/go/v15/parquet/compress"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/schemas"
)

// Account and Region of generated AWS records.
const (
	Account = "123456789012"
	Region  = "us-east-1"
)

// InvocationLogs returns the invocation log record of every successful row,
// with the request metadata the invoker attaches, ordered by time.
func InvocationLogs(rows []schemas.DailyRow) []schemas.InvocationLog {
	var out []schemas.InvocationLog
	for i := range rows {
		r := &rows[i]
		if r.Status != schemas.StatusSuccess {
			continue
		}
		in, o, cr, cw := r.InputTokens, r.OutputTokens, r.CacheReadInputTokens, r.CacheWriteInputTokens
		rec := schemas.InvocationLog{
			SchemaType: schemas.InvocationLogSchemaType, SchemaVersion: "1.0",
			Timestamp: time.UnixMilli(r.Timestamp).UTC().Format(time.RFC3339), AccountID: Account,
			Identity: schemas.InvocationLogWho{ARN: "arn:aws:sts::" + Account + ":assumed-role/meter-invoker/i-0abc"},
			Region:   Region, RequestID: r.RequestID, Operation: r.Operation, ModelID: r.ModelID,
			Input:           schemas.InvocationLogIn{InputContentType: "application/json", InputTokenCount: &in, CacheReadInputTokenCount: &cr, CacheWriteInputTokenCount: &cw},
			Output:          schemas.InvocationLogOut{OutputContentType: "application/json", OutputTokenCount: &o},
			RequestMetadata: map[string]string{schemas.MetadataTeamID: r.TeamID, schemas.MetadataCostCenter: r.CostCenter, schemas.MetadataEventID: r.EventID},
		}
		out = append(out, rec)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Timestamp < out[j].Timestamp })
	return out
}

// WriteInvocationLogs writes records as Bedrock delivers them under dir:
// gzipped JSON lines, perObject records an object, foldered by hour under
// AWSLogs/ACCOUNT/BedrockModelInvocationLogs/REGION/YYYY/MM/DD/HH/. It
// returns the keys written, relative to dir.
func WriteInvocationLogs(dir string, recs []schemas.InvocationLog, perObject int) ([]string, error) {
	var keys []string
	for start := 0; start < len(recs); start += perObject {
		end := min(start+perObject, len(recs))
		at, err := time.Parse(time.RFC3339, recs[start].Timestamp)
		if err != nil {
			return nil, err
		}
		key := fmt.Sprintf("AWSLogs/%s/BedrockModelInvocationLogs/%s/%s/%s_%06d.json.gz", Account, Region, at.Format("2006/01/02/15"), at.Format("20060102T150405Z"), start)
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		for _, r := range recs[start:end] {
			b, err := json.Marshal(r)
			if err != nil {
				return nil, err
			}
			zw.Write(append(b, '\n'))
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		path := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// CURLine is one line item of a generated CUR 2.0 export.
type CURLine struct {
	ID           string
	Start, End   time.Time
	ProductCode  string
	UsageType    string
	LineItemType string
	Operation    string
	ResourceID   string
	UsageAmount  decimal.Decimal
	PricingUnit  string
	Cost         decimal.Decimal
}

// CURLines bills every successful row as Bedrock does: one usage line per
// token type (and per image), priced at the row's list-price cost. discount
// gives models a discount (0.1 for 10%), billed as a Discount line beside each
// usage line. A line of another service spanning the whole day marks the day
// as covered by the export.
func CURLines(day string, rows []schemas.DailyRow, discount map[string]decimal.Decimal) []CURLine {
	names := map[string]string{}
	for name, id := range aggregator.DefaultUsageTypeModels() {
		names[id] = name
	}
	dayStart, _ := time.Parse(schemas.DayLayout, day)
	lines := []CURLine{{
		ID: "s3-storage", Start: dayStart, End: dayStart.Add(24 * time.Hour), ProductCode: "AmazonS3", UsageType: "TimedStorage-ByteHrs",
		LineItemType: "Usage", Operation: "StandardStorage", UsageAmount: decimal.NewFromInt(1000), PricingUnit: "GB-Mo", Cost: decimal.RequireFromString("0.023"),
	}}
	for i := range rows {
		r := &rows[i]
		if r.Status != schemas.StatusSuccess {
			continue
		}
		base := pricing.BaseModel(r.ModelID)
		name := names[base]
		if name == "" {
			name = base
		}
		if base != r.ModelID {
			name += "-cross-region"
		}
		at := time.UnixMilli(r.Timestamp).UTC().Truncate(time.Hour)
		for _, part := range []struct {
			suffix string
			amount int64
			cost   int64
		}{
			{"-input-tokens", r.InputTokens, r.InputCost}, {"-output-tokens", r.OutputTokens, r.OutputCost},
			{"-cache-read-input-token-count", r.CacheReadInputTokens, r.CacheReadCost},
			{"-cache-write-input-token-count", r.CacheWriteInputTokens, r.CacheWriteCost},
			{"-images", r.ImageCount, r.ImageCost},
		} {
			if part.amount == 0 && part.cost == 0 {
				continue
			}
			cost := decimal.New(part.cost, -schemas.MoneyScale)
			l := CURLine{ID: r.RequestID + part.suffix, Start: at, End: at.Add(time.Hour), ProductCode: "AmazonBedrock",
				UsageType: "USE1-" + name + part.suffix, LineItemType: "Usage", Operation: r.Operation,
				UsageAmount: decimal.NewFromInt(part.amount),
				PricingUnit: "Tokens", Cost: cost}
			if part.suffix == "-images" {
				l.PricingUnit = "Images"
			}
			lines = append(lines, l)
			if d, ok := discount[base]; ok {
				dl := l
				dl.ID, dl.LineItemType, dl.UsageAmount, dl.Cost = l.ID+"-discount", "Discount", decimal.Zero, cost.Mul(d).Neg()
				lines = append(lines, dl)
			}
		}
	}
	return lines
}

// WriteCUR writes lines as a CUR 2.0 export object (Parquet, CUR 2.0 column
// names, costs and amounts as DOUBLE and times as timestamps, as AWS writes them).
func WriteCUR(w io.Writer, lines []CURLine) error {
	ts := &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "identity_line_item_id", Type: arrow.BinaryTypes.String},
		{Name: "bill_billing_period_start_date", Type: ts},
		{Name: "line_item_usage_account_id", Type: arrow.BinaryTypes.String},
		{Name: "line_item_line_item_type", Type: arrow.BinaryTypes.String},
		{Name: "line_item_usage_start_date", Type: ts},
		{Name: "line_item_usage_end_date", Type: ts},
		{Name: "line_item_product_code", Type: arrow.BinaryTypes.String},
		{Name: "line_item_usage_type", Type: arrow.BinaryTypes.String},
		{Name: "line_item_operation", Type: arrow.BinaryTypes.String},
		{Name: "line_item_resource_id", Type: arrow.BinaryTypes.String},
		{Name: "line_item_usage_amount", Type: arrow.PrimitiveTypes.Float64},
		{Name: "line_item_unblended_cost", Type: arrow.PrimitiveTypes.Float64},
		{Name: "pricing_unit", Type: arrow.BinaryTypes.String},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	str := func(i int, v string) { b.Field(i).(*array.StringBuilder).Append(v) }
	tm := func(i int, v time.Time) { b.Field(i).(*array.TimestampBuilder).Append(arrow.Timestamp(v.UnixMilli())) }
	num := func(i int, v decimal.Decimal) { f, _ := v.Float64(); b.Field(i).(*array.Float64Builder).Append(f) }
	for _, l := range lines {
		period := time.Date(l.Start.Year(), l.Start.Month(), 1, 0, 0, 0, 0, time.UTC)
		str(0, l.ID)
		tm(1, period)
		str(2, Account)
		str(3, l.LineItemType)
		tm(4, l.Start)
		tm(5, l.End)
		str(6, l.ProductCode)
		str(7, l.UsageType)
		str(8, l.Operation)
		str(9, l.ResourceID)
		num(10, l.UsageAmount)
		num(11, l.Cost)
		str(12, l.PricingUnit)
	}
	rec := b.NewRecord()
	defer rec.Release()
	tbl := array.NewTableFromRecords(schema, []arrow.Record{rec})
	defer tbl.Release()
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy))
	return pqarrow.WriteTable(tbl, w, 64<<10, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
}
