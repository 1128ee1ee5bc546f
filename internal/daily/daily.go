// Package daily runs the daily compaction: it reads a day's raw events from the
// store, has the aggregator deduplicate and price them exactly, and writes the
// authoritative chargeback CSV, the compacted daily Parquet and manifest.json.
// Outputs are written so that a reader sees a complete revision or the previous
// one: the daily Parquet and CSV first, manifest.json last; an earlier revision's
// CSV and manifest are kept under revisions/ before anything is replaced.
package daily

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/pricing"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
	"github.com/shopspring/decimal"
)

// DefaultGrace is how long after midnight UTC a day stays open for late events.
const DefaultGrace = 2 * time.Hour

// Config wires one compaction.
type Config struct {
	Store  store.Store
	Day    string
	Prices *pricing.Book
	Scale  int  // decimal places of CSV costs; negative writes exact values
	Force  bool // compact before the grace period ends
	Grace  time.Duration
	Now    func() time.Time
	// Parquet options of the daily file (row groups sized for Athena by default).
	Parquet parquetio.Options
}

// Input describes one object read.
type Input struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Rows   int    `json:"rows"`
}

// Totals are the day's sums as written to the manifest.
type Totals struct {
	Invocations  int64  `json:"invocations"`
	InputTokens  int64  `json:"input_tokens"`
	OutputTokens int64  `json:"output_tokens"`
	CacheRead    int64  `json:"cache_read_input_tokens"`
	CacheWrite   int64  `json:"cache_write_input_tokens"`
	Images       int64  `json:"image_count"`
	Denied       int64  `json:"denied"`
	Throttled    int64  `json:"throttled"`
	Errors       int64  `json:"errors"`
	TotalCost    string `json:"total_cost"`
}

// Manifest explains a compaction: what was read and what came out.
type Manifest struct {
	Day               string  `json:"day"`
	Revision          int     `json:"revision"`
	Inputs            []Input `json:"inputs"`
	RowsRead          int     `json:"rows_read"`
	DuplicatesDropped int     `json:"duplicates_dropped"`
	OtherDayRows      int     `json:"other_day_rows"`
	RequestIDs        int     `json:"request_ids"`
	QuarantineObjects int     `json:"quarantine_objects"`
	PriceFile         string  `json:"price_file"`
	PriceSHA256       string  `json:"price_sha256"`
	Outputs           []Input `json:"outputs"`
	Totals            Totals  `json:"totals"`
	// Previous summarises the revision this one replaced, when the inputs changed.
	Previous *Change `json:"previous,omitempty"`
}

// Change says how a revision differs from the one before it.
type Change struct {
	Revision        int      `json:"revision"`
	InputsAdded     []string `json:"inputs_added,omitempty"`
	InputsRemoved   []string `json:"inputs_removed,omitempty"`
	InvocationsDiff int64    `json:"invocations_diff"`
	TotalCostBefore string   `json:"total_cost_before"`
	TotalCostDiff   string   `json:"total_cost_diff"`
}

// Result is what Compact did.
type Result struct {
	Manifest  Manifest
	Day       *aggregator.DayResult
	CSVKey    string
	Unchanged bool // the inputs equal the current revision's: outputs rewritten identically
}

// Keys of a day's outputs.
func CSVKey(day string) string {
	return store.Partition(store.ChargebackPrefix, day) + "chargeback-" + day + ".csv"
}
func ManifestKey(day string) string {
	return store.Partition(store.ChargebackPrefix, day) + "manifest.json"
}
func DailyKey(day string) string {
	return store.Partition(store.DailyPrefix, day) + "daily-" + day + ".parquet"
}

