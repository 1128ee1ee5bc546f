package compaction_test

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

func TestLateEventMakesANewRevision(t *testing.T) {
	for _, engine := range []string{"go", "athena"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			next := "2026-03-15"
			st, _, book := genStore(t, dir, daygen.Config{Day: testDay, Events: 2_000, Files: 2, Seed: 5})
			addFiles(t, st, daygen.Config{Day: next, Events: 1_000, Files: 1, Seed: 6})
			now := time.Date(2026, 3, 17, 3, 0, 0, 0, time.UTC) // both days closed, the 16th still open
			compact := compaction.Compact
			if engine == "athena" {
				ath := compaction.Athena{Client: startAthena(t, dir), Location: athenaLocation, PriceCSV: []byte(daygen.PriceCSV(testDay))}
				compact = func(ctx context.Context, cfg compaction.Config) (*compaction.Result, error) {
					res, err := compaction.CompactAthena(ctx, cfg, ath)
					if res == nil {
						return nil, err
					}
					return res.Result, err
				}
			}
			cfg := compaction.Config{Store: st, Prices: book, Now: func() time.Time { return now }}

			// The scheduled run finds both days never compacted and compacts them.
			first, err := compaction.RecompactChanged(ctx, cfg, now, 7, compact)
			if err != nil || len(first) != 2 || first[0].Day != testDay || first[1].Day != next {
				t.Fatalf("first run: %+v, %v", first, err)
			}
			before := readKey(t, st, schemas.ChargebackCSVKey(testDay))
			nextCSV := readKey(t, st, schemas.ChargebackCSVKey(next))
			if changed, err := compaction.ChangedDays(ctx, cfg, now, 7); err != nil || len(changed) != 0 {
				t.Fatalf("after compacting, changed days %+v, %v", changed, err)
			}

			// A call of testDay arrives two days late.
			late := schemas.Event{SchemaVersion: 1, EventID: "late-event-1", RequestID: "late-request-1",
				Timestamp: time.Date(2026, 3, 14, 23, 59, 30, 0, time.UTC), TeamID: "team-ads", CostCenter: "cc-ads",
				ModelID: "meta.llama3-70b-instruct-v1:0", Operation: "InvokeModel", Status: "success",
				InputTokens: 1000, OutputTokens: 1000, LatencyMS: 800}
			var buf bytes.Buffer
			if err := parquetio.Write(&buf, []schemas.EventRow{schemas.NewEventRow(&late)}, parquetio.Options{}); err != nil {
				t.Fatal(err)
			}
			lateKey := schemas.Partition(schemas.EventsPrefix, testDay) + "late-arrival.parquet"
			if err := st.Put(ctx, lateKey, &buf); err != nil {
				t.Fatal(err)
			}

			later := now.Add(24 * time.Hour)
			second, err := compaction.RecompactChanged(ctx, cfg, later, 7, compact)
			if err != nil || len(second) != 1 || second[0].Day != testDay {
				t.Fatalf("after the late event: %+v, %v (only %s changed)", second, err, testDay)
			}
			m := second[0].Result.Manifest
			if m.Revision != 2 || m.Previous == nil || m.Previous.Revision != 1 || !slices.Contains(m.Previous.InputsAdded, lateKey) ||
				m.Previous.InvocationsDiff != 1 {
				t.Fatalf("manifest of the recompaction: revision %d, previous %+v", m.Revision, m.Previous)
			}
			// The daily partition holds exactly the new revision's objects.
			objs, err := st.List(ctx, schemas.Partition(schemas.DailyPrefix, testDay))
			if err != nil {
				t.Fatal(err)
			}
			var listed, outputs []string
			for _, o := range objs {
				listed = append(listed, o.Key)
			}
			for _, o := range m.Outputs {
				if o.Key != schemas.ChargebackCSVKey(testDay) {
					outputs = append(outputs, o.Key)
				}
			}
			slices.Sort(outputs)
			if len(listed) == 0 || !slices.Equal(listed, outputs) {
				t.Errorf("daily objects %v, manifest outputs %v", listed, outputs)
			}
			after := readKey(t, st, schemas.ChargebackCSVKey(testDay))
			key := aggregator.ChargebackKey{"team-ads", "cc-ads", "meta.llama3-70b-instruct-v1:0"}
			b, err := aggregator.ReadChargebackCSV(before)
			if err != nil {
				t.Fatal(err)
			}
			a, err := aggregator.ReadChargebackCSV(after)
			if err != nil {
				t.Fatal(err)
			}
			if b[key].Cells["invocations"] == a[key].Cells["invocations"] || a[key].Cells["revision"] != "2" {
				t.Errorf("late call not in the chargeback: invocations %s -> %s, revision %s", b[key].Cells["invocations"], a[key].Cells["invocations"], a[key].Cells["revision"])
			}
			if got := readKey(t, st, schemas.ChargebackCSVKey(next)); !bytes.Equal(got, nextCSV) {
				t.Errorf("the unchanged day %s was rewritten", next)
			}
			if man := readKey(t, st, schemas.ManifestKey(next)); !bytes.Contains(man, []byte(`"revision": 1,`)) {
				t.Errorf("the unchanged day %s has a new revision:\n%s", next, man)
			}
			// Nothing changed since: the next scheduled run compacts nothing.
			if third, err := compaction.RecompactChanged(ctx, cfg, later.Add(time.Hour), 7, compact); err != nil || len(third) != 0 {
				t.Errorf("third run: %+v, %v", third, err)
			}
		})
	}
}

