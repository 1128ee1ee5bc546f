package reconcile

// Reading the bill: a CUR 2.0 data export in Parquet (AWS Data Exports, table
// COST_AND_USAGE_REPORT), e.g. s3://BUCKET/PREFIX/EXPORT/data/BILLING_PERIOD=2026-11/*.parquet.
// Only the columns of CUR 2.0's table dictionary that the comparison needs are
// read; money comes out as exact decimals (DOUBLE cells through their shortest
// decimal form, DECIMAL and string cells as written).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	pqfile "github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// CUR 2.0 columns the bill reader uses.
const (
	CURProductCode      = "line_item_product_code"
	CURUsageType        = "line_item_usage_type"
	CURLineItemType     = "line_item_line_item_type"
	CURUsageStart       = "line_item_usage_start_date"
	CURUsageEnd         = "line_item_usage_end_date"
	CURUsageAmount      = "line_item_usage_amount"
	CURUnblendedCost    = "line_item_unblended_cost"
	CURNetUnblendedCost = "line_item_net_unblended_cost"
	CURResourceID       = "line_item_resource_id"
	CURPricingUnit      = "pricing_unit"
	// BedrockProductCode is line_item_product_code of Amazon Bedrock.
	BedrockProductCode = "AmazonBedrock"
)

var curRequired = []string{CURProductCode, CURUsageType, CURUsageStart, CURUsageAmount, CURUnblendedCost}
var curOptional = []string{CURLineItemType, CURUsageEnd, CURNetUnblendedCost, CURResourceID, CURPricingUnit}

// ErrNoBill reports an export that does not cover the day yet.
var ErrNoBill = errors.New("no bill for the day yet")

// CURExport reads a CUR 2.0 export's Parquet objects from a store.
type CURExport struct {
	Store  store.Store
	Prefix string
}

// BillResult is what a read of the export found for one day.
type BillResult struct {
	// Lines are the day's Amazon Bedrock line items.
	Lines []aggregator.BillLine
	// Covered is true when the export reaches the end of the day (some line of
	// any service ends at or after it): a day without lines then had none.
	Covered bool
	// Objects are the Parquet objects read.
	Objects []schemas.ManifestObject
}

// Read reads the Bedrock lines whose usage starts within day. Objects under a
// BILLING_PERIOD=YYYY-MM folder of another month are not read.
func (c *CURExport) Read(ctx context.Context, day string) (BillResult, error) {
	dayStart, err := time.Parse(schemas.DayLayout, day)
	if err != nil {
		return BillResult{}, fmt.Errorf("day %q: want YYYY-MM-DD", day)
	}
	dayEnd := dayStart.Add(24 * time.Hour)
	prefix := c.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	objs, err := c.Store.List(ctx, prefix)
	if err != nil {
		return BillResult{}, fmt.Errorf("listing the bill under %q: %w", prefix, err)
	}
	period := "BILLING_PERIOD=" + dayStart.Format("2006-01")
	var res BillResult
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, ".parquet") {
			continue
		}
		if i := strings.Index(o.Key, "BILLING_PERIOD="); i >= 0 && !strings.HasPrefix(o.Key[i:], period) {
			continue
		}
		data, err := store.ReadAll(ctx, c.Store, o.Key)
		if err != nil {
			return BillResult{}, fmt.Errorf("reading bill object %s: %w", o.Key, err)
		}
		sum := sha256.Sum256(data)
		rows, err := readCURObject(o.Key, data, dayStart, dayEnd, &res)
		if err != nil {
			return BillResult{}, err
		}
		res.Objects = append(res.Objects, schemas.ManifestObject{Key: o.Key, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Rows: rows})
	}
	return res, nil
}

func readCURObject(key string, data []byte, dayStart, dayEnd time.Time, res *BillResult) (int, error) {
	pf, err := pqfile.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("bill object %s is not a readable Parquet file (partial, or not an export?): %w", key, err)
	}
	defer pf.Close()
	sc := pf.MetaData().Schema
	var names []string
	var leaves []int
	for _, name := range append(append([]string{}, curRequired...), curOptional...) {
		if c := sc.ColumnIndexByName(name); c >= 0 {
			names, leaves = append(names, name), append(leaves, c)
		}
	}
	for _, name := range curRequired {
		if !containsName(names, name) {
			return 0, fmt.Errorf("bill object %s has no column %s: want a CUR 2.0 export (COST_AND_USAGE_REPORT)", key, name)
		}
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
	if err != nil {
		return 0, fmt.Errorf("bill object %s: %w", key, err)
	}
	rowNum := 0
	for rg := 0; rg < pf.NumRowGroups(); rg++ {
		tbl, err := fr.ReadRowGroups(context.Background(), leaves, []int{rg})
		if err != nil {
			return rowNum, fmt.Errorf("bill object %s row group %d (after row %d): %w", key, rg, rowNum, err)
		}
		cols := map[string]arrow.Array{}
		for i := 0; i < int(tbl.NumCols()); i++ {
			chunks := tbl.Column(i).Data().Chunks()
			if len(chunks) == 1 {
				cols[tbl.Schema().Field(i).Name] = chunks[0]
				continue
			}
			merged, err := array.Concatenate(chunks, memory.DefaultAllocator)
			if err != nil {
				tbl.Release()
				return rowNum, fmt.Errorf("bill object %s row group %d: %w", key, rg, err)
			}
			defer merged.Release()
			cols[tbl.Schema().Field(i).Name] = merged
		}
		n := int(tbl.NumRows())
		for i := 0; i < n; i++ {
			rowNum++
			if err := curRow(key, rowNum, cols, i, dayStart, dayEnd, res); err != nil {
				tbl.Release()
				return rowNum, err
			}
		}
		tbl.Release()
	}
	return rowNum, nil
}

