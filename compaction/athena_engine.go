package compaction

// The daily compaction run in Amazon Athena, for days too large for one
// process: the day's events are never read here. Athena runs compact.sql (the
// chargeback) and compact_inputs.sql (what was read) over the events and
// prices tables; this file turns their rows into the same chargeback CSV the
// Go engine writes and commits it as a revision with the same manifest rules.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/infra/athena"
	"github.com/meter-dev/meter/internal/athenaq"
	"github.com/meter-dev/meter/schemas"
)

// PricesKey is where the Athena engine writes the price file it was given:
// the prices table of infra/athena/prices.sql reads the store's prices/ folder.
const PricesKey = "prices/prices.csv"

// Athena configures a compaction in Athena.
type Athena struct {
	// Client runs the queries (workgroup, database, results location).
	Client *athenaq.Client
	// Location is the store as Athena's tables see it, s3://BUCKET/PREFIX:
	// the events table's LOCATION without "events/".
	Location string
	// PriceCSV is the price file's bytes, the same file Config.Prices was
	// parsed from (nil: the shipped file). It is written to PricesKey first,
	// so Athena prices with exactly what the manifest names.
	PriceCSV []byte
}

// AthenaResult is what CompactAthena did.
type AthenaResult struct {
	*Result
	QueryIDs     []string // the Athena queries run, in order
	ScannedBytes int64    // data Athena scanned, summed over the queries (what Athena bills)
}

// CompactAthena compacts one day in Athena and writes the chargeback CSV and
// manifest (engine "athena") as Compact does: the same revisions, the same
// CSV bytes for the same inputs and prices. The manifest's inputs carry key,
// size and rows; their sha256 is empty, because the objects are never read
// here. The daily Parquet is not written by this engine; the manifest's
// outputs list the CSV only.
func CompactAthena(ctx context.Context, cfg Config, ath Athena) (*AthenaResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ath.Client == nil {
		return nil, errors.New("compaction: no Athena client (Athena.Client)")
	}
	loc := strings.TrimSuffix(ath.Location, "/")
	if !strings.HasPrefix(loc, "s3://") || len(loc) <= len("s3://") {
		return nil, fmt.Errorf("the Athena engine needs the store's s3:// location (got %q): Athena reads only S3", ath.Location)
	}
	loc += "/"
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	dayStart, _ := time.Parse(schemas.DayLayout, cfg.Day)
	if open := dayStart.Add(24*time.Hour + cfg.Grace); !cfg.Force && cfg.Now().Before(open) {
		return nil, &OpenDayError{Day: cfg.Day, Until: open, Grace: cfg.Grace}
	}
	scale := -1
	if cfg.Scale != nil && *cfg.Scale >= 0 {
		scale = *cfg.Scale
	}
	priceCSV := ath.PriceCSV
	if priceCSV == nil {
		priceCSV = pricing.DefaultCSV()
	}
	if sha(priceCSV) != cfg.Prices.SHA256 {
		return nil, errors.New("compaction: Athena.PriceCSV is not the file Config.Prices was read from")
	}
	if err := checkAthenaPriceColumns(priceCSV); err != nil {
		return nil, err
	}

	objs, err := cfg.Store.List(ctx, schemas.Partition(schemas.EventsPrefix, cfg.Day))
	if err != nil {
		return nil, fmt.Errorf("listing events of %s: %w", cfg.Day, err)
	}
	m := schemas.Manifest{Day: cfg.Day, Engine: "athena", PriceFile: cfg.Prices.Source, PriceSHA256: cfg.Prices.SHA256, Scale: scale}
	index := map[string]int{}
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".parquet") {
			index[o.Key] = len(m.Inputs)
			m.Inputs = append(m.Inputs, schemas.ManifestObject{Key: o.Key, Size: o.Size})
		}
	}
	if m.QuarantineObjects, m.QuarantineRecords, err = countQuarantine(ctx, cfg.Store, cfg.Day); err != nil {
		return nil, err
	}
	if err := cfg.Store.Put(ctx, PricesKey, bytes.NewReader(priceCSV)); err != nil {
		return nil, fmt.Errorf("writing %s for Athena: %w", PricesKey, err)
	}

	out := &AthenaResult{}
	chargeSQL, err := AthenaSQL(cfg.Day)
	if err != nil {
		return nil, err
	}
	inputsSQL := strings.ReplaceAll(athena.CompactInputs, "${DAY}", cfg.Day)
	// Both queries run at once in Athena.
	chargeID, err := ath.Client.Start(ctx, chargeSQL)
	if err != nil {
		return nil, err
	}
	inputsID, err := ath.Client.Start(ctx, inputsSQL)
	if err != nil {
		return nil, err
	}
	out.QueryIDs = []string{chargeID, inputsID}
	charge, err := ath.Client.Collect(ctx, chargeID)
	if err != nil {
		return nil, fmt.Errorf("chargeback of %s in Athena: %w", cfg.Day, err)
	}
	inputs, err := ath.Client.Collect(ctx, inputsID)
	if err != nil {
		return nil, fmt.Errorf("inputs of %s in Athena: %w", cfg.Day, err)
	}
	out.ScannedBytes = charge.ScannedBytes + inputs.ScannedBytes

	day := &aggregator.DayResult{Day: cfg.Day}
	if err := readAthenaInputs(inputs, loc, index, &m, day); err != nil {
		return nil, err
	}
	unpricedCalls, err := readAthenaChargeback(charge, cfg.Day, day)
	if err != nil {
		return nil, err
	}
	if unpricedCalls > 0 {
		q, err := athenaUnpricedSQL(cfg.Day)
		if err != nil {
			return nil, err
		}
		id, err := ath.Client.Start(ctx, q)
		if err != nil {
			return nil, err
		}
		out.QueryIDs = append(out.QueryIDs, id)
		res, err := ath.Client.Collect(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("unpriced usage of %s in Athena: %w", cfg.Day, err)
		}
		out.ScannedBytes += res.ScannedBytes
		if m.Unpriced, err = readAthenaUnpriced(res, cfg.Day); err != nil {
			return nil, err
		}
	}

	m.RowsRead, m.DuplicatesDropped, m.OtherDayRows = day.RowsRead, day.Duplicates, day.OtherDay
	t := day.Totals
	m.Totals = schemas.ManifestTotals{Invocations: t.Invocations, InputTokens: t.InputTokens, OutputTokens: t.OutputTokens,
		CacheRead: t.CacheReadInputTokens, CacheWrite: t.CacheWriteInputTokens, Images: t.ImageCount,
		Denied: t.Denied, Throttled: t.Throttled, Errors: t.Errors,
		InputCost: t.Costs.Input.String(), OutputCost: t.Costs.Output.String(), TotalCost: t.Costs.Total().String()}

	res, err := commitAthena(ctx, cfg, &m, day)
	if err != nil {
		return nil, err
	}
	out.Result = res
	if len(m.Unpriced) > 0 {
		return out, &UnpricedError{Day: cfg.Day, Unpriced: m.Unpriced}
	}
	return out, nil
}

