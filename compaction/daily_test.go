package compaction_test

// These tests compact generated days through the embedded file store (no
// servers). The generator computes the true chargeback with integers and its
// own price table, so the numbers below are checked against an independent
// computation, not against the code under test.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/parquetcheck"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

const testDay = "2026-03-14"

// genStore writes a generated day into a new file store and returns it with
// the truth and the price book.
func genStore(t testing.TB, dir string, cfg daygen.Config) (*store.FileStore, *daygen.Truth, *pricing.Book) {
	t.Helper()
	st, err := store.OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	truth := addFiles(t, st, cfg)
	book, err := pricing.Parse(strings.NewReader(daygen.PriceCSV(cfg.Day)), "gen-prices.csv")
	if err != nil {
		t.Fatal(err)
	}
	return st, truth, book
}

func addFiles(t testing.TB, st *store.FileStore, cfg daygen.Config) *daygen.Truth {
	t.Helper()
	dir := filepath.Join(st.Dir(), "events", "dt="+cfg.Day)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	truth, err := daygen.Generate(cfg, func(name string) (io.WriteCloser, error) { return os.Create(filepath.Join(dir, name)) })
	if err != nil {
		t.Fatal(err)
	}
	return truth
}

func readKey(t testing.TB, st store.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkTruth compares a chargeback CSV (exact costs) with the truth, row for row.
func checkTruth(t *testing.T, csvData []byte, truth *daygen.Truth, revision int) {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(csvData)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := truth.Sorted()
	if len(recs)-1 != len(want) {
		t.Fatalf("CSV has %d rows, truth %d", len(recs)-1, len(want))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for i, w := range want {
		r := recs[i+1]
		get := func(name string) string { return r[col[name]] }
		num := func(name string) int64 {
			v, err := strconv.ParseInt(get(name), 10, 64)
			if err != nil {
				t.Fatalf("row %d %s: %v", i, name, err)
			}
			return v
		}
		money := func(name string, want decimal.Decimal) {
			d, err := decimal.NewFromString(get(name))
			if err != nil || !d.Equal(want) {
				t.Errorf("%s/%s %s = %s, want %s", w.TeamID, w.ModelID, name, get(name), want)
			}
		}
		if get("day") != testDay || get("team_id") != w.TeamID || get("cost_center") != w.CostCenter || get("model_id") != w.ModelID {
			t.Fatalf("row %d is %v, want %s %s %s", i, r, w.TeamID, w.CostCenter, w.ModelID)
		}
		for _, c := range []struct {
			name string
			v    int64
		}{{"invocations", w.Invocations}, {"input_tokens", w.InputTokens}, {"output_tokens", w.OutputTokens},
			{"cache_read_input_tokens", w.CacheRead}, {"cache_write_input_tokens", w.CacheWrite}, {"image_count", w.Images},
			{"denied", w.Denied}, {"throttled", w.Throttled}, {"errors", w.Errors}, {"revision", int64(revision)}} {
			if got := num(c.name); got != c.v {
				t.Errorf("%s/%s %s = %d, want %d", w.TeamID, w.ModelID, c.name, got, c.v)
			}
		}
		money("input_cost", decimal.New(w.InputCost, -8))
		money("output_cost", decimal.New(w.OutputCost, -8))
		money("cache_read_cost", decimal.New(w.CacheReadCost, -8))
		money("cache_write_cost", decimal.New(w.CacheWriteCost, -8))
		money("image_cost", decimal.New(w.ImageCost, -8))
		money("total_cost", w.TotalCost())
	}
}

func readManifest(t *testing.T, st store.Store, key string) schemas.Manifest {
	t.Helper()
	var m schemas.Manifest
	if err := json.Unmarshal(readKey(t, st, key), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGeneratedDayKnownTotals(t *testing.T) {
	ctx := context.Background()
	cfg := daygen.Config{Day: testDay, Events: 60_000, Files: 6, OtherDay: 9, Seed: 1}
	st, truth, book := genStore(t, t.TempDir(), cfg)
	// Two quarantine objects of the day (arrival day), five records in all.
	st.Put(ctx, "quarantine/dt="+testDay+"/a.jsonl", strings.NewReader("{\"reason\":\"x\"}\n{\"reason\":\"y\"}\n"))
	st.Put(ctx, "quarantine/dt="+testDay+"/b.jsonl", strings.NewReader("1\n2\n3"))

	res, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: testDay, Prices: book, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	tot := truth.Total()
	t.Logf("%d rows read, %d duplicates, %d other-day, %d requests, %d invocations, total cost %s (truth %s)",
		m.RowsRead, m.DuplicatesDropped, m.OtherDayRows, m.RequestIDs, m.Totals.Invocations, m.Totals.TotalCost, tot.TotalCost())
	if res.Buckets != 1 {
		t.Errorf("a small day used %d buckets", res.Buckets)
	}
	if m.RowsRead != truth.RowsRead || m.DuplicatesDropped != truth.Duplicates || m.OtherDayRows != truth.OtherDay || m.RequestIDs != truth.Requests {
		t.Errorf("manifest counts %d/%d/%d/%d, truth %d/%d/%d/%d", m.RowsRead, m.DuplicatesDropped, m.OtherDayRows, m.RequestIDs,
			truth.RowsRead, truth.Duplicates, truth.OtherDay, truth.Requests)
	}
	if truth.Duplicates < 500 || truth.OtherDay != 9 {
		t.Fatalf("generator made %d duplicates, %d other-day rows", truth.Duplicates, truth.OtherDay)
	}
	if m.Totals.Invocations != tot.Invocations || m.Totals.InputTokens != tot.InputTokens || m.Totals.OutputTokens != tot.OutputTokens ||
		m.Totals.CacheRead != tot.CacheRead || m.Totals.Images != tot.Images || m.Totals.TotalCost != tot.TotalCost().String() {
		t.Errorf("manifest totals %+v, truth %+v total %s", m.Totals, tot, tot.TotalCost())
	}
	if m.QuarantineObjects != 2 || m.QuarantineRecords != 5 {
		t.Errorf("quarantine %d objects %d records, want 2 and 5", m.QuarantineObjects, m.QuarantineRecords)
	}
	if len(m.Inputs) != 6 || m.Inputs[0].SHA256 == "" || m.Inputs[0].Size == 0 || m.PriceSHA256 != book.SHA256 {
		t.Errorf("inputs %+v price %s", m.Inputs, m.PriceSHA256)
	}
	checkTruth(t, readKey(t, st, schemas.ChargebackCSVKey(testDay)), truth, 1)

	// The daily file: one row per request id, sorted, readable, with a valid page index.
	dailyPath := filepath.Join(st.Dir(), schemas.DailyKey(testDay))
	if err := parquetcheck.CheckFile(dailyPath); err != nil {
		t.Fatal(err)
	}
	rows, err := parquetio.ReadFile[schemas.DailyRow](dailyPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != truth.Requests {
		t.Fatalf("daily file has %d rows, want %d", len(rows), truth.Requests)
	}
	var sum int64
	for i := range rows {
		sum += rows[i].TotalCost
	}
	// Each row's cost is exact at DECIMAL(18,10) for these prices.
	if got := decimal.New(sum, -schemas.MoneyScale); !got.Equal(tot.TotalCost()) {
		t.Errorf("daily file total_cost sums to %s, want %s", got, tot.TotalCost())
	}
}

// TestBucketsEqualMemory compacts one day in memory and in 7 spilled buckets:
// every output is byte for byte the same.
func TestBucketsEqualMemory(t *testing.T) {
	ctx := context.Background()
	cfg := daygen.Config{Day: testDay, Events: 40_000, Files: 4, OtherDay: 3, Seed: 2}
	dirA, dirB := t.TempDir(), t.TempDir()
	stA, truth, book := genStore(t, dirA, cfg)
	stB, _, _ := genStore(t, dirB, cfg)
	a, err := compaction.Compact(ctx, compaction.Config{Store: stA, Day: testDay, Prices: book, Force: true, Buckets: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := compaction.Compact(ctx, compaction.Config{Store: stB, Day: testDay, Prices: book, Force: true, Buckets: 7, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if a.Buckets != 1 || b.Buckets != 7 {
		t.Fatalf("buckets %d and %d", a.Buckets, b.Buckets)
	}
	for _, key := range []string{schemas.ChargebackCSVKey(testDay), schemas.ManifestKey(testDay), schemas.DailyKey(testDay)} {
		if !bytes.Equal(readKey(t, stA, key), readKey(t, stB, key)) {
			t.Errorf("%s differs between memory and buckets", key)
		}
	}
	checkTruth(t, readKey(t, stB, schemas.ChargebackCSVKey(testDay)), truth, 1)
	if err := parquetcheck.CheckFile(filepath.Join(dirB, schemas.DailyKey(testDay))); err != nil {
		t.Fatal(err)
	}
	// Automatic choice: a tiny memory budget spills.
	c, err := compaction.Compact(ctx, compaction.Config{Store: stB, Day: testDay, Prices: book, Force: true,
		MemoryInputBytes: 1, BucketInputBytes: 300 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if c.Buckets < 2 || !c.Unchanged || c.Manifest.Revision != 1 {
		t.Fatalf("automatic choice: %d buckets, unchanged %v, revision %d", c.Buckets, c.Unchanged, c.Manifest.Revision)
	}
	if !bytes.Equal(readKey(t, stA, schemas.DailyKey(testDay)), readKey(t, stB, schemas.DailyKey(testDay))) {
		t.Error("automatic buckets changed the daily file")
	}
}

// outputs returns every object under chargeback/ and daily/ of the day.
func outputs(t *testing.T, st store.Store) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range []string{schemas.Partition(schemas.ChargebackPrefix, testDay), schemas.Partition(schemas.DailyPrefix, testDay)} {
		objs, err := st.List(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			out[o.Key] = readKey(t, st, o.Key)
		}
	}
	return out
}

func TestRerunIsByteIdentical(t *testing.T) {
	ctx := context.Background()
	st, _, book := genStore(t, t.TempDir(), daygen.Config{Day: testDay, Events: 5_000, Files: 2, Seed: 3})
	cfg := compaction.Config{Store: st, Day: testDay, Prices: book, Scale: compaction.Places(6), Force: true}
	if _, err := compaction.Compact(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	first := outputs(t, st)
	// A later wall clock changes nothing.
	cfg.Now = func() time.Time { return time.Now().Add(72 * time.Hour) }
	res, err := compaction.Compact(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Unchanged || res.Manifest.Revision != 1 {
		t.Fatalf("rerun: unchanged %v revision %d", res.Unchanged, res.Manifest.Revision)
	}
	second := outputs(t, st)
	if len(first) != 5 || len(second) != len(first) {
		t.Fatalf("outputs %d then %d objects: %v", len(first), len(second), keys(second))
	}
	for k, v := range first {
		if !bytes.Equal(v, second[k]) {
			t.Errorf("%s changed on rerun", k)
		}
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestLateEventsMakeRevision2(t *testing.T) {
	ctx := context.Background()
	st, truth, book := genStore(t, t.TempDir(), daygen.Config{Day: testDay, Events: 20_000, Files: 3, Seed: 4})
	cfg := compaction.Config{Store: st, Day: testDay, Prices: book, Force: true}
	r1, err := compaction.Compact(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rev1CSV := readKey(t, st, schemas.ChargebackCSVKey(testDay))
	rev1Manifest := readKey(t, st, schemas.ManifestKey(testDay))

	late := addFiles(t, st, daygen.Config{Day: testDay, Events: 1_500, Files: 1, Seed: 5, FirstFile: 3})
	truth.Merge(late)
	r2, err := compaction.Compact(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := r2.Manifest
	if m.Revision != 2 || r2.Unchanged || m.Previous == nil {
		t.Fatalf("after late events: revision %d unchanged %v previous %v", m.Revision, r2.Unchanged, m.Previous)
	}
	checkTruth(t, readKey(t, st, schemas.ChargebackCSVKey(testDay)), truth, 2)
	p := m.Previous
	lateKey := "events/dt=" + testDay + "/" + daygen.FileName(3)
	if p.Revision != 1 || len(p.InputsAdded) != 1 || p.InputsAdded[0] != lateKey || len(p.InputsRemoved) != 0 {
		t.Errorf("change %+v", p)
	}
	if p.RowsReadDiff != late.RowsRead || p.RequestIDsDiff != late.Requests || p.DuplicatesDiff != late.Duplicates {
		t.Errorf("diffs rows %d requests %d duplicates %d, want %d %d %d", p.RowsReadDiff, p.RequestIDsDiff, p.DuplicatesDiff,
			late.RowsRead, late.Requests, late.Duplicates)
	}
	// The money that moved, group by group, adds up to the change of the day's total.
	lt := late.Total()
	var moved decimal.Decimal
	var inv int64
	for _, g := range p.Groups {
		d, _ := decimal.NewFromString(g.TotalCostDiff)
		moved = moved.Add(d)
		inv += g.InvocationsAfter - g.InvocationsBefore
	}
	if !moved.Equal(lt.TotalCost()) || p.TotalCostDiff != lt.TotalCost().String() || inv != lt.Invocations || p.InvocationsDiff != lt.Invocations {
		t.Errorf("moved %s (diff %s) and %d invocations; late events hold %s and %d", moved, p.TotalCostDiff, inv, lt.TotalCost(), lt.Invocations)
	}
	t.Logf("revision 2: %d inputs added, %d requests added, %s USD moved across %d groups", len(p.InputsAdded), p.RequestIDsDiff, p.TotalCostDiff, len(p.Groups))
	// Revision 1 stays readable under revisions/r1/.
	if !bytes.Equal(readKey(t, st, schemas.RevisionKey(testDay, 1, "chargeback-"+testDay+".csv")), rev1CSV) ||
		!bytes.Equal(readKey(t, st, schemas.RevisionKey(testDay, 1, "manifest.json")), rev1Manifest) {
		t.Error("revision 1 was not kept as it was")
	}
	if r1.Manifest.Totals.TotalCost == m.Totals.TotalCost {
		t.Error("late events did not change the total")
	}
	if err := parquetcheck.CheckFile(filepath.Join(st.Dir(), schemas.DailyKey(testDay))); err != nil {
		t.Fatal(err)
	}
}

// The kill test re-executes this test binary as the compactor. The child's
// store pauses inside the Put of one output, halfway through its body, and
// the parent kills it there with SIGKILL.
const (
	childEnv  = "METER_DAILY_KILL_CHILD"
	pauseEnv  = "METER_DAILY_KILL_AT"
	markerEnv = "METER_DAILY_KILL_MARKER"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	os.Exit(m.Run())
}

type pausingStore struct {
	*store.FileStore
	at     int
	n      int
	marker string
}

func (s *pausingStore) Put(ctx context.Context, key string, body io.Reader) error {
	s.n++
	if s.n != s.at {
		return s.FileStore.Put(ctx, key, body)
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		pw.Write(data[:len(data)/2])
		os.WriteFile(s.marker, []byte(key), 0o644)
		select {} // killed here, mid-object
	}()
	return s.FileStore.Put(ctx, key, pr)
}

func runChild(dir string) int {
	fs, err := store.OpenFile(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	at, _ := strconv.Atoi(os.Getenv(pauseEnv))
	book, _ := pricing.Parse(strings.NewReader(daygen.PriceCSV(testDay)), "gen-prices.csv")
	st := &pausingStore{FileStore: fs, at: at, marker: os.Getenv(markerEnv)}
	if _, err := compaction.Compact(context.Background(), compaction.Config{Store: st, Day: testDay, Prices: book, Force: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestKillMidRunLeavesLastRevision(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	st, truth, book := genStore(t, base, daygen.Config{Day: testDay, Events: 8_000, Files: 2, Seed: 6})
	if _, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: testDay, Prices: book, Force: true}); err != nil {
		t.Fatal(err)
	}
	truth.Merge(addFiles(t, st, daygen.Config{Day: testDay, Events: 700, Files: 1, Seed: 7, FirstFile: 2}))
	rev1Manifest := readKey(t, st, schemas.ManifestKey(testDay))

	// Revision 2 written without interruption: what every killed run must end at.
	refDir := t.TempDir()
	copyDir(t, base, refDir)
	ref, _ := store.OpenFile(refDir)
	if _, err := compaction.Compact(ctx, compaction.Config{Store: ref, Day: testDay, Prices: book, Force: true}); err != nil {
		t.Fatal(err)
	}
	want := outputs(t, ref)

	for at := 1; at <= 5; at++ { // every output Put of revision 2
		dir := t.TempDir()
		copyDir(t, base, dir)
		marker := filepath.Join(t.TempDir(), "marker")
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+dir, pauseEnv+"="+strconv.Itoa(at), markerEnv+"="+marker)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		var key []byte
		for time.Now().Before(deadline) {
			if key, _ = os.ReadFile(marker); len(key) > 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(key) == 0 {
			cmd.Process.Kill()
			t.Fatalf("put %d: the child never reached it", at)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		st, _ := store.OpenFile(dir)
		// The committed manifest is still revision 1, whole.
		if got := readKey(t, st, schemas.ManifestKey(testDay)); !bytes.Equal(got, rev1Manifest) {
			t.Errorf("killed in the put of %s: manifest.json is not revision 1's", key)
		}
		// Every visible CSV is whole and names one revision.
		for k, v := range outputs(t, st) {
			if strings.HasSuffix(k, ".csv") {
				recs, err := csv.NewReader(bytes.NewReader(v)).ReadAll()
				if err != nil || len(recs) < 2 {
					t.Errorf("killed in the put of %s: %s unreadable (%v)", key, k, err)
					continue
				}
				rev := recs[1][len(recs[1])-1]
				for _, r := range recs[1:] {
					if r[len(r)-1] != rev {
						t.Errorf("%s mixes revisions", k)
					}
				}
			}
			if strings.HasSuffix(k, ".json") && !json.Valid(v) {
				t.Errorf("killed in the put of %s: %s is not valid JSON", key, k)
			}
		}
		// The next run completes revision 2 exactly as an uninterrupted one.
		res, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: testDay, Prices: book, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Manifest.Revision != 2 {
			t.Errorf("after the kill in %s: revision %d", key, res.Manifest.Revision)
		}
		got := outputs(t, st)
		for k, v := range want {
			if !bytes.Equal(v, got[k]) {
				t.Errorf("after the kill in %s: %s differs from the uninterrupted run", key, k)
			}
		}
		if len(got) != len(want) {
			t.Errorf("after the kill in %s: %d objects, want %d: %v", key, len(got), len(want), keys(got))
		}
		t.Logf("killed with SIGKILL halfway through %s: revision 1 stayed committed; the rerun wrote revision 2", key)
	}
	checkTruth(t, want[schemas.ChargebackCSVKey(testDay)], truth, 2)
}