// Compact compacts one day.
func Compact(ctx context.Context, cfg Config) (*Result, error) {
	dayStart, err := time.Parse(schemas.DayLayout, cfg.Day)
	if err != nil {
		return nil, fmt.Errorf("bad day %q: want YYYY-MM-DD", cfg.Day)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if open := dayStart.Add(24*time.Hour + cfg.Grace); !cfg.Force && cfg.Now().Before(open) {
		return nil, fmt.Errorf("day %s is open for late events until %s (grace %s); use --force to compact it now",
			cfg.Day, open.Format(time.RFC3339), cfg.Grace)
	}
	objs, err := cfg.Store.List(ctx, store.Partition(store.EventsPrefix, cfg.Day))
	if err != nil {
		return nil, fmt.Errorf("listing events of %s: %w", cfg.Day, err)
	}
	var events []schemas.Event
	m := Manifest{Day: cfg.Day, PriceFile: cfg.Prices.Source, PriceSHA256: cfg.Prices.SHA256}
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, ".parquet") {
			continue
		}
		data, err := get(ctx, cfg.Store, o.Key)
		if err != nil {
			return nil, err
		}
		rows, err := parquetio.ReadEvents(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", o.Key, err)
		}
		sum := sha256.Sum256(data)
		m.Inputs = append(m.Inputs, Input{Key: o.Key, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Rows: len(rows)})
		for i := range rows {
			events = append(events, rows[i].Event())
		}
	}
	q, err := cfg.Store.List(ctx, store.Partition(store.QuarantinePrefix, cfg.Day))
	if err != nil {
		return nil, fmt.Errorf("listing quarantine of %s: %w", cfg.Day, err)
	}
	m.QuarantineObjects = len(q)
	res, err := aggregator.CompactDay(cfg.Day, events, cfg.Prices)
	if err != nil {
		return nil, fmt.Errorf("compacting %s: %w", cfg.Day, err)
	}
	m.RowsRead, m.DuplicatesDropped, m.OtherDayRows, m.RequestIDs = res.RowsRead, res.Duplicates, res.OtherDay, len(res.Daily)
	t := res.Totals
	m.Totals = Totals{Invocations: t.Invocations, InputTokens: t.InputTokens, OutputTokens: t.OutputTokens,
		CacheRead: t.CacheReadTokens, CacheWrite: t.CacheWriteTokens, Images: t.ImageCount,
		Denied: t.Denied, Throttled: t.Throttled, Errors: t.Errors, TotalCost: t.Costs.Total().String()}

	prev, err := readManifest(ctx, cfg.Store, cfg.Day)
	if err != nil {
		return nil, err
	}
	out := &Result{Day: res, CSVKey: CSVKey(cfg.Day)}
	m.Revision = 1
	if prev != nil {
		if sameInputs(prev.Inputs, m.Inputs) && prev.PriceSHA256 == m.PriceSHA256 {
			m.Revision, m.Previous, out.Unchanged = prev.Revision, prev.Previous, true
		} else {
			m.Revision = prev.Revision + 1
			m.Previous = diff(prev, &m)
			if err := keepRevision(ctx, cfg.Store, cfg.Day, prev.Revision); err != nil {
				return nil, err
			}
		}
	}

	var pq bytes.Buffer
	if err := parquetio.Write(&pq, res.Daily, cfg.Parquet); err != nil {
		return nil, fmt.Errorf("encoding daily parquet: %w", err)
	}
	var csvBuf bytes.Buffer
	if err := aggregator.WriteChargebackCSV(&csvBuf, res.Chargeback, cfg.Scale, m.Revision); err != nil {
		return nil, err
	}
	for _, o := range []struct {
		key  string
		data []byte
	}{{DailyKey(cfg.Day), pq.Bytes()}, {CSVKey(cfg.Day), csvBuf.Bytes()}} {
		sum := sha256.Sum256(o.data)
		m.Outputs = append(m.Outputs, Input{Key: o.key, Size: int64(len(o.data)), SHA256: hex.EncodeToString(sum[:])})
		if err := cfg.Store.Put(ctx, o.key, bytes.NewReader(o.data)); err != nil {
			return nil, fmt.Errorf("writing %s: %w", o.key, err)
		}
	}
	m.Outputs[0].Rows, m.Outputs[1].Rows = len(res.Daily), len(res.Chargeback)
	mj, _ := json.MarshalIndent(&m, "", "  ")
	mj = append(mj, '\n')
	if err := cfg.Store.Put(ctx, ManifestKey(cfg.Day), bytes.NewReader(mj)); err != nil {
		return nil, fmt.Errorf("writing manifest: %w", err)
	}
	out.Manifest = m
	return out, nil
}

func get(ctx context.Context, st store.Store, key string) ([]byte, error) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	return data, nil
}

func readManifest(ctx context.Context, st store.Store, day string) (*Manifest, error) {
	data, err := get(ctx, st, ManifestKey(day))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest of %s is corrupt: %w", day, err)
	}
	return &m, nil
}

func sameInputs(a, b []Input) bool {
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

func diff(prev, cur *Manifest) *Change {
	c := &Change{Revision: prev.Revision, InvocationsDiff: cur.Totals.Invocations - prev.Totals.Invocations, TotalCostBefore: prev.Totals.TotalCost}
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
	before, _ := decimalString(prev.Totals.TotalCost)
	after, _ := decimalString(cur.Totals.TotalCost)
	c.TotalCostDiff = after.Sub(before).String()
	return c
}

// keepRevision copies the current CSV and manifest of a day under revisions/rN/
// before a new revision replaces them.
func keepRevision(ctx context.Context, st store.Store, day string, rev int) error {
	dir := store.Partition(store.ChargebackPrefix, day) + fmt.Sprintf("revisions/r%d/", rev)
	for _, key := range []string{CSVKey(day), ManifestKey(day)} {
		data, err := get(ctx, st, key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		name := key[strings.LastIndex(key, "/")+1:]
		if err := st.Put(ctx, dir+name, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("keeping revision %d: %w", rev, err)
		}
	}
	return nil
}

func decimalString(s string) (decimal.Decimal, error) { return decimal.NewFromString(s) }
