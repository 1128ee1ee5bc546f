// Package compaction runs the daily compaction: it reads a day's raw events from the
// store, has the aggregator deduplicate and price them exactly, and writes the
// authoritative chargeback CSV, the compacted daily Parquet and manifest.json.
//
// Outputs form revisions. A revision's CSV and manifest are first written under
// chargeback/dt=D/revisions/rN/ (immutable once committed), then the daily
// Parquet, then the fixed-name CSV (every row carries its revision), and last
// manifest.json: the commit point. Every Put is atomic, so a reader that starts
// from manifest.json sees a complete revision or the previous one, and a run
// killed at any point leaves the last committed revision intact. Outputs hold
// no wall-clock time: compacting the same inputs again gives the same bytes.
// New or changed inputs make the next revision, whose manifest says what
// changed and where the money moved.
//
// A day larger than memory is compacted in buckets of request ids spilled to
// local disk; peak memory then depends on the bucket size, not the day.
package compaction

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// DefaultGrace is how long after midnight UTC a day stays open for late events.
const DefaultGrace = 2 * time.Hour

// Defaults of the bounded-memory path.
const (
	// DefaultMemoryInputBytes is the size of a day's event objects up to which
	// the day is compacted in memory (about 700,000 events).
	DefaultMemoryInputBytes = 32 << 20
	// DefaultBucketInputBytes is the input size per bucket when spilling:
	// two buckets are compacted at once, each taking about 20 times its
	// Parquet size in memory.
	DefaultBucketInputBytes = 12 << 20
)

// Config wires one compaction.
type Config struct {
	Store  store.Store
	Day    string
	Prices *pricing.Book
	// Scale rounds CSV costs half-up to this many places; nil writes exact
	// values (see Places). The zero value of Config is exact.
	Scale *int
	Force bool // compact before the grace period ends
	Grace time.Duration
	Now   func() time.Time
	// Parquet options of the daily file (row groups sized for Athena by default).
	Parquet parquetio.Options

	// Buckets splits the day into this many request-id buckets spilled to
	// TempDir; 0 chooses by input size (1, in memory, for small days).
	Buckets int
	// MemoryInputBytes and BucketInputBytes tune that choice (defaults above).
	MemoryInputBytes int64
	BucketInputBytes int64
	// TempDir holds spill files and the daily file while it is written;
	// default os.TempDir().
	TempDir string
	// Progress, when set, is called before each input object is read, with
	// the objects read so far and their number.
	Progress func(read, total int)
}

// OpenDayError refuses a day still open for late events (Config.Force
// compacts it anyway).
type OpenDayError struct {
	Day   string
	Until time.Time
	Grace time.Duration
}

func (e *OpenDayError) Error() string {
	return fmt.Sprintf("day %s is open for late events until %s (grace %s)", e.Day, e.Until.Format(time.RFC3339), e.Grace)
}

// Result is what Compact did.
type Result struct {
	Manifest schemas.Manifest
	// Day holds the chargeback rows, totals and counts; its Daily rows only
	// when the day was compacted in memory.
	Day       *aggregator.DayResult
	CSVKey    string
	Unchanged bool // the inputs equal the current revision's: outputs rewritten identically
	Buckets   int  // request-id buckets used; 1: in memory
}

// Places returns a Scale of n decimal places, or nil (exact) when n is negative.
func Places(n int) *int {
	if n < 0 {
		return nil
	}
	return &n
}

// Validate reports the first thing wrong with cfg; zero values take defaults.
func (cfg *Config) Validate() error {
	if _, err := time.Parse(schemas.DayLayout, cfg.Day); err != nil {
		return fmt.Errorf("bad day %q: want YYYY-MM-DD", cfg.Day)
	}
	switch {
	case cfg.Store == nil:
		return errors.New("compaction: no store (Config.Store)")
	case cfg.Prices == nil:
		return errors.New("compaction: no price book (Config.Prices)")
	case cfg.Grace < 0:
		return fmt.Errorf("compaction: grace %s is negative", cfg.Grace)
	case cfg.Buckets < 0:
		return fmt.Errorf("compaction: %d buckets", cfg.Buckets)
	}
	return nil
}

