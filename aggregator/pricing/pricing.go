// Package pricing turns metered usage into money. It reads the price CSV of the
// contract (rows with effective dates), finds the row in force on an event's day,
// and computes costs with exact decimal arithmetic: never binary floats, and a
// model with usage but no price is an error that names it, never a silent zero.
// It does no I/O beyond reading the price file it is given.
package pricing

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/schemas"
)

//go:embed default_prices.csv
var defaultPrices []byte

// Row is one line of the price file.
type Row struct {
	Line            int
	ModelID         string
	EffectiveFrom   time.Time
	Region          string // empty: any region
	Tier            string // on_demand, batch or provisioned
	InputPer1K      decimal.Decimal
	OutputPer1K     decimal.Decimal
	CacheReadPer1K  decimal.Decimal
	CacheWritePer1K decimal.Decimal
	PerImage        decimal.Decimal
	ImageMaxPixels  int64  // 0: any size
	ImageQuality    string // empty: any quality
	ImageMaxSteps   int64  // 0: any number of steps
	hasCacheRead    bool
	hasCacheWrite   bool
	hasImage        bool
}

// Book is a loaded price file.
type Book struct {
	rows   map[string][]Row // by model id, sorted by effective date descending
	SHA256 string           // hash of the file's bytes, recorded in manifests
	Source string           // where the prices came from (path or "default")
}

// NoPriceError reports a model that has usage but no price in force.
type NoPriceError struct {
	ModelID string
	Day     string
	Tier    string
}

func (e *NoPriceError) Error() string {
	return fmt.Sprintf("no price for model %q (tier %s) in force on %s", e.ModelID, e.Tier, e.Day)
}

// Columns of the price file. The first four are required.
var (
	requiredColumns = []string{"model_id", "effective_from", "input_per_1k", "output_per_1k"}
	optionalColumns = []string{"region", "pricing_tier", "cache_read_per_1k", "cache_write_per_1k", "per_image",
		"image_max_pixels", "image_quality", "image_max_steps", "source"}
)

// Default returns the price book shipped with meter (published Bedrock on-demand
// prices; see default_prices.csv and PRICES.md for where they came from).
func Default() *Book {
	b, err := Parse(bytes.NewReader(defaultPrices), "default")
	if err != nil {
		panic("shipped price file is invalid: " + err.Error())
	}
	return b
}

