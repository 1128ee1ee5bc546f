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
	"github.com/meter-dev/meter/internal/store"
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
// here, so a day is unchanged when its objects' keys and sizes are (then no
// query runs at all). The daily table's rows are Athena's own UNLOAD output
// under daily/dt=D/ (several objects, no global order), listed in the
// manifest's outputs; once the manifest is committed, the previous
// revision's daily objects are deleted (PruneDaily). Until then the daily
// table holds both: the chargeback CSV and manifest are the bill. The queries
// are recorded at PendingKey before the wait, so a run stopped while Athena
// works (a Lambda's timeout) is resumed by the next run for the same inputs.
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
	out := &AthenaResult{}
	prev, err := readManifest(ctx, cfg.Store, cfg.Day)
	if err != nil {
		return nil, err
	}
	if prev != nil && prev.Engine == m.Engine && sameListedInputs(prev.Inputs, m.Inputs) && prev.PriceSHA256 == m.PriceSHA256 && prev.Scale == m.Scale {
		// Nothing to ask Athena: the committed revision stands.
		out.Result = &Result{Manifest: *prev, CSVKey: schemas.ChargebackCSVKey(cfg.Day), Unchanged: true}
		if err := PruneDaily(ctx, cfg.Store, cfg.Day); err != nil {
			return out, err
		}
		if len(prev.Unpriced) > 0 {
			return out, &UnpricedError{Day: cfg.Day, Unpriced: prev.Unpriced}
		}
		return out, nil
	}
	sig := athenaSignature(&m, loc)
	pending, err := readPending(ctx, cfg.Store, cfg.Day, sig)
	if err != nil {
		return nil, err
	}
	var ids [3]string
	var before []store.Object
	if pending != nil {
		// A run for these inputs started the queries and stopped waiting.
		copy(ids[:], pending.QueryIDs)
		for _, k := range pending.DailyBefore {
			before = append(before, store.Object{Key: k})
		}
	} else {
		if err := cfg.Store.Put(ctx, PricesKey, bytes.NewReader(priceCSV)); err != nil {
			return nil, fmt.Errorf("writing %s for Athena: %w", PricesKey, err)
		}
		dailyPrefix := schemas.Partition(schemas.DailyPrefix, cfg.Day)
		if before, err = cfg.Store.List(ctx, dailyPrefix); err != nil {
			return nil, fmt.Errorf("listing %s: %w", dailyPrefix, err)
		}
		chargeSQL, err := AthenaSQL(cfg.Day)
		if err != nil {
			return nil, err
		}
		unloadSQL, err := athenaDailySQL(cfg.Day, loc)
		if err != nil {
			return nil, err
		}
		inputsSQL := strings.ReplaceAll(athena.CompactInputs, "${DAY}", cfg.Day)
		// The three queries run at once in Athena.
		for i, q := range []string{chargeSQL, inputsSQL, unloadSQL} {
			if ids[i], err = ath.Client.Start(ctx, q); err != nil {
				return nil, err
			}
		}
		p := &athenaPending{Signature: sig, QueryIDs: ids[:]}
		for _, o := range before {
			p.DailyBefore = append(p.DailyBefore, o.Key)
		}
		if err := writePending(ctx, cfg.Store, cfg.Day, p); err != nil {
			return nil, err
		}
	}
	// A query that failed is not waited for again: the next run starts afresh.
	forget := func(err error) error {
		var qe *athenaq.QueryError
		if errors.As(err, &qe) {
			if derr := cfg.Store.Delete(ctx, PendingKey(cfg.Day)); derr != nil {
				return errors.Join(err, derr)
			}
		}
		return err
	}
	out.QueryIDs = ids[:]
	charge, err := ath.Client.Collect(ctx, ids[0])
	if err != nil {
		return nil, forget(fmt.Errorf("chargeback of %s in Athena: %w", cfg.Day, err))
	}
	inputs, err := ath.Client.Collect(ctx, ids[1])
	if err != nil {
		return nil, forget(fmt.Errorf("inputs of %s in Athena: %w", cfg.Day, err))
	}
	unload, err := ath.Client.Wait(ctx, ids[2])
	if err != nil {
		return nil, forget(fmt.Errorf("daily table of %s in Athena (UNLOAD to %s%s): %w", cfg.Day, loc, schemas.DailyPrefix, err))
	}
	out.ScannedBytes = charge.ScannedBytes + inputs.ScannedBytes
	if unload.Statistics != nil && unload.Statistics.DataScannedInBytes != nil {
		out.ScannedBytes += *unload.Statistics.DataScannedInBytes
	}
	dailyOut, err := newDailyObjects(ctx, cfg, ath, loc, before, out)
	if err != nil {
		return nil, err
	}

	day := &aggregator.DayResult{Day: cfg.Day}
	if err := readAthenaInputs(ctx, cfg, inputs, loc, index, &m, day); err != nil {
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

	res, err := commitAthena(ctx, cfg, prev, &m, day, dailyOut)
	if err != nil {
		return nil, err
	}
	out.Result = res
	if err := cfg.Store.Delete(ctx, PendingKey(cfg.Day)); err != nil {
		return out, fmt.Errorf("removing %s after the commit: %w", PendingKey(cfg.Day), err)
	}
	if err := PruneDaily(ctx, cfg.Store, cfg.Day); err != nil {
		return out, err
	}
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

// readAthenaInputs fills the inputs' rows and the day's counts. An object
// Athena read that the listing before the queries did not hold (a late event
// written meanwhile) is counted, so it joins the inputs with its size from a
// new listing. An object written after Athena listed the partition is in
// neither, and the next RecompactChanged finds it.
func readAthenaInputs(ctx context.Context, cfg Config, res *athenaq.Result, loc string, index map[string]int, m *schemas.Manifest, day *aggregator.DayResult) error {
	ix, err := columns(res, "path", "rows_read", "day_rows", "request_ids")
	if err != nil {
		return err
	}
	var relisted map[string]int64
	var rowsRead, dayRows, ids int64
	for _, r := range res.Rows {
		key, ok := strings.CutPrefix(r[ix["path"]], loc)
		if !ok || !strings.HasPrefix(key, schemas.Partition(schemas.EventsPrefix, cfg.Day)) {
			return fmt.Errorf("athena read %s, outside the day's events partition under %s: check the events table's location", r[ix["path"]], loc)
		}
		i, listed := index[key]
		if !listed {
			if relisted == nil {
				objs, err := cfg.Store.List(ctx, schemas.Partition(schemas.EventsPrefix, cfg.Day))
				if err != nil {
					return fmt.Errorf("listing events of %s again: %w", cfg.Day, err)
				}
				relisted = map[string]int64{}
				for _, o := range objs {
					relisted[o.Key] = o.Size
				}
			}
			size, ok := relisted[key]
			if !ok {
				return fmt.Errorf("athena read %s, which the store does not list: run the compaction again", r[ix["path"]])
			}
			i = len(m.Inputs)
			index[key] = i
			m.Inputs = append(m.Inputs, schemas.ManifestObject{Key: key, Size: size})
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
	sort.Slice(m.Inputs, func(a, b int) bool { return m.Inputs[a].Key < m.Inputs[b].Key })
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

// commitAthena writes a new revision as Compact does (revision copies, the
// CSV, the manifest last); the daily objects Athena wrote are its outputs.
func commitAthena(ctx context.Context, cfg Config, prev, m *schemas.Manifest, day *aggregator.DayResult, daily []schemas.ManifestObject) (*Result, error) {
	out := &Result{Day: day, CSVKey: schemas.ChargebackCSVKey(cfg.Day)}
	m.Revision = 1
	var prevCSV []byte
	var err error
	if prev != nil {
		m.Revision = prev.Revision + 1
		if prevCSV, err = keepRevision(ctx, cfg.Store, cfg.Day, prev.Revision); err != nil {
			return nil, err
		}
	}
	var csvBuf bytes.Buffer
	if err := aggregator.WriteChargebackCSV(&csvBuf, day.Chargeback, m.Scale, m.Revision); err != nil {
		return nil, err
	}
	if prev != nil {
		if m.Previous, err = diff(prev, m, prevCSV, csvBuf.Bytes()); err != nil {
			return nil, err
		}
	}
	m.Outputs = append(append([]schemas.ManifestObject{}, daily...),
		schemas.ManifestObject{Key: schemas.ChargebackCSVKey(cfg.Day), Size: int64(csvBuf.Len()), SHA256: sha(csvBuf.Bytes()), Rows: len(day.Chargeback)})
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

// athenaDailyFinal selects the daily table's rows from compact.sql's steps:
// one per request id, priced, as the Go engine's daily Parquet holds them.
const athenaDailyFinal = `
SELECT
  schema_version, event_id, request_id, ts AS "timestamp", team_id, cost_center, model_id, operation, status,
  input_tokens, output_tokens, latency_ms, cache_read_input_tokens, cache_write_input_tokens,
  image_count, image_height, image_width, image_steps, image_quality, api_key_id, region, pricing_tier, model_alias,
  CAST(COALESCE(input_cost, 0) AS DECIMAL(18, 10)) AS input_cost,
  CAST(COALESCE(output_cost, 0) AS DECIMAL(18, 10)) AS output_cost,
  CAST(COALESCE(cache_read_cost, 0) AS DECIMAL(18, 10)) AS cache_read_cost,
  CAST(COALESCE(cache_write_cost, 0) AS DECIMAL(18, 10)) AS cache_write_cost,
  CAST(COALESCE(image_cost, 0) AS DECIMAL(18, 10)) AS image_cost,
  CAST(COALESCE(input_cost, 0) + COALESCE(output_cost, 0) + COALESCE(cache_read_cost, 0) + COALESCE(cache_write_cost, 0)
    + COALESCE(image_cost, 0) AS DECIMAL(18, 10)) AS total_cost,
  '${DAY}' AS dt
FROM flagged
WHERE NOT unpriced
ORDER BY team_id, model_id, ts, request_id`

// athenaDailySQL is the UNLOAD that writes the day's daily table under
// loc/daily/dt=DAY/ (partitioned: Athena adds objects to the partition).
func athenaDailySQL(day, loc string) (string, error) {
	q, err := AthenaSQL(day)
	if err != nil {
		return "", err
	}
	w := strings.Index(q, "\nWITH ")
	i := strings.Index(q, "\ngroups AS (")
	if w < 0 || i < 0 {
		return "", errors.New("compact.sql has no WITH or groups step")
	}
	sel := strings.TrimSuffix(strings.TrimSpace(q[w+1:i]), ",") + strings.ReplaceAll(athenaDailyFinal, "${DAY}", day)
	return "UNLOAD (\n" + sel + "\n) TO '" + loc + schemas.DailyPrefix + "'\nWITH (format = 'PARQUET', compression = 'SNAPPY', partitioned_by = ARRAY['dt'])", nil
}

// newDailyObjects lists the objects the UNLOAD added under daily/dt=D/ and
// asks Athena for their rows.
func newDailyObjects(ctx context.Context, cfg Config, ath Athena, loc string, before []store.Object, out *AthenaResult) ([]schemas.ManifestObject, error) {
	prefix := schemas.Partition(schemas.DailyPrefix, cfg.Day)
	after, err := cfg.Store.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", prefix, err)
	}
	old := map[string]bool{}
	for _, o := range before {
		old[o.Key] = true
	}
	idx := map[string]int{}
	var objs []schemas.ManifestObject
	for _, o := range after {
		if !old[o.Key] {
			idx[o.Key] = len(objs)
			objs = append(objs, schemas.ManifestObject{Key: o.Key, Size: o.Size})
		}
	}
	if len(objs) == 0 {
		return nil, nil
	}
	q := "SELECT \"$path\" AS path, count(*) AS row_count FROM daily WHERE dt = '" + cfg.Day + "' GROUP BY 1"
	res, err := ath.Client.Run(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("rows of the daily table of %s in Athena: %w", cfg.Day, err)
	}
	out.QueryIDs = append(out.QueryIDs, res.QueryID)
	out.ScannedBytes += res.ScannedBytes
	ix, err := columns(res, "path", "row_count")
	if err != nil {
		return nil, err
	}
	for _, r := range res.Rows {
		key, _ := strings.CutPrefix(r[ix["path"]], loc)
		if i, ok := idx[key]; ok {
			n, err := cellInt(r, ix["row_count"], "row_count")
			if err != nil {
				return nil, err
			}
			objs[i].Rows = int(n)
		}
	}
	return objs, nil
}

// PruneDaily deletes the objects under daily/dt=D/ that the day's committed
// manifest does not list among its outputs: what an earlier revision (of
// either engine) or an interrupted run left there. Without a manifest it
// deletes nothing.
func PruneDaily(ctx context.Context, st store.Store, day string) error {
	m, err := readManifest(ctx, st, day)
	if err != nil || m == nil {
		return err
	}
	keep := map[string]bool{}
	for _, o := range m.Outputs {
		keep[o.Key] = true
	}
	objs, err := st.List(ctx, schemas.Partition(schemas.DailyPrefix, day))
	if err != nil {
		return fmt.Errorf("listing the daily objects of %s: %w", day, err)
	}
	for _, o := range objs {
		if !keep[o.Key] {
			if err := st.Delete(ctx, o.Key); err != nil {
				return fmt.Errorf("deleting %s, left by an earlier revision: %w", o.Key, err)
			}
		}
	}
	return nil
}