// Compact compacts one day.
func Compact(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dayStart, _ := time.Parse(schemas.DayLayout, cfg.Day)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if open := dayStart.Add(24*time.Hour + cfg.Grace); !cfg.Force && cfg.Now().Before(open) {
		return nil, &OpenDayError{Day: cfg.Day, Until: open, Grace: cfg.Grace}
	}
	scale := -1
	if cfg.Scale != nil && *cfg.Scale >= 0 {
		scale = *cfg.Scale
	}
	objs, err := cfg.Store.List(ctx, schemas.Partition(schemas.EventsPrefix, cfg.Day))
	if err != nil {
		return nil, fmt.Errorf("listing events of %s: %w", cfg.Day, err)
	}
	var inputs []store.Object
	var inputBytes int64
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".parquet") {
			inputs = append(inputs, o)
			inputBytes += o.Size
		}
	}
	m := schemas.Manifest{Day: cfg.Day, Engine: "go", PriceFile: cfg.Prices.Source, PriceSHA256: cfg.Prices.SHA256, Scale: scale}
	if m.QuarantineObjects, m.QuarantineRecords, err = countQuarantine(ctx, cfg.Store, cfg.Day); err != nil {
		return nil, err
	}

	buckets := cfg.Buckets
	if buckets <= 0 {
		buckets = chooseBuckets(inputBytes, cfg.MemoryInputBytes, cfg.BucketInputBytes)
	}
	tmp, err := os.MkdirTemp(cfg.TempDir, "meter-compact-"+cfg.Day+"-")
	if err != nil {
		return nil, fmt.Errorf("creating temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	run := &compaction{cfg: cfg, tmp: tmp, buckets: buckets}
	defer func() {
		if run.dailyF != nil {
			run.dailyF.Close()
		}
	}()
	day, err := run.compact(ctx, inputs, &m)
	if err != nil {
		return nil, err
	}
	out := &Result{Day: day, CSVKey: schemas.ChargebackCSVKey(cfg.Day), Buckets: buckets}
	m.RowsRead, m.DuplicatesDropped, m.OtherDayRows, m.RequestIDs = day.RowsRead, day.Duplicates, day.OtherDay, run.requests
	t := day.Totals
	m.Totals = schemas.ManifestTotals{Invocations: t.Invocations, InputTokens: t.InputTokens, OutputTokens: t.OutputTokens,
		CacheRead: t.CacheReadInputTokens, CacheWrite: t.CacheWriteInputTokens, Images: t.ImageCount,
		Denied: t.Denied, Throttled: t.Throttled, Errors: t.Errors,
		InputCost: t.Costs.Input.String(), OutputCost: t.Costs.Output.String(), TotalCost: t.Costs.Total().String()}
	for _, u := range day.Unpriced {
		m.Unpriced = append(m.Unpriced, schemas.ManifestUnpriced{TeamID: u.TeamID, CostCenter: u.CostCenter, ModelID: u.ModelID,
			PricingTier: u.Tier, Calls: u.Calls, InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, Reason: u.Reason})
	}

	prev, err := readManifest(ctx, cfg.Store, cfg.Day)
	if err != nil {
		return nil, err
	}
	m.Revision = 1
	var prevCSV []byte
	if prev != nil {
		if sameInputs(prev.Inputs, m.Inputs) && prev.PriceSHA256 == m.PriceSHA256 && prev.Scale == m.Scale {
			m.Revision, m.Previous, out.Unchanged = prev.Revision, prev.Previous, true
		} else {
			m.Revision = prev.Revision + 1
			if prevCSV, err = keepRevision(ctx, cfg.Store, cfg.Day, prev.Revision); err != nil {
				return nil, err
			}
		}
	}

	var csvBuf bytes.Buffer
	if err := aggregator.WriteChargebackCSV(&csvBuf, day.Chargeback, scale, m.Revision); err != nil {
		return nil, err
	}
	if prev != nil && !out.Unchanged {
		if m.Previous, err = diff(prev, &m, prevCSV, csvBuf.Bytes()); err != nil {
			return nil, err
		}
	}
	csvOut := schemas.ManifestObject{Key: schemas.ChargebackCSVKey(cfg.Day), Size: int64(csvBuf.Len()), SHA256: sha(csvBuf.Bytes()), Rows: len(day.Chargeback)}
	m.Outputs = []schemas.ManifestObject{run.dailyOut, csvOut}
	mj, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return nil, err
	}
	mj = append(mj, '\n')

	// The revision's own copies first, then the daily file, the CSV, and the
	// manifest last: until it lands, readers keep the previous revision.
	puts := []struct {
		key  string
		body func() (io.Reader, error)
	}{
		{schemas.RevisionKey(cfg.Day, m.Revision, schemas.ChargebackCSVName(cfg.Day)), bytesBody(csvBuf.Bytes())},
		{schemas.RevisionKey(cfg.Day, m.Revision, "manifest.json"), bytesBody(mj)},
		{schemas.DailyKey(cfg.Day), run.dailyBody},
		{schemas.ChargebackCSVKey(cfg.Day), bytesBody(csvBuf.Bytes())},
		{schemas.ManifestKey(cfg.Day), bytesBody(mj)},
	}
	for _, p := range puts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		body, err := p.body()
		if err != nil {
			return nil, err
		}
		if err := cfg.Store.Put(ctx, p.key, body); err != nil {
			return nil, fmt.Errorf("writing %s: %w", p.key, err)
		}
	}
	out.Manifest = m
	if len(m.Unpriced) > 0 {
		return out, &UnpricedError{Day: cfg.Day, Unpriced: m.Unpriced}
	}
	return out, nil
}