// Parse reads a price CSV. Errors name the line and column.
func Parse(r io.Reader, source string) (*Book, error) {
	type rowKey struct {
		model        string
		from         int64
		region, tier string
		pixels       int64
		quality      string
		steps        int64
	}
	seen := map[rowKey]int{}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(strings.ToLower(h))
		if _, dup := col[h]; dup {
			return nil, fmt.Errorf("header: column %q appears twice", h)
		}
		col[h] = i
	}
	for _, c := range requiredColumns {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("header: required column %q missing (have %s)", c, strings.Join(header, ","))
		}
	}
	b := &Book{rows: map[string][]Row{}, SHA256: hex.EncodeToString(sum[:]), Source: source}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		row := Row{Line: line, ModelID: get("model_id"), Region: get("region"), Tier: get("pricing_tier"), ImageQuality: get("image_quality")}
		if row.ModelID == "" {
			return nil, fmt.Errorf("line %d: model_id is empty", line)
		}
		if row.Tier == "" {
			row.Tier = "on_demand"
		}
		if row.EffectiveFrom, err = parseEffective(get("effective_from")); err != nil {
			return nil, fmt.Errorf("line %d: effective_from %q is not a date (YYYY-MM-DD) or an RFC 3339 time", line, get("effective_from"))
		}
		money := []struct {
			name string
			dst  *decimal.Decimal
			set  *bool
		}{
			{"input_per_1k", &row.InputPer1K, nil}, {"output_per_1k", &row.OutputPer1K, nil},
			{"cache_read_per_1k", &row.CacheReadPer1K, &row.hasCacheRead}, {"cache_write_per_1k", &row.CacheWritePer1K, &row.hasCacheWrite},
			{"per_image", &row.PerImage, &row.hasImage},
		}
		for _, m := range money {
			s := get(m.name)
			if s == "" {
				if m.set == nil {
					return nil, fmt.Errorf("line %d: %s is empty", line, m.name)
				}
				continue
			}
			d, err := decimal.NewFromString(s)
			if err != nil || d.IsNegative() || strings.ContainsAny(s, "eE") {
				return nil, fmt.Errorf("line %d: %s %q is not a non-negative decimal", line, m.name, s)
			}
			*m.dst = d
			if m.set != nil {
				*m.set = true
			}
		}
		for _, n := range []struct {
			name string
			dst  *int64
		}{{"image_max_pixels", &row.ImageMaxPixels}, {"image_max_steps", &row.ImageMaxSteps}} {
			if s := get(n.name); s != "" {
				v, err := strconv.ParseInt(s, 10, 64)
				if err != nil || v < 0 {
					return nil, fmt.Errorf("line %d: %s %q is not a non-negative integer", line, n.name, s)
				}
				*n.dst = v
			}
		}
		// Two rows for the same model, date, region, tier and image kind
		// would leave the price to the order of the file: refused.
		k := rowKey{row.ModelID, row.EffectiveFrom.UnixNano(), row.Region, row.Tier, row.ImageMaxPixels, row.ImageQuality, row.ImageMaxSteps}
		if first, dup := seen[k]; dup {
			return nil, fmt.Errorf("line %d: a second price for %s from %s (tier %s, region %q) after line %d",
				line, row.ModelID, row.EffectiveFrom.Format(time.RFC3339), row.Tier, row.Region, first)
		}
		seen[k] = line
		b.rows[row.ModelID] = append(b.rows[row.ModelID], row)
	}
	if len(b.rows) == 0 {
		return nil, errors.New("no price rows")
	}
	for _, rows := range b.rows {
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].EffectiveFrom.After(rows[j].EffectiveFrom) })
	}
	return b, nil
}

