package collector_test

// The consumer end to end on the embedded stream and store: no servers.
// Usage with duplicates, poison records and two days goes in; the chargeback,
// the raw events, the window partials and the daily Parquet come out exact,
// and stay exact when the stream is delivered again.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/schemas"
)

var (
	usageDays = []string{"2026-11-25", "2026-11-26"}
	// runNow is the consumer's and compaction's clock: the day after the usage.
	runNow = func() time.Time { return time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC) }
)

// fileRun is one pipeline run over the embedded stream and store.
type fileRun struct {
	u         *usage
	streamDir string
	storeDir  string
	fs        *stream.FileStream
	st        *store.FileStore
	stats     collector.Stats
	compacted map[string]*compaction.Result
}

func putAll(t testing.TB, p stream.Producer, entries []stream.Entry) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < len(entries); i += 500 {
		if err := p.Put(ctx, entries[i:min(i+500, len(entries))]); err != nil {
			t.Fatal(err)
		}
	}
}

func consumerConfig(src stream.Source, st store.Store, batch int) collector.Config {
	return collector.Config{Source: src, Store: st, BatchRecords: batch, Now: runNow,
		// Duplicates here follow their original by up to a day of event time:
		// remember request ids long enough that windows count each once.
		Aggregator: aggregator.Config{DedupHorizon: 72 * time.Hour}}
}

func runConsumer(t testing.TB, cfg collector.Config) collector.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stats, err := mustConsumer(t, cfg).Run(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

func compactAll(t testing.TB, st store.Store, days []string) map[string]*compaction.Result {
	t.Helper()
	out := map[string]*compaction.Result{}
	for _, d := range days {
		res, err := compaction.Compact(context.Background(), compaction.Config{Store: st, Day: d, Prices: pricing.Default(), Force: true, Now: runNow})
		if err != nil {
			t.Fatal(err)
		}
		out[d] = res
	}
	return out
}

func getObject(t testing.TB, st store.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return readAll(t, rc)
}

// newFileRun streams generated usage through a 2-shard file stream into a file
// store and compacts both days.
func newFileRun(t testing.TB, requests, batch int) *fileRun {
	t.Helper()
	r := &fileRun{streamDir: filepath.Join(t.TempDir(), "stream"), storeDir: filepath.Join(t.TempDir(), "store")}
	r.u = generate(t, genOptions{requests: requests, days: usageDays, dupRate: 0.05, dupSpan: 2500, poison: true, seed: 7})
	var err error
	if r.fs, err = stream.OpenFile(r.streamDir, stream.FileOptions{Shards: 2}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.fs.Close() })
	putAll(t, r.fs, r.u.records)
	if r.st, err = store.OpenFile(r.storeDir); err != nil {
		t.Fatal(err)
	}
	r.stats = runConsumer(t, consumerConfig(r.fs, r.st, batch))
	r.compacted = compactAll(t, r.st, usageDays)
	return r
}

// snapshot returns every object of the tables the consumer writes, by key.
func snapshot(t testing.TB, st store.Store) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, prefix := range []string{schemas.EventsPrefix, schemas.WindowsPrefix} {
		objs, err := st.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			out[o.Key] = getObject(t, st, o.Key)
		}
	}
	return out
}