// UnpricedError reports usage that could not be priced. Compact returns it
// with its Result after writing every output: the chargeback holds every
// priced row, and the manifest lists the unpriced usage. It is an error so
// that a scheduler alerts and an operator adds the price and compacts again.
type UnpricedError struct {
	Day      string
	Unpriced []schemas.ManifestUnpriced
}

func (e *UnpricedError) Error() string {
	models := map[string]int64{}
	var names []string
	for _, u := range e.Unpriced {
		if _, ok := models[u.ModelID]; !ok {
			names = append(names, u.ModelID)
		}
		models[u.ModelID] += u.Calls
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s (%d calls)", n, models[n])
	}
	return fmt.Sprintf("%s: no price for %s: that usage is left out of the chargeback and listed in the manifest; add the price and compact again",
		e.Day, strings.Join(parts, ", "))
}

func bytesBody(b []byte) func() (io.Reader, error) {
	return func() (io.Reader, error) { return bytes.NewReader(b), nil }
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func chooseBuckets(inputBytes, memory, perBucket int64) int {
	if memory <= 0 {
		memory = DefaultMemoryInputBytes
	}
	if perBucket <= 0 {
		perBucket = DefaultBucketInputBytes
	}
	if inputBytes <= memory {
		return 1
	}
	return int((inputBytes + perBucket - 1) / perBucket)
}

// compaction is one run's working state.
type compaction struct {
	cfg      Config
	tmp      string
	buckets  int
	requests int
	dailyOut schemas.ManifestObject
	dailyF   *os.File
}

func (c *compaction) dailyBody() (io.Reader, error) {
	if _, err := c.dailyF.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return c.dailyF, nil
}

// compact reads the inputs, compacts them in c.buckets buckets and writes the
// daily Parquet to a temporary file. It fills m.Inputs.
func (c *compaction) compact(ctx context.Context, inputs []store.Object, m *schemas.Manifest) (*aggregator.DayResult, error) {
	comp, err := aggregator.NewCompactor(c.cfg.Day, c.cfg.Prices)
	if err != nil {
		return nil, err
	}
	var (
		day    []schemas.DailyRow // in memory: the whole day
		spills []*spillWriter     // spilling: one per bucket
		tab    = newStrtab()
		seed   = maphash.MakeSeed()
		row    schemas.DailyRow
	)
	defer func() {
		for _, s := range spills {
			if s != nil {
				s.remove()
			}
		}
	}()
	for i := 0; i < c.buckets && c.buckets > 1; i++ {
		s, err := newSpillWriter(c.tmp, fmt.Sprintf("bucket-%04d-", i), tab)
		if err != nil {
			return nil, err
		}
		spills = append(spills, s)
	}
	// The next input is read and decoded while this one is spilled.
	ictx, stop := context.WithCancel(ctx)
	defer stop()
	decoded := readInputs(ictx, c.cfg.Store, inputs)
	for i := range inputs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c.cfg.Progress != nil {
			c.cfg.Progress(i, len(inputs))
		}
		in, ok := <-decoded
		if !ok {
			// The reader stops early only when the context ended.
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("compacting %s: inputs ended early", c.cfg.Day)
		}
		if in.err != nil {
			return nil, in.err
		}
		rows := in.rows
		m.Inputs = append(m.Inputs, in.obj)
		if spills == nil {
			for i := range rows {
				day = append(day, dailyOf(&rows[i]))
			}
			continue
		}
		for i := range rows {
			row = dailyOf(&rows[i])
			if err := spills[aggregator.BucketOf(seed, rows[i].RequestID, c.buckets)].write(&row); err != nil {
				return nil, fmt.Errorf("writing spill file: %w", err)
			}
		}
	}

	f, err := os.CreateTemp(c.tmp, "daily-*.parquet")
	if err != nil {
		return nil, err
	}
	c.dailyF = f
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	pw, err := parquetio.NewWriter[schemas.DailyRow](cw, c.cfg.Parquet)
	if err != nil {
		return nil, err
	}
	var mem []schemas.DailyRow
	if spills == nil {
		if mem, err = comp.BucketRows(day); err != nil {
			return nil, fmt.Errorf("compacting %s: %w", c.cfg.Day, err)
		}
		day = nil
		for i := 0; i < len(mem); i += dailyChunk {
			if err := pw.WriteRows(mem[i:min(i+dailyChunk, len(mem))]); err != nil {
				return nil, err
			}
		}
		c.dailyOut.Rows = len(mem)
		if err := pw.Close(); err != nil {
			return nil, fmt.Errorf("encoding daily parquet: %w", err)
		}
	} else {
		runs, err := c.compactBuckets(ctx, comp, spills, tab)
		defer func() {
			for _, r := range runs {
				r.remove()
			}
		}()
		if err != nil {
			return nil, err
		}
		daily := newAsyncDaily(pw)
		err = mergeRuns(runs, func(r *schemas.DailyRow) error {
			c.dailyOut.Rows++
			return daily.write(r)
		})
		if err != nil {
			daily.abort()
			return nil, err
		}
		if err := daily.close(); err != nil {
			return nil, fmt.Errorf("encoding daily parquet: %w", err)
		}
	}
	c.requests = comp.Requests
	c.dailyOut.Key, c.dailyOut.Size, c.dailyOut.SHA256 = schemas.DailyKey(c.cfg.Day), cw.n, hex.EncodeToString(h.Sum(nil))
	res := comp.Result()
	res.Daily = mem
	return res, nil
}