// checkAthenaPriceColumns refuses a price file whose columns Athena would
// misread: the prices table reads columns by position, in the shipped order.
func checkAthenaPriceColumns(data []byte) error {
	want := strings.Split(athenaPriceHeader, ",")
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		got := strings.Split(line, ",")
		if len(got) > len(want) {
			return fmt.Errorf("price file for Athena: %d columns, the prices table has %d (%s)", len(got), len(want), athenaPriceHeader)
		}
		for i := range got {
			if strings.TrimSpace(got[i]) != want[i] {
				return fmt.Errorf("price file for Athena: column %d is %q, want %q: the prices table reads columns in the order %s",
					i+1, got[i], want[i], athenaPriceHeader)
			}
		}
		return nil
	}
	return errors.New("price file for Athena: no header line")
}

// athenaPriceHeader is the column order of infra/athena/prices.sql.
const athenaPriceHeader = "model_id,effective_from,input_per_1k,output_per_1k,pricing_tier,cache_read_per_1k,cache_write_per_1k,per_image,image_max_pixels,image_quality,image_max_steps,source"

// athenaUnpricedSQL is compact.sql up to its flagged usage, grouped the way
// the manifest lists unpriced usage.
func athenaUnpricedSQL(day string) (string, error) {
	q, err := AthenaSQL(day)
	if err != nil {
		return "", err
	}
	i := strings.Index(q, "\ngroups AS (")
	if i < 0 {
		return "", errors.New("compact.sql has no groups step")
	}
	return strings.TrimSuffix(strings.TrimSpace(q[:i]), ",") + `
SELECT team_id, cost_center, model_id, tier, count(*) AS calls,
  sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
FROM flagged
WHERE unpriced
GROUP BY team_id, cost_center, model_id, tier
ORDER BY model_id, team_id, cost_center, tier`, nil
}

// columns indexes a result's columns by name and checks the ones needed.
func columns(res *athenaq.Result, need ...string) (map[string]int, error) {
	ix := map[string]int{}
	for i, c := range res.Columns {
		ix[strings.ToLower(c)] = i
	}
	for _, n := range need {
		if _, ok := ix[n]; !ok {
			return nil, fmt.Errorf("athena query %s: no column %s in its result", res.QueryID, n)
		}
	}
	return ix, nil
}