func TestChangedDaysSkipsOpenDaysAndBoundsLookback(t *testing.T) {
	ctx := context.Background()
	st, _, book := genStore(t, t.TempDir(), daygen.Config{Day: testDay, Events: 100, Files: 1, Seed: 2})
	cfg := compaction.Config{Store: st, Prices: book}
	// 01:00 on the next day: testDay is in its grace period.
	open := time.Date(2026, 3, 15, 1, 0, 0, 0, time.UTC)
	if d, err := compaction.ChangedDays(ctx, cfg, open, 3); err != nil || len(d) != 0 {
		t.Errorf("an open day was listed: %+v, %v", d, err)
	}
	if d, err := compaction.ChangedDays(ctx, cfg, open.Add(2*time.Hour), 3); err != nil || len(d) != 1 || d[0].Day != testDay {
		t.Errorf("the closed, never compacted day: %+v, %v", d, err)
	}
	// Beyond the lookback: not checked.
	if d, err := compaction.ChangedDays(ctx, cfg, open.AddDate(0, 0, 5), 3); err != nil || len(d) != 0 {
		t.Errorf("a day beyond the lookback was listed: %+v, %v", d, err)
	}
	for _, n := range []int{0, -1, 401} {
		if _, err := compaction.ChangedDays(ctx, cfg, open, n); err == nil {
			t.Errorf("lookback %d accepted", n)
		}
	}
}