func containsName(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// curRow reads one row; a row that cannot be read fails the read, naming the
// object and row: dollars from a partly read bill would mislead.
func curRow(key string, n int, cols map[string]arrow.Array, i int, dayStart, dayEnd time.Time, res *BillResult) error {
	bad := func(col, why string) error { return fmt.Errorf("bill object %s row %d: %s %s", key, n, col, why) }
	str := func(name string) string { s, _ := cellString(cols[name], i); return s }
	start, ok, err := cellTime(cols[CURUsageStart], i)
	if err != nil || !ok {
		return bad(CURUsageStart, "is not a timestamp")
	}
	end, ok, err := cellTime(cols[CURUsageEnd], i)
	if err != nil || !ok {
		end = start
	}
	if !end.Before(dayEnd) {
		res.Covered = true
	}
	if str(CURProductCode) != BedrockProductCode || start.Before(dayStart) || !start.Before(dayEnd) {
		return nil
	}
	amount, err := cellDecimal(cols[CURUsageAmount], i)
	if err != nil {
		return bad(CURUsageAmount, err.Error())
	}
	costCol := CURUnblendedCost
	if c := cols[CURNetUnblendedCost]; c != nil && !c.IsNull(i) {
		costCol = CURNetUnblendedCost
	}
	cost, err := cellDecimal(cols[costCol], i)
	if err != nil {
		return bad(costCol, err.Error())
	}
	ut := str(CURUsageType)
	if ut == "" || len(ut) > 256 {
		return bad(CURUsageType, "is empty or longer than 256 characters")
	}
	res.Lines = append(res.Lines, aggregator.BillLine{
		Key: key, Row: n, UsageType: ut, LineItemType: str(CURLineItemType), ResourceID: str(CURResourceID),
		Start: start.UTC(), UsageAmount: amount, PricingUnit: str(CURPricingUnit), Cost: cost,
	})
	return nil
}

// cellString reads a text cell (plain or dictionary-encoded).
func cellString(a arrow.Array, i int) (string, bool) {
	if a == nil || a.IsNull(i) {
		return "", false
	}
	switch c := a.(type) {
	case *array.String:
		return c.Value(i), true
	case *array.LargeString:
		return c.Value(i), true
	case *array.Binary:
		return string(c.Value(i)), true
	case *array.Dictionary:
		return cellString(c.Dictionary(), c.GetValueIndex(i))
	}
	return "", false
}

// cellTime reads a timestamp cell: a Parquet timestamp of any unit, or
// RFC 3339 text.
func cellTime(a arrow.Array, i int) (time.Time, bool, error) {
	if a == nil || a.IsNull(i) {
		return time.Time{}, false, nil
	}
	switch c := a.(type) {
	case *array.Timestamp:
		unit := c.DataType().(*arrow.TimestampType).Unit
		return c.Value(i).ToTime(unit).UTC(), true, nil
	case *array.Date32:
		return c.Value(i).ToTime().UTC(), true, nil
	}
	if s, ok := cellString(a, i); ok {
		at, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			at, err = time.Parse("2006-01-02 15:04:05", s)
		}
		return at.UTC(), err == nil, err
	}
	return time.Time{}, false, fmt.Errorf("unsupported timestamp type %s", a.DataType())
}

// cellDecimal reads a number cell exactly: DOUBLE and FLOAT through their
// shortest decimal form, DECIMAL with its scale, integers, text as written.
// A null reads as zero.
func cellDecimal(a arrow.Array, i int) (decimal.Decimal, error) {
	if a == nil || a.IsNull(i) {
		return decimal.Zero, nil
	}
	var f float64
	switch c := a.(type) {
	case *array.Float64:
		f = c.Value(i)
	case *array.Float32:
		f = float64(c.Value(i))
	case *array.Decimal128:
		scale := c.DataType().(*arrow.Decimal128Type).Scale
		return decimal.NewFromBigInt(c.Value(i).BigInt(), -scale), nil
	case *array.Int64:
		return decimal.NewFromInt(c.Value(i)), nil
	case *array.Int32:
		return decimal.NewFromInt(int64(c.Value(i))), nil
	default:
		s, ok := cellString(a, i)
		if !ok {
			return decimal.Zero, fmt.Errorf("has unsupported type %s", a.DataType())
		}
		d, err := decimal.NewFromString(strings.TrimSpace(s))
		if err != nil {
			return decimal.Zero, fmt.Errorf("%q is not a number", s)
		}
		return d, nil
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e15 {
		return decimal.Zero, fmt.Errorf("is %v, not an amount", f)
	}
	return decimal.NewFromFloat(f), nil
}