func cellInt(row []string, i int, name string) (int64, error) {
	if row[i] == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(row[i], 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("athena result: %s %q is not a count", name, row[i])
	}
	return v, nil
}

func cellDec(row []string, i int, name string) (decimal.Decimal, error) {
	if row[i] == "" {
		return decimal.Zero, nil
	}
	v, err := decimal.NewFromString(row[i])
	if err != nil {
		return decimal.Zero, fmt.Errorf("athena result: %s %q is not a decimal", name, row[i])
	}
	return v, nil
}

// readAthenaInputs fills the inputs' rows and the day's counts.
func readAthenaInputs(res *athenaq.Result, loc string, index map[string]int, m *schemas.Manifest, day *aggregator.DayResult) error {
	ix, err := columns(res, "path", "rows_read", "day_rows", "request_ids")
	if err != nil {
		return err
	}
	var rowsRead, dayRows, ids int64
	for _, r := range res.Rows {
		key, ok := strings.CutPrefix(r[ix["path"]], loc)
		i, listed := index[key]
		if !ok || !listed {
			return fmt.Errorf("athena read %s, which was not among the day's events objects when the compaction listed them: events changed during the compaction; run it again", r[ix["path"]])
		}
		n, err := cellInt(r, ix["rows_read"], "rows_read")
		if err != nil {
			return err
		}
		d, err := cellInt(r, ix["day_rows"], "day_rows")
		if err != nil {
			return err
		}
		if ids, err = cellInt(r, ix["request_ids"], "request_ids"); err != nil {
			return err
		}
		m.Inputs[i].Rows = int(n)
		rowsRead += n
		dayRows += d
	}
	day.RowsRead, day.OtherDay, day.Duplicates = int(rowsRead), int(rowsRead-dayRows), int(dayRows-ids)
	m.RequestIDs = int(ids)
	return nil
}

// readAthenaChargeback turns compact.sql's rows into chargeback rows, sorted
// as the Go engine sorts them, and returns the unpriced calls it counted.
func readAthenaChargeback(res *athenaq.Result, dayName string, day *aggregator.DayResult) (int64, error) {
	ix, err := columns(res, "day", "team_id", "cost_center", "model_id", "invocations", "input_tokens", "output_tokens",
		"input_cost", "output_cost", "cache_read_input_tokens", "cache_write_input_tokens", "cache_read_cost",
		"cache_write_cost", "image_count", "image_cost", "denied", "throttled", "errors", "unpriced_calls")
	if err != nil {
		return 0, err
	}
	var unpriced int64
	for _, r := range res.Rows {
		if r[ix["day"]] != dayName {
			return 0, fmt.Errorf("athena chargeback row of day %q, want %s", r[ix["day"]], dayName)
		}
		row := aggregator.ChargebackRow{Day: dayName, TeamID: r[ix["team_id"]], CostCenter: r[ix["cost_center"]], ModelID: r[ix["model_id"]]}
		ints := []struct {
			name string
			dst  *int64
		}{
			{"invocations", &row.Invocations}, {"input_tokens", &row.InputTokens}, {"output_tokens", &row.OutputTokens},
			{"cache_read_input_tokens", &row.CacheReadInputTokens}, {"cache_write_input_tokens", &row.CacheWriteInputTokens},
			{"image_count", &row.ImageCount}, {"denied", &row.Denied}, {"throttled", &row.Throttled}, {"errors", &row.Errors},
		}
		for _, c := range ints {
			if *c.dst, err = cellInt(r, ix[c.name], c.name); err != nil {
				return 0, err
			}
		}
		decs := []struct {
			name string
			dst  *decimal.Decimal
		}{
			{"input_cost", &row.Costs.Input}, {"output_cost", &row.Costs.Output}, {"cache_read_cost", &row.Costs.CacheRead},
			{"cache_write_cost", &row.Costs.CacheWrite}, {"image_cost", &row.Costs.Image},
		}
		for _, c := range decs {
			if *c.dst, err = cellDec(r, ix[c.name], c.name); err != nil {
				return 0, err
			}
		}
		n, err := cellInt(r, ix["unpriced_calls"], "unpriced_calls")
		if err != nil {
			return 0, err
		}
		unpriced += n
		if row.Counts == (aggregator.Counts{}) {
			continue // only usage that could not be priced, as in the Go engine
		}
		day.Chargeback = append(day.Chargeback, row)
		t := &day.Totals
		t.Invocations += row.Invocations
		t.InputTokens += row.InputTokens
		t.OutputTokens += row.OutputTokens
		t.CacheReadInputTokens += row.CacheReadInputTokens
		t.CacheWriteInputTokens += row.CacheWriteInputTokens
		t.ImageCount += row.ImageCount
		t.Denied += row.Denied
		t.Throttled += row.Throttled
		t.Errors += row.Errors
		t.Costs = t.Costs.Add(row.Costs)
	}
	sort.Slice(day.Chargeback, func(i, j int) bool {
		a, b := day.Chargeback[i], day.Chargeback[j]
		if a.TeamID != b.TeamID {
			return a.TeamID < b.TeamID
		}
		if a.CostCenter != b.CostCenter {
			return a.CostCenter < b.CostCenter
		}
		return a.ModelID < b.ModelID
	})
	day.Totals.Day = dayName
	return unpriced, nil
}