// decodedInput is one events object, read and decoded.
type decodedInput struct {
	obj  schemas.ManifestObject
	rows []schemas.EventRow
	err  error
}

// readInputs reads and decodes the inputs in order on its own goroutine, at
// most two ahead of the caller, which must take one result per input (or
// cancel ctx).
func readInputs(ctx context.Context, st store.Store, inputs []store.Object) <-chan decodedInput {
	out := make(chan decodedInput, 1)
	go func() {
		defer close(out)
		for _, o := range inputs {
			var in decodedInput
			data, err := store.ReadAll(ctx, st, o.Key)
			if err == nil {
				in.rows, err = parquetio.ReadEvents(bytes.NewReader(data), int64(len(data)))
				if err != nil {
					err = fmt.Errorf("reading %s: %w", o.Key, err)
				}
			}
			in.err = err
			if err == nil {
				in.obj = schemas.ManifestObject{Key: o.Key, Size: int64(len(data)), SHA256: sha(data), Rows: len(in.rows)}
			}
			select {
			case out <- in:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return out
}

// compactBuckets compacts the spilled buckets, two at a time, and returns
// their sorted daily rows as runs on disk. Each worker has its own Compactor,
// merged into comp at the end.
func (c *compaction) compactBuckets(ctx context.Context, comp *aggregator.Compactor, spills []*spillWriter, tab *strtab) ([]*spillReader, error) {
	// Decoding reads the shared string table and writing runs may add to it:
	// every string a run needs is already in the table from the spill phase,
	// so workers only read it.
	workers := 2
	runs := make([]*spillReader, len(spills))
	errs := make([]error, workers)
	comps := make([]*aggregator.Compactor, workers)
	next := make(chan int, len(spills))
	for i := range spills {
		next <- i
	}
	close(next)
	done := make(chan struct{})
	for w := 0; w < workers; w++ {
		wc, err := aggregator.NewCompactor(c.cfg.Day, c.cfg.Prices)
		if err != nil {
			return nil, err
		}
		comps[w] = wc
		go func(w int) {
			defer func() { done <- struct{}{} }()
			var rows []schemas.DailyRow
			for i := range next {
				if errs[w] != nil {
					continue
				}
				if err := ctx.Err(); err != nil {
					errs[w] = err
					continue
				}
				runs[i], rows, errs[w] = c.compactBucket(comps[w], spills[i], i, rows[:0])
				spills[i] = nil
			}
		}(w)
	}
	for w := 0; w < workers; w++ {
		<-done
	}
	var live []*spillReader
	for _, r := range runs {
		if r != nil {
			live = append(live, r)
		}
	}
	for _, err := range errs {
		if err != nil {
			return live, err
		}
	}
	for _, wc := range comps {
		comp.Merge(wc)
	}
	return live, nil
}

// compactBucket reads a spilled bucket whole, compacts it (its rows kept as
// daily rows throughout) and writes its sorted rows as a run. rows is a
// buffer to reuse; the one to reuse next is returned.
func (c *compaction) compactBucket(comp *aggregator.Compactor, s *spillWriter, i int, rows []schemas.DailyRow) (*spillReader, []schemas.DailyRow, error) {
	r, err := s.finish()
	if err != nil {
		s.remove()
		return nil, rows, err
	}
	r.readAll()
	rows = slices.Grow(rows[:0], r.left)[:r.left]
	n := 0
	for n < len(rows) && r.read(&rows[n]) {
		n++
	}
	r.remove()
	if r.err != nil {
		return nil, rows, r.err
	}
	kept, err := comp.BucketRows(rows[:n])
	if err != nil {
		return nil, rows, fmt.Errorf("compacting %s: %w", c.cfg.Day, err)
	}
	w, err := newSpillWriter(c.tmp, fmt.Sprintf("run-%04d-", i), s.tab)
	if err != nil {
		return nil, rows, err
	}
	for j := range kept {
		if err := w.write(&kept[j]); err != nil {
			w.remove()
			return nil, rows, fmt.Errorf("writing spill file: %w", err)
		}
	}
	// The rows hold substrings of the bucket's file: let it go.
	clear(rows)
	rr, err := w.finish()
	if err != nil {
		w.remove()
		return nil, rows, err
	}
	return rr, rows, nil
}

// dailyOf is the daily row of an event row, its costs zero (as
// DailyRow.SetEvent makes it from the event).
func dailyOf(r *schemas.EventRow) schemas.DailyRow {
	return schemas.DailyRow{
		SchemaVersion: r.SchemaVersion, EventID: r.EventID, RequestID: r.RequestID, Timestamp: r.Timestamp,
		TeamID: r.TeamID, CostCenter: r.CostCenter, ModelID: r.ModelID, Operation: r.Operation, Status: r.Status,
		InputTokens: r.InputTokens, OutputTokens: r.OutputTokens, LatencyMS: r.LatencyMS,
		CacheReadInputTokens: r.CacheReadInputTokens, CacheWriteInputTokens: r.CacheWriteInputTokens,
		ImageCount: r.ImageCount, ImageHeight: r.ImageHeight, ImageWidth: r.ImageWidth, ImageSteps: r.ImageSteps,
		ImageQuality: r.ImageQuality, APIKeyID: r.APIKeyID, Region: r.Region, PricingTier: r.PricingTier,
		ModelAlias: r.ModelAlias,
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// countQuarantine counts the objects and records (lines) quarantined on day.
// Quarantine is partitioned by arrival day, so these are the records that
// arrived that day and could not be used.
func countQuarantine(ctx context.Context, st store.Store, day string) (objects, records int, err error) {
	q, err := st.List(ctx, schemas.Partition(schemas.QuarantinePrefix, day))
	if err != nil {
		return 0, 0, fmt.Errorf("listing quarantine of %s: %w", day, err)
	}
	for _, o := range q {
		data, err := store.ReadAll(ctx, st, o.Key)
		if err != nil {
			return 0, 0, err
		}
		objects++
		records += bytes.Count(data, []byte{'\n'})
		if len(data) > 0 && data[len(data)-1] != '\n' {
			records++
		}
	}
	return objects, records, nil
}

func readManifest(ctx context.Context, st store.Store, day string) (*schemas.Manifest, error) {
	data, err := store.ReadAll(ctx, st, schemas.ManifestKey(day))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m schemas.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest of %s is corrupt: %w", day, err)
	}
	return &m, nil
}

func sameInputs(a, b []schemas.ManifestObject) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].SHA256 != b[i].SHA256 {
			return false
		}
	}
	return true
}

// diff explains how cur differs from prev, group by group from the two CSVs.
func diff(prev, cur *schemas.Manifest, prevCSV, curCSV []byte) (*schemas.ManifestChange, error) {
	c := &schemas.ManifestChange{Revision: prev.Revision, InvocationsDiff: cur.Totals.Invocations - prev.Totals.Invocations,
		TotalCostBefore: prev.Totals.TotalCost, PricesChanged: prev.PriceSHA256 != cur.PriceSHA256, ScaleChanged: prev.Scale != cur.Scale,
		RowsReadDiff: cur.RowsRead - prev.RowsRead, RequestIDsDiff: cur.RequestIDs - prev.RequestIDs,
		DuplicatesDiff: cur.DuplicatesDropped - prev.DuplicatesDropped}
	was := map[string]string{}
	for _, in := range prev.Inputs {
		was[in.Key] = in.SHA256
	}
	now := map[string]bool{}
	for _, in := range cur.Inputs {
		now[in.Key] = true
		if h, ok := was[in.Key]; !ok || h != in.SHA256 {
			c.InputsAdded = append(c.InputsAdded, in.Key)
		}
	}
	for _, in := range prev.Inputs {
		if !now[in.Key] {
			c.InputsRemoved = append(c.InputsRemoved, in.Key)
		}
	}
	before, _ := decimal.NewFromString(prev.Totals.TotalCost)
	after, _ := decimal.NewFromString(cur.Totals.TotalCost)
	c.TotalCostDiff = after.Sub(before).String()

	d, err := aggregator.DiffChargeback(prevCSV, curCSV)
	if err != nil {
		return nil, fmt.Errorf("chargeback of %s: %w", cur.Day, err)
	}
	for _, rows := range [][]aggregator.RowChange{d.Added, d.Removed, d.Changed} {
		for _, r := range rows {
			c.Groups = append(c.Groups, schemas.ManifestGroupChange{TeamID: r.TeamID, CostCenter: r.CostCenter, ModelID: r.ModelID,
				InvocationsBefore: r.InvocationsBefore, InvocationsAfter: r.InvocationsAfter,
				TotalCostBefore: r.CostBefore.String(), TotalCostAfter: r.CostAfter.String(), TotalCostDiff: r.CostDiff().String()})
		}
	}
	sort.Slice(c.Groups, func(i, j int) bool {
		a, b := c.Groups[i], c.Groups[j]
		return a.TeamID+"\x00"+a.CostCenter+"\x00"+a.ModelID < b.TeamID+"\x00"+b.CostCenter+"\x00"+b.ModelID
	})
	return c, nil
}

// keepRevision returns the CSV of the committed revision rev. Revisions are
// written under revisions/rN/ before they are committed; a day compacted by an
// older release has only the fixed-name files, which are copied there first.
func keepRevision(ctx context.Context, st store.Store, day string, rev int) ([]byte, error) {
	data, err := store.ReadAll(ctx, st, schemas.RevisionKey(day, rev, schemas.ChargebackCSVName(day)))
	if err == nil {
		return data, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var csvData []byte
	for _, key := range []string{schemas.ChargebackCSVKey(day), schemas.ManifestKey(day)} {
		data, err := store.ReadAll(ctx, st, key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		name := key[strings.LastIndex(key, "/")+1:]
		if name != "manifest.json" {
			csvData = data
		}
		if err := st.Put(ctx, schemas.RevisionKey(day, rev, name), bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("keeping revision %d: %w", rev, err)
		}
	}
	return csvData, nil
}