func TestConsumerFileStreamCountsEachRequestOnce(t *testing.T) {
	const batch = 700
	r := newFileRun(t, 6000, batch)
	u := r.u
	ctx := context.Background()

	// What the run saw.
	if r.stats.Records != len(u.records) || r.stats.Events != len(u.events) || r.stats.Quarantined != u.poison ||
		r.stats.Duplicates != len(u.events)-len(u.requests) {
		t.Errorf("stats %+v; want %d records, %d events, %d quarantined, %d duplicates",
			r.stats, len(u.records), len(u.events), u.poison, len(u.events)-len(u.requests))
	}
	t.Logf("%d records (%d requests, %d duplicates, %d poison) -> %+v", len(u.records), len(u.requests), len(u.events)-len(u.requests), u.poison, r.stats)

	// Chargeback: exact against the price file, each request once.
	want := u.chargeback()
	for _, d := range usageDays {
		got := parseChargeback(t, getObject(t, r.st, schemas.ChargebackCSVKey(d)))
		compareChargeback(t, d, got, want)
		m := r.compacted[d].Manifest
		wt := dayTotal(want, d)
		if m.Totals.Invocations != wt.invocations || m.Totals.InputTokens != wt.in || m.Totals.OutputTokens != wt.out || m.Totals.TotalCost != wt.total.String() {
			t.Errorf("manifest %s totals %+v; want %v", d, m.Totals, wt)
		}
		t.Logf("%s: %d invocations, %d input tokens, %d output tokens, total %s USD; %d rows read, %d duplicates dropped",
			d, m.Totals.Invocations, m.Totals.InputTokens, m.Totals.OutputTokens, m.Totals.TotalCost, m.RowsRead, m.DuplicatesDropped)
	}

	// Poison records are quarantined with their reasons, and their shard moved on.
	qs, err := r.st.List(ctx, schemas.QuarantinePrefix)
	if err != nil {
		t.Fatal(err)
	}
	var quarantined []aggregator.Quarantined
	for _, o := range qs {
		// Quarantine is partitioned by the day the batch's first record reached
		// the stream (the file stream stamps arrivals with the wall clock), not by
		// the consumer's clock, so a retried batch replaces its object.
		if today := time.Now().UTC().Format("2006-01-02"); !strings.HasPrefix(o.Key, schemas.Partition(schemas.QuarantinePrefix, today)) &&
			!strings.HasPrefix(o.Key, schemas.Partition(schemas.QuarantinePrefix, time.Now().UTC().Add(-time.Hour).Format("2006-01-02"))) {
			t.Errorf("quarantine object %s is not under the day its records arrived (%s)", o.Key, today)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(getObject(t, r.st, o.Key)), []byte("\n")) {
			var q aggregator.Quarantined
			if err := json.Unmarshal(line, &q); err != nil {
				t.Fatal(err)
			}
			quarantined = append(quarantined, q)
		}
	}
	if len(quarantined) != 2 {
		t.Fatalf("quarantined %d records, want 2: %+v", len(quarantined), quarantined)
	}
	slices.SortFunc(quarantined, func(a, b aggregator.Quarantined) int { return strings.Compare(a.PartitionKey, b.PartitionKey) })
	if q := quarantined[0]; q.Origin != "input.jsonl" || q.Line != 7 || !strings.Contains(q.Reason, "invalid JSON") || !strings.HasPrefix(q.Record, `{"schema_version":1`) {
		t.Errorf("malformed record quarantined as %+v", q)
	}
	if q := quarantined[1]; q.PartitionKey != "req-poison" || q.Field != "status" || !strings.Contains(q.Reason, "exploded") {
		t.Errorf("record with a bad field quarantined as %+v", q)
	}
	for _, q := range quarantined {
		shard, seq, _ := strings.Cut(q.Source, "/")
		var cp collector.Checkpoint
		if err := json.Unmarshal(getObject(t, r.st, schemas.CheckpointPrefix+"aggregator/"+shard+".json"), &cp); err != nil {
			t.Fatal(err)
		}
		if stream.CompareSeq(seq, cp.Sequence) >= 0 {
			t.Errorf("poison record %s is at or past its shard's checkpoint %s: the shard did not move on", q.Source, cp.Sequence)
		}
	}

	// Raw events: one row per event received, duplicates included, under the
	// day of their event time, equal to what was sent.
	sent := map[string]schemas.Event{}
	for _, e := range u.events {
		sent[e.EventID] = e
	}
	rows := 0
	for _, p := range parquetFiles(t, r.storeDir, "events") {
		got, err := parquetio.ReadFile[schemas.EventRow](p)
		if err != nil {
			t.Fatal(err)
		}
		day := strings.TrimPrefix(filepath.Base(filepath.Dir(p)), "dt=")
		for i := range got {
			e := got[i].Event()
			if w, ok := sent[e.EventID]; !ok || w != e {
				t.Fatalf("%s: row %+v; sent %+v", p, e, w)
			}
			if e.Day() != day {
				t.Errorf("%s holds an event of %s", p, e.Day())
			}
			delete(sent, e.EventID)
			rows++
		}
	}
	if len(sent) != 0 || rows != len(u.events) {
		t.Errorf("events table: %d rows, %d events missing; want %d rows", rows, len(sent), len(u.events))
	}

	// Windows: partials sum to each request once.
	var wrows []schemas.WindowRow
	for _, p := range parquetFiles(t, r.storeDir, "usage_windows") {
		got, err := parquetio.ReadFile[schemas.WindowRow](p)
		if err != nil {
			t.Fatal(err)
		}
		day := strings.TrimPrefix(filepath.Base(filepath.Dir(p)), "dt=")
		for _, w := range got {
			if d := time.UnixMilli(w.WindowStart).UTC().Format(schemas.DayLayout); d != day {
				t.Errorf("%s holds a window of %s", p, d)
			}
		}
		wrows = append(wrows, got...)
	}
	compareWindows(t, sumWindows(wrows), u.windows(5*time.Minute))

	// Daily: one priced row per request id, values as sent.
	requests := map[string]schemas.Event{}
	for _, e := range u.requests {
		requests[e.RequestID] = e
	}
	dailyFiles := parquetFiles(t, r.storeDir, "daily")
	if len(dailyFiles) != len(usageDays) {
		t.Errorf("daily files %v", dailyFiles)
	}
	drows := 0
	for _, p := range dailyFiles {
		got, err := parquetio.ReadFile[schemas.DailyRow](p)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range got {
			w, ok := requests[d.RequestID]
			if !ok {
				t.Fatalf("%s: request %s twice or never sent", p, d.RequestID)
			}
			delete(requests, d.RequestID)
			drows++
			if d.TeamID != w.TeamID || d.ModelID != w.ModelID || d.InputTokens != w.InputTokens || d.OutputTokens != w.OutputTokens ||
				d.Status != w.Status || d.Timestamp != w.Timestamp.UnixMilli() || d.CacheReadInputTokens != w.CacheReadInputTokens {
				t.Errorf("%s: daily row %+v; sent %+v", p, d, w)
			}
			in, out, cr, cw := u.cost(&w)
			if d.InputCost != schemas.ScaledMoney(in) || d.OutputCost != schemas.ScaledMoney(out) ||
				d.TotalCost != schemas.ScaledMoney(in.Add(out).Add(cr).Add(cw)) {
				t.Errorf("%s: %s costs in=%d out=%d total=%d; want %s %s %s", p, d.RequestID, d.InputCost, d.OutputCost, d.TotalCost, in, out, in.Add(out).Add(cr).Add(cw))
			}
		}
	}
	if len(requests) != 0 || drows != len(u.requests) {
		t.Errorf("daily table: %d rows, %d requests missing", drows, len(requests))
	}

	// Redelivery of everything: with the checkpoints gone the consumer reads
	// both shards again; the same batches replace the same objects byte for
	// byte, and the compaction finds its inputs unchanged.
	before := snapshot(t, r.st)
	csvBefore := map[string][]byte{}
	for _, d := range usageDays {
		csvBefore[d] = getObject(t, r.st, schemas.ChargebackCSVKey(d))
	}
	cps, err := filepath.Glob(filepath.Join(r.storeDir, "_checkpoints", "aggregator", "*.json"))
	if err != nil || len(cps) != 2 {
		t.Fatalf("checkpoints %v, %v", cps, err)
	}
	for _, p := range cps {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	again := runConsumer(t, consumerConfig(r.fs, r.st, batch))
	if again.Records != len(u.records) {
		t.Errorf("second run read %d records, want %d", again.Records, len(u.records))
	}
	after := snapshot(t, r.st)
	if !maps.EqualFunc(before, after, bytes.Equal) {
		t.Errorf("a full redelivery changed the events and window objects (%d before, %d after)", len(before), len(after))
	}
	for d, res := range compactAll(t, r.st, usageDays) {
		if !res.Unchanged || res.Manifest.Revision != 1 {
			t.Errorf("%s after redelivery: unchanged %v, revision %d", d, res.Unchanged, res.Manifest.Revision)
		}
		if !bytes.Equal(getObject(t, r.st, schemas.ChargebackCSVKey(d)), csvBefore[d]) {
			t.Errorf("%s: chargeback CSV changed after a full redelivery", d)
		}
	}

	// Redelivery from the middle of a batch: shard 0's checkpoint goes back to a
	// record that is not a batch boundary, so new batches overlap old objects.
	// The raw events then hold some events twice; the chargeback does not move.
	it, err := r.fs.Open(ctx, stream.ShardName(0), stream.Start{Kind: stream.TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := it.Next(ctx, batch*2+batch/2)
	it.Close()
	if err != nil || len(recs) != batch*2+batch/2 {
		t.Fatalf("reading shard 0: %d records, %v", len(recs), err)
	}
	old := collector.Checkpoint{ShardID: stream.ShardName(0), Sequence: recs[len(recs)-1].SequenceNumber}
	data, _ := json.Marshal(old)
	if err := r.st.Put(ctx, schemas.CheckpointPrefix+"aggregator/"+old.ShardID+".json", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	third := runConsumer(t, consumerConfig(r.fs, r.st, batch))
	for _, d := range usageDays {
		compareChargeback(t, d, parseChargeback(t, getObject(t, r.st, schemas.ChargebackCSVKey(d))), want)
	}
	res := compactAll(t, r.st, usageDays)
	redelivered := 0
	for _, d := range usageDays {
		compareChargeback(t, d, parseChargeback(t, getObject(t, r.st, schemas.ChargebackCSVKey(d))), want)
		m := res[d].Manifest
		redelivered += m.RowsRead - r.compacted[d].Manifest.RowsRead
		if m.RequestIDs != r.compacted[d].Manifest.RequestIDs || m.Totals != r.compacted[d].Manifest.Totals {
			t.Errorf("%s after a partial redelivery: %d request ids, totals %+v; before %d, %+v", d, m.RequestIDs, m.Totals,
				r.compacted[d].Manifest.RequestIDs, r.compacted[d].Manifest.Totals)
		}
	}
	var wsum int64
	for _, w := range sumWindows(readWindows(t, r.storeDir)) {
		wsum += w.requests
	}
	t.Logf("partial redelivery: %d records read again, %d raw rows added, daily totals unchanged; usage_windows requests %d for %d requests",
		third.Records, redelivered, wsum, len(u.requests))
}

func readWindows(t testing.TB, dir string) []schemas.WindowRow {
	t.Helper()
	var out []schemas.WindowRow
	for _, p := range parquetFiles(t, dir, "usage_windows") {
		got, err := parquetio.ReadFile[schemas.WindowRow](p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got...)
	}
	return out
}

// checkpointFailStore is the file store, except that the n-th checkpoint
// write that completes a batch fails: a consumer that dies after a batch's
// outputs are durable and before its checkpoint moves.
type checkpointFailStore struct {
	store.Store
	failAt, seen int
}

func (s *checkpointFailStore) Put(ctx context.Context, key string, body io.Reader) error {
	if strings.HasPrefix(key, schemas.CheckpointPrefix) {
		data := readAll(nil, body)
		var cp collector.Checkpoint
		if err := json.Unmarshal(data, &cp); err == nil && cp.Pending == "" && cp.Sequence != "" {
			if s.seen++; s.seen == s.failAt {
				return errors.New("checkpoint write lost")
			}
		}
		body = bytes.NewReader(data)
	}
	return s.Store.Put(ctx, key, body)
}

// TestConsumerRebuildsInterruptedBatch stops a consumer after a batch's outputs
// are written and before its checkpoint, then resumes with reads split
// differently (as Kinesis's GetRecords splits them): the interrupted batch is
// rebuilt under the same names, so no record lands in two objects.
func TestConsumerRebuildsInterruptedBatch(t *testing.T) {
	// No duplicates here: a duplicate whose original was checkpointed before the
	// restart counts again in usage_windows (the new process has not seen it;
	// the daily compaction drops it). This test is about the batch itself.
	u := generate(t, genOptions{requests: 3000, days: usageDays[:1], seed: 11})
	fs, err := stream.OpenFile(filepath.Join(t.TempDir(), "stream"), stream.FileOptions{Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	putAll(t, fs, u.records)
	dir := filepath.Join(t.TempDir(), "store")
	st, err := store.OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	failing := &checkpointFailStore{Store: st, failAt: 3}
	if _, err := mustConsumer(t, consumerConfig(fs, failing, 400)).Run(ctx, true); err == nil {
		t.Fatal("the consumer went on after a lost checkpoint write")
	}
	var pending int
	cps, _ := filepath.Glob(filepath.Join(dir, "_checkpoints", "aggregator", "*.json"))
	for _, p := range cps {
		data, _ := os.ReadFile(p)
		var cp collector.Checkpoint
		json.Unmarshal(data, &cp)
		if cp.Pending != "" {
			pending++
		}
	}
	if pending != 1 {
		t.Fatalf("%d checkpoints name a pending batch, want 1", pending)
	}
	// Resume with smaller reads: the first batch still ends where the lost one did.
	runConsumer(t, consumerConfig(fs, st, 150))
	events := 0
	for _, p := range parquetFiles(t, dir, "events") {
		rows, err := parquetio.ReadFile[schemas.EventRow](p)
		if err != nil {
			t.Fatal(err)
		}
		events += len(rows)
	}
	if events != len(u.events) {
		t.Errorf("events table holds %d rows for %d events sent: a batch was written twice under two names", events, len(u.events))
	}
	compareWindows(t, sumWindows(readWindows(t, dir)), u.windows(5*time.Minute))
	res := compactAll(t, st, usageDays[:1])
	compareChargeback(t, usageDays[0], parseChargeback(t, getObject(t, st, schemas.ChargebackCSVKey(usageDays[0]))), u.chargeback())
	if res[usageDays[0]].Manifest.RowsRead != len(u.events) {
		t.Errorf("compaction read %d rows, want %d", res[usageDays[0]].Manifest.RowsRead, len(u.events))
	}
}

func mustConsumer(t testing.TB, cfg collector.Config) *collector.Consumer {
	t.Helper()
	c, err := collector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