// TestEnginesAlternating compacts one day in Athena, then in Go, then in
// Athena again (a day crossing the size threshold as late events arrive):
// each revision's daily objects replace the previous one's.
func TestEnginesAlternating(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, _, book := genStore(t, dir, daygen.Config{Day: testDay, Events: 1_000, Files: 1, Seed: 4})
	ath := &compaction.Athena{Client: startAthena(t, dir), Location: athenaLocation, PriceCSV: []byte(daygen.PriceCSV(testDay))}
	cfg := compaction.Config{Store: st, Day: testDay, Prices: book, Force: true}
	count := func() int {
		objs, err := st.List(ctx, schemas.Partition(schemas.DailyPrefix, testDay))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, o := range objs {
			data := readKey(t, st, o.Key)
			rows, err := parquetio.ReadDaily(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			n += len(rows)
		}
		return n
	}
	want := 0
	for i, e := range []*compaction.Engines{{Athena: ath, AboveEvents: 1}, {}, {Athena: ath, AboveEvents: 1}} {
		res, err := e.Compact(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if want == 0 {
			want = count()
		}
		if got := count(); got != want || got == 0 || res.Manifest.Revision != i+1 {
			t.Errorf("run %d (%s): %d daily rows, want %d; revision %d", i+1, res.Manifest.Engine, got, want, res.Manifest.Revision)
		}
	}
}

// racingStore writes one more events object right after the compaction's
// first listing of the day: a late event landing while Athena works.
type racingStore struct {
	*store.FileStore
	key  string
	body []byte
	done bool
}

func (r *racingStore) List(ctx context.Context, prefix string) ([]store.Object, error) {
	objs, err := r.FileStore.List(ctx, prefix)
	if err == nil && !r.done && strings.HasPrefix(r.key, prefix) && strings.HasPrefix(prefix, schemas.EventsPrefix) {
		r.done = true
		err = r.FileStore.Put(ctx, r.key, bytes.NewReader(r.body))
	}
	return objs, err
}

func TestAthenaCountsAnEventWrittenDuringTheQueries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, _, book := genStore(t, dir, daygen.Config{Day: testDay, Events: 500, Files: 1, Seed: 8})
	late := schemas.Event{SchemaVersion: 1, EventID: "race-1", RequestID: "race-request-1", Timestamp: time.Date(2026, 3, 14, 8, 0, 0, 0, time.UTC),
		TeamID: "team-voice", CostCenter: "cc-voice", ModelID: "cohere.command-r-v1:0", Operation: "InvokeModel", Status: "success",
		InputTokens: 100, OutputTokens: 100}
	var buf bytes.Buffer
	if err := parquetio.Write(&buf, []schemas.EventRow{schemas.NewEventRow(&late)}, parquetio.Options{}); err != nil {
		t.Fatal(err)
	}
	rs := &racingStore{FileStore: st, key: schemas.Partition(schemas.EventsPrefix, testDay) + "zz-during.parquet", body: buf.Bytes()}
	ath := compaction.Athena{Client: startAthena(t, dir), Location: athenaLocation, PriceCSV: []byte(daygen.PriceCSV(testDay))}
	res, err := compaction.CompactAthena(ctx, compaction.Config{Store: rs, Day: testDay, Prices: book, Force: true}, ath)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	lastIn := m.Inputs[len(m.Inputs)-1]
	if len(m.Inputs) != 2 || lastIn.Key != rs.key || lastIn.Rows != 1 || lastIn.Size != int64(len(rs.body)) {
		t.Fatalf("inputs %+v: the object written during the queries is missing", m.Inputs)
	}
	// What the manifest lists is what the store holds: nothing for the late pass to do.
	if d, err := compaction.ChangedDays(ctx, compaction.Config{Store: st}, time.Date(2026, 3, 16, 3, 0, 0, 0, time.UTC), 3); err != nil || len(d) != 0 {
		t.Errorf("changed days after the race: %+v %v", d, err)
	}
	// And the Go engine agrees on the day's bill.
	goRes, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: testDay, Prices: book, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if goRes.Manifest.Totals != m.Totals {
		t.Errorf("totals: go %+v, athena %+v", goRes.Manifest.Totals, m.Totals)
	}
}

// countingStore counts requests by kind.
type countingStore struct {
	*store.FileStore
	lists, gets int
	got         []string
}

func (c *countingStore) List(ctx context.Context, prefix string) ([]store.Object, error) {
	c.lists++
	return c.FileStore.List(ctx, prefix)
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.gets++
	c.got = append(c.got, key)
	return c.FileStore.Get(ctx, key)
}

// The scheduled check of a week of unchanged days reads no event: one
// listing and one manifest per day.
func TestChangedDaysReadsOnlyListingsAndManifests(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, _, book := genStore(t, dir, daygen.Config{Day: testDay, Events: 300, Files: 2, Seed: 1})
	for i, d := range []string{"2026-03-10", "2026-03-11", "2026-03-12", "2026-03-13"} {
		addFiles(t, st, daygen.Config{Day: d, Events: 100, Files: 1, Seed: uint64(20 + i)})
	}
	now := time.Date(2026, 3, 17, 3, 0, 0, 0, time.UTC)
	cfg := compaction.Config{Store: st, Prices: book}
	if done, err := compaction.RecompactChanged(ctx, cfg, now, 7, compaction.Compact); err != nil || len(done) != 5 {
		t.Fatalf("first pass: %d days, %v", len(done), err)
	}
	cs := &countingStore{FileStore: st}
	cfg.Store = cs
	changed, err := compaction.ChangedDays(ctx, cfg, now, 7)
	if err != nil || len(changed) != 0 {
		t.Fatalf("changed %+v, %v", changed, err)
	}
	if cs.lists != 7 || cs.gets != 7 {
		t.Errorf("%d listings and %d reads for 7 days, want 7 and 7", cs.lists, cs.gets)
	}
	for _, k := range cs.got {
		if !strings.HasSuffix(k, "/manifest.json") {
			t.Errorf("read %s", k)
		}
	}
}