// parseEffective reads an effective_from: a date (in force from 00:00 UTC) or,
// for a price that changes during a day, an RFC 3339 time.
func parseEffective(s string) (time.Time, error) {
	if t, err := time.Parse(schemas.DayLayout, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	return t.UTC(), err
}

// Models returns the model ids the book prices, sorted.
func (b *Book) Models() []string {
	out := make([]string, 0, len(b.rows))
	for m := range b.rows {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// BaseModel maps what was invoked to the model that bills: a cross-region
// inference profile ("us.", "eu.", "apac.", "global." and other geography
// prefixes), its ARN, or a foundation-model ARN bills as its base model. Anything else is
// returned as is; lookups are by exact id, never by substring.
func BaseModel(id string) string {
	if strings.HasPrefix(id, "arn:") {
		// arn:aws:bedrock:REGION::foundation-model/ID and the system-defined
		// arn:aws:bedrock:REGION:ACCOUNT:inference-profile/us.ID. An application
		// inference profile's ARN names no model and is kept as is, so it needs
		// its own price row.
		for _, kind := range []string{":foundation-model/", ":inference-profile/"} {
			if i := strings.Index(id, kind); i >= 0 {
				id = id[i+len(kind):]
				break
			}
		}
	}
	for _, p := range []string{"us.", "eu.", "apac.", "global.", "us-gov.", "ca.", "jp.", "au."} {
		if strings.HasPrefix(id, p) {
			return id[len(p):]
		}
	}
	return id
}

// Rows returns the rows in force for a model at a time for a tier and region:
// every row of the latest effective_from not after it (several rows when
// images are priced by size or quality). The exact id is tried before its base model.
func (b *Book) Rows(modelID, tier, region string, at time.Time) ([]Row, bool) {
	if tier == "" {
		tier = "on_demand"
	}
	for _, id := range []string{modelID, BaseModel(modelID)} {
		rows := b.rows[id]
		for _, wantRegion := range []string{region, ""} {
			var in []Row
			var date time.Time
			for _, r := range rows {
				if r.Tier != tier || r.Region != wantRegion || r.EffectiveFrom.After(at) {
					continue
				}
				if in == nil {
					date = r.EffectiveFrom
				} else if !r.EffectiveFrom.Equal(date) {
					break
				}
				in = append(in, r)
			}
			if in != nil {
				return in, true
			}
			if region == "" {
				break
			}
		}
	}
	return nil, false
}

// EffectiveFrom returns when the prices in force for a model, tier and region
// at a time took effect; false when none is.
func (b *Book) EffectiveFrom(modelID, tier, region string, at time.Time) (time.Time, bool) {
	rows, ok := b.Rows(modelID, tier, region, at)
	if !ok {
		return time.Time{}, false
	}
	return rows[0].EffectiveFrom, true
}

// Cost prices one event. Only successful calls cost money: denied, throttled and
// failed calls are metered with zero cost and need no price.
func (b *Book) Cost(e *schemas.Event) (schemas.Costs, error) {
	zero := schemas.Costs{}
	if e.Status != schemas.StatusSuccess {
		return zero, nil
	}
	rows, ok := b.Rows(e.ModelID, e.Tier(), e.Region, e.Timestamp)
	if !ok {
		return zero, &NoPriceError{ModelID: e.ModelID, Day: e.Day(), Tier: e.Tier()}
	}
	r := rows[0]
	per1k := func(tokens int64, price decimal.Decimal) decimal.Decimal {
		return decimal.NewFromInt(tokens).Mul(price).Shift(-3) // exact: a shift, not a division
	}
	c := schemas.Costs{Input: per1k(e.InputTokens, r.InputPer1K), Output: per1k(e.OutputTokens, r.OutputPer1K)}
	if e.CacheReadInputTokens > 0 {
		if !r.hasCacheRead {
			return zero, fmt.Errorf("model %q has cache read tokens but its price row (line %d) has no cache_read_per_1k", e.ModelID, r.Line)
		}
		c.CacheRead = per1k(e.CacheReadInputTokens, r.CacheReadPer1K)
	}
	if e.CacheWriteInputTokens > 0 {
		if !r.hasCacheWrite {
			return zero, fmt.Errorf("model %q has cache write tokens but its price row (line %d) has no cache_write_per_1k", e.ModelID, r.Line)
		}
		c.CacheWrite = per1k(e.CacheWriteInputTokens, r.CacheWritePer1K)
	}
	if e.ImageCount > 0 {
		ir, ok := imageRow(rows, e)
		if !ok {
			return zero, fmt.Errorf("model %q: no per_image price for %dx%d, quality %q, %d steps on %s",
				e.ModelID, e.ImageWidth, e.ImageHeight, e.ImageQuality, e.ImageSteps, e.Day())
		}
		c.Image = decimal.NewFromInt(e.ImageCount).Mul(ir.PerImage)
	}
	return c, nil
}

// imageRow picks the image price row for an event: quality must match when the
// row names one; among rows whose size and step limits hold, the tightest wins.
func imageRow(rows []Row, e *schemas.Event) (Row, bool) {
	pixels := e.ImageHeight * e.ImageWidth
	var best Row
	found := false
	for _, r := range rows {
		if !r.hasImage {
			continue
		}
		if r.ImageQuality != "" && !strings.EqualFold(r.ImageQuality, e.ImageQuality) {
			continue
		}
		if r.ImageMaxPixels > 0 && pixels > r.ImageMaxPixels {
			continue
		}
		if r.ImageMaxSteps > 0 && e.ImageSteps > r.ImageMaxSteps {
			continue
		}
		if !found || tighter(r, best) {
			best, found = r, true
		}
	}
	return best, found
}

func tighter(a, b Row) bool {
	lim := func(v int64) int64 {
		if v == 0 {
			return 1 << 62
		}
		return v
	}
	if lim(a.ImageMaxPixels) != lim(b.ImageMaxPixels) {
		return lim(a.ImageMaxPixels) < lim(b.ImageMaxPixels)
	}
	if lim(a.ImageMaxSteps) != lim(b.ImageMaxSteps) {
		return lim(a.ImageMaxSteps) < lim(b.ImageMaxSteps)
	}
	return a.ImageQuality != "" && b.ImageQuality == ""
}