func readAthenaUnpriced(res *athenaq.Result, day string) ([]schemas.ManifestUnpriced, error) {
	ix, err := columns(res, "team_id", "cost_center", "model_id", "tier", "calls", "input_tokens", "output_tokens")
	if err != nil {
		return nil, err
	}
	var out []schemas.ManifestUnpriced
	for _, r := range res.Rows {
		u := schemas.ManifestUnpriced{TeamID: r[ix["team_id"]], CostCenter: r[ix["cost_center"]], ModelID: r[ix["model_id"]], PricingTier: r[ix["tier"]]}
		if u.Calls, err = cellInt(r, ix["calls"], "calls"); err != nil {
			return nil, err
		}
		if u.InputTokens, err = cellInt(r, ix["input_tokens"], "input_tokens"); err != nil {
			return nil, err
		}
		if u.OutputTokens, err = cellInt(r, ix["output_tokens"], "output_tokens"); err != nil {
			return nil, err
		}
		u.Reason = fmt.Sprintf("no price in force on %s for every part of this usage (tokens, cache or images) in the prices table", day)
		out = append(out, u)
	}
	return out, nil
}

// sameListedInputs compares inputs by key, size and hash (the Athena engine
// records no hash: an empty one on both sides compares by key and size).
func sameListedInputs(a, b []schemas.ManifestObject) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Size != b[i].Size || a[i].SHA256 != b[i].SHA256 {
			return false
		}
	}
	return true
}

// commitAthena writes the revision as Compact does (revision copies, the
// CSV, the manifest last), without a daily Parquet of its own.
func commitAthena(ctx context.Context, cfg Config, m *schemas.Manifest, day *aggregator.DayResult) (*Result, error) {
	out := &Result{Day: day, CSVKey: schemas.ChargebackCSVKey(cfg.Day)}
	prev, err := readManifest(ctx, cfg.Store, cfg.Day)
	if err != nil {
		return nil, err
	}
	m.Revision = 1
	var prevCSV []byte
	if prev != nil {
		if prev.Engine == m.Engine && sameListedInputs(prev.Inputs, m.Inputs) && prev.PriceSHA256 == m.PriceSHA256 && prev.Scale == m.Scale {
			m.Revision, m.Previous, out.Unchanged = prev.Revision, prev.Previous, true
		} else {
			m.Revision = prev.Revision + 1
			if prevCSV, err = keepRevision(ctx, cfg.Store, cfg.Day, prev.Revision); err != nil {
				return nil, err
			}
		}
	}
	var csvBuf bytes.Buffer
	if err := aggregator.WriteChargebackCSV(&csvBuf, day.Chargeback, m.Scale, m.Revision); err != nil {
		return nil, err
	}
	if prev != nil && !out.Unchanged {
		if m.Previous, err = diff(prev, m, prevCSV, csvBuf.Bytes()); err != nil {
			return nil, err
		}
	}
	m.Outputs = []schemas.ManifestObject{{Key: schemas.ChargebackCSVKey(cfg.Day), Size: int64(csvBuf.Len()), SHA256: sha(csvBuf.Bytes()), Rows: len(day.Chargeback)}}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	mj = append(mj, '\n')
	puts := []struct {
		key  string
		body func() (io.Reader, error)
	}{
		{schemas.RevisionKey(cfg.Day, m.Revision, schemas.ChargebackCSVName(cfg.Day)), bytesBody(csvBuf.Bytes())},
		{schemas.RevisionKey(cfg.Day, m.Revision, "manifest.json"), bytesBody(mj)},
		{schemas.ChargebackCSVKey(cfg.Day), bytesBody(csvBuf.Bytes())},
		{schemas.ManifestKey(cfg.Day), bytesBody(mj)},
	}
	for _, p := range puts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		body, _ := p.body()
		if err := cfg.Store.Put(ctx, p.key, body); err != nil {
			return nil, fmt.Errorf("writing %s: %w", p.key, err)
		}
	}
	out.Manifest = *m
	return out, nil
}
