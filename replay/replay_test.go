package replay_test

// Replay of a day on the embedded stream and store (no servers), checked
// against the live path (consumer, then daily compaction) over the same
// records; over a scripted Kinesis client that answers empty pages while still
// behind the shard's tip; and once over Kinesis (kinesalite on 127.0.0.1, see
// internal/testenv).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/replay"
	"github.com/meter-dev/meter/schemas"
)

const (
	replayDay    = "2026-11-25"
	haiku        = "anthropic.claude-3-haiku-20240307-v1:0"    // 0.00025 in, 0.00125 out per 1k
	sonnet35     = "anthropic.claude-3-5-sonnet-20240620-v1:0" // 0.003 in, 0.015 out per 1k
	replayNeighb = "2026-11-24"
	replayNext   = "2026-11-26"
)

var replayNow = func() time.Time { return time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC) }

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// sent is one record and when the stream accepted it.
type sent struct {
	arrival time.Time
	entry   stream.Entry
}

func usageRecord(arrival time.Time, req, team, cc, model, status string, ts time.Time, in, out int64) sent {
	e := schemas.Event{SchemaVersion: 1, EventID: "ev-" + req + "-" + arrival.Format("150405.000"), RequestID: req, Timestamp: ts,
		TeamID: team, CostCenter: cc, ModelID: model, Operation: "InvokeModel", Status: status,
		InputTokens: in, OutputTokens: out, LatencyMS: 120}
	data, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return sent{arrival, stream.Entry{PartitionKey: req, Data: data}}
}

// dayUsage is usage from the evening before replayDay to the morning after,
// with late arrivals, redeliveries and one malformed record.
func dayUsage(n int) []sent {
	teams := [][2]string{{"team-a", "cc-100"}, {"team-b", "cc-200"}, {"team-c", ""}}
	models := []string{haiku, sonnet35}
	first := at("2026-11-24T21:00:00Z")
	var out []sent
	for i := 0; i < n; i++ {
		ts := first.Add(time.Duration(i) * 30 * time.Hour / time.Duration(n))
		arrival := ts.Add(time.Duration(i%5) * time.Second)
		if i%9 == 4 {
			arrival = ts.Add(40 * time.Minute) // late, within the margin
		}
		status := schemas.StatusSuccess
		if i%11 == 5 {
			status = schemas.StatusThrottled
		}
		tc := teams[i%3]
		req := fmt.Sprintf("req-%05d", i)
		out = append(out, usageRecord(arrival, req, tc[0], tc[1], models[i%2], status, ts, int64(100+i%37*10), int64(50+i%13*7)))
		if i%17 == 3 {
			// Redelivered with a new event id.
			out = append(out, usageRecord(arrival.Add(2*time.Second), req, tc[0], tc[1], models[i%2], status, ts, int64(100+i%37*10), int64(50+i%13*7)))
		}
	}
	out = append(out, sent{at("2026-11-25T12:00:00Z"), stream.Entry{PartitionKey: "malformed/usage.jsonl:7", Data: []byte(`{"schema_version": 1, "request_id": `)}})
	sort.SliceStable(out, func(i, j int) bool { return out[i].arrival.Before(out[j].arrival) })
	return out
}

// newStream is a 2-shard file stream holding recs, stamped with their arrival times.
func newStream(t *testing.T, recs []sent) *stream.FileStream {
	t.Helper()
	var clock time.Time
	fs, err := stream.OpenFile(filepath.Join(t.TempDir(), "stream"), stream.FileOptions{Shards: 2, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	for i := 0; i < len(recs); {
		// One Put per arrival second.
		j := i
		var batch []stream.Entry
		for ; j < len(recs) && recs[j].arrival.Truncate(time.Second).Equal(recs[i].arrival.Truncate(time.Second)); j++ {
			batch = append(batch, recs[j].entry)
		}
		clock = recs[j-1].arrival
		if err := fs.Put(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		i = j
	}
	return fs
}

func newStore(t *testing.T) *store.FileStore {
	t.Helper()
	st, err := store.OpenFile(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// livePath runs the consumer over the whole stream and compacts the three days.
func livePath(t *testing.T, src stream.Source, st store.Store) {
	t.Helper()
	runConsumer(t, collector.Config{Source: src, Store: st, BatchRecords: 97, Now: replayNow,
		Aggregator: aggregator.Config{DedupHorizon: 2 * time.Hour}})
	for _, d := range []string{replayNeighb, replayDay, replayNext} {
		if _, err := compaction.Compact(context.Background(), compaction.Config{Store: st, Day: d, Prices: pricing.Default(), Force: true, Now: replayNow}); err != nil {
			t.Fatal(err)
		}
	}
}

func runReplay(t *testing.T, cfg replay.Config) *replay.Result {
	t.Helper()
	if cfg.Day == "" {
		cfg.Day = replayDay
	}
	if cfg.Prices == nil {
		cfg.Prices = pricing.Default()
	}
	if cfg.Now == nil {
		cfg.Now = replayNow
	}
	cfg.Poll = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := replay.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// objects returns every object under prefix, by key.
func objects(t *testing.T, st store.Store, prefix string) map[string]string {
	t.Helper()
	objs, err := st.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, o := range objs {
		out[o.Key] = string(getObject(t, st, o.Key))
	}
	return out
}

func sameObjects(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: %s is gone", what, k)
		} else if g != v {
			t.Errorf("%s: %s changed", what, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %s appeared", what, k)
		}
	}
}

// expected counts what a replay of replayDay must read out of recs with a margin.
type expected struct{ records, dayEvents, otherDays, quarantined int }

func expect(recs []sent, margin time.Duration) expected {
	from := at(replayDay + "T00:00:00Z").Add(-margin)
	until := at(replayDay + "T00:00:00Z").Add(24*time.Hour + margin)
	var x expected
	for _, r := range recs {
		if r.arrival.Before(from) || r.arrival.After(until) {
			continue
		}
		x.records++
		e, err := schemas.ParseEvent(r.entry.Data)
		switch {
		case err != nil:
			x.quarantined++
		case e.Day() == replayDay:
			x.dayEvents++
		default:
			x.otherDays++
		}
	}
	return x
}

func TestReplayEqualsLivePath(t *testing.T) {
	recs := dayUsage(500)
	src := newStream(t, recs)
	st := newStore(t)
	livePath(t, src, st)
	before := objects(t, st, "")

	res := runReplay(t, replay.Config{Source: src, Store: st, KeepStaging: true, Run: "same", BatchRecords: 60})
	staging := store.WithPrefix(st, res.Staging)

	want := expect(recs, replay.DefaultMargin)
	if res.Records != want.records || res.DayEvents != want.dayEvents || res.OtherDays != want.otherDays || res.Quarantined != want.quarantined {
		t.Errorf("read %d records: %d events of the day, %d of others, %d quarantined; want %+v", res.Records, res.DayEvents, res.OtherDays, res.Quarantined, want)
	}
	if want.otherDays == 0 || want.quarantined != 1 {
		t.Fatalf("the usage does not exercise the margin: %+v", want)
	}
	if res.Shards != 2 {
		t.Errorf("%d shards read, want 2", res.Shards)
	}

	// The chargeback and the compacted daily Parquet are the live path's, byte for byte.
	liveCSV := getObject(t, st, schemas.ChargebackCSVKey(replayDay))
	if got := getObject(t, staging, schemas.ChargebackCSVKey(replayDay)); !bytes.Equal(got, liveCSV) {
		t.Errorf("replayed chargeback differs from the live one:\n%s\nlive:\n%s", got, liveCSV)
	}
	liveDaily := objects(t, st, schemas.Partition(schemas.DailyPrefix, replayDay))
	if len(liveDaily) == 0 {
		t.Fatal("the live path wrote no daily Parquet")
	}
	sameObjects(t, "staged daily Parquet", objects(t, staging, schemas.Partition(schemas.DailyPrefix, replayDay)), liveDaily)
	if !res.Diff.Same() || res.Diff.RowsBefore == 0 || res.Diff.RowsAfter != res.Diff.RowsBefore || !res.Diff.Moved().IsZero() {
		t.Errorf("diff against an identical day: %+v", res.Diff)
	}
	if res.Duplicates == 0 || res.Duplicates != res.Rebuilt.Manifest.DuplicatesDropped {
		t.Errorf("duplicates %d, manifest says %d", res.Duplicates, res.Rebuilt.Manifest.DuplicatesDropped)
	}

	// Only the day was rebuilt: neighbouring days' events in the margin are not written.
	for _, k := range keysOf(objects(t, staging, "")) {
		if strings.Contains(k, "dt="+replayNeighb) || strings.Contains(k, "dt="+replayNext) {
			t.Errorf("replay wrote %s", k)
		}
	}

	// Nothing outside the staging prefix changed.
	after := objects(t, st, "")
	for k := range after {
		if strings.HasPrefix(k, res.Staging) {
			delete(after, k)
		}
	}
	sameObjects(t, "live store", after, before)

	// Without KeepStaging the staging prefix goes.
	res = runReplay(t, replay.Config{Source: src, Store: st, Run: "gone"})
	if !res.Diff.Same() {
		t.Errorf("second replay: %+v", res.Diff)
	}
	if left := objects(t, st, res.Staging); len(left) > 0 {
		t.Errorf("staging left behind: %v", keysOf(left))
	}
	if _, err := os.Stat(filepath.Join(st.Dir(), "_replay", replayDay, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging folder left behind: %v", err)
	}
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestReplayApplyAfterDayWasDeleted(t *testing.T) {
	src := newStream(t, dayUsage(400))
	st := newStore(t)
	livePath(t, src, st)
	ctx := context.Background()
	wantCSV := getObject(t, st, schemas.ChargebackCSVKey(replayDay))
	neighbours := map[string]string{}
	for _, d := range []string{replayNeighb, replayNext} {
		for _, table := range []string{schemas.EventsPrefix, schemas.WindowsPrefix, schemas.DailyPrefix, schemas.ChargebackPrefix} {
			for k, v := range objects(t, st, schemas.Partition(table, d)) {
				neighbours[k] = v
			}
		}
	}
	liveEvents := objects(t, st, schemas.Partition(schemas.EventsPrefix, replayDay))
	// The incident: every file of the day is lost.
	for _, table := range []string{schemas.EventsPrefix, schemas.WindowsPrefix, schemas.DailyPrefix, schemas.ChargebackPrefix} {
		for k := range objects(t, st, schemas.Partition(table, replayDay)) {
			if err := st.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}

	res := runReplay(t, replay.Config{Source: src, Store: st, Apply: true})
	if got := getObject(t, st, schemas.ChargebackCSVKey(replayDay)); !bytes.Equal(got, wantCSV) {
		t.Errorf("chargeback after replay --apply:\n%s\nbefore the loss:\n%s", got, wantCSV)
	}
	if res.Diff.RowsBefore != 0 || len(res.Diff.Added) != res.Diff.RowsAfter || res.Diff.RowsAfter == 0 {
		t.Errorf("diff against a missing day: %+v", res.Diff)
	}
	if res.Applied == nil || res.Applied.Manifest.Revision != 1 {
		t.Errorf("applied: %+v", res.Applied)
	}
	// The raw events are back, with the same events (in other batches).
	rebuilt := objects(t, st, schemas.Partition(schemas.EventsPrefix, replayDay))
	if len(rebuilt) == 0 || len(objects(t, st, schemas.Partition(schemas.WindowsPrefix, replayDay))) == 0 {
		t.Fatal("events or windows of the day not restored")
	}
	if got, want := requestIDs(t, rebuilt), requestIDs(t, liveEvents); got != want {
		t.Errorf("restored events hold %s, the lost ones held %s", got, want)
	}
	for _, k := range res.Written {
		if _, ok := rebuilt[k]; !ok && strings.HasPrefix(k, schemas.EventsPrefix) {
			t.Errorf("written %s is not there", k)
		}
	}
	if len(res.Deleted) != 0 {
		t.Errorf("deleted %v from a day that had nothing", res.Deleted)
	}
	// Other days untouched; staging removed.
	for k, v := range neighbours {
		if string(getObject(t, st, k)) != v {
			t.Errorf("%s changed", k)
		}
	}
	if left := objects(t, st, replay.Prefix); len(left) > 0 {
		t.Errorf("staging left behind: %v", keysOf(left))
	}
}

// requestIDs summarises the raw events under some objects: rows and distinct request ids.
func requestIDs(t *testing.T, objs map[string]string) string {
	t.Helper()
	ids := map[string]bool{}
	rows := 0
	for k, v := range objs {
		evs, err := readEventRows([]byte(v))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		for _, e := range evs {
			ids[e] = true
			rows++
		}
	}
	return fmt.Sprintf("%d rows of %d request ids", rows, len(ids))
}

func TestReplayShowsAndAppliesMissingRecords(t *testing.T) {
	recs := dayUsage(300)
	// The live path lost three records; the stream has them.
	extra := []sent{
		usageRecord(at("2026-11-25T10:00:00Z"), "req-extra-1", "team-z", "cc-900", haiku, schemas.StatusSuccess, at("2026-11-25T09:59:59Z"), 1000, 2000),
		usageRecord(at("2026-11-25T10:00:01Z"), "req-extra-2", "team-a", "cc-100", haiku, schemas.StatusSuccess, at("2026-11-25T10:00:00Z"), 4000, 0),
		// A redelivery of a request the live day already counts: moves nothing.
		{},
	}
	for _, r := range recs[len(recs)/2:] {
		if e, err := schemas.ParseEvent(r.entry.Data); err == nil && e.Day() == replayDay && e.Status == schemas.StatusSuccess {
			extra[2] = r
			// Redelivered a minute after the call, never before it.
			extra[2].arrival = e.Timestamp.Add(time.Minute)
			break
		}
	}
	full := append(append([]sent(nil), recs...), extra...)
	sort.SliceStable(full, func(i, j int) bool { return full[i].arrival.Before(full[j].arrival) })

	st := newStore(t)
	livePath(t, newStream(t, recs), st)
	src := newStream(t, full)
	oldCSV := getObject(t, st, schemas.ChargebackCSVKey(replayDay))
	oldEvents := objects(t, st, schemas.Partition(schemas.EventsPrefix, replayDay))
	before := objects(t, st, "")

	res := runReplay(t, replay.Config{Source: src, Store: st})
	d := res.Diff
	if len(d.Added) != 1 || len(d.Changed) != 1 || len(d.Removed) != 0 {
		t.Fatalf("diff: added %+v changed %+v removed %+v", d.Added, d.Changed, d.Removed)
	}
	if a := d.Added[0]; a.TeamID != "team-z" || a.CostCenter != "cc-900" || a.ModelID != haiku || a.InvocationsAfter != 1 || a.CostDiff().String() != "0.00275" {
		t.Errorf("added row %+v, cost %s; want team-z/cc-900/haiku, 1 call, 0.00275", a, a.CostDiff())
	}
	if c := d.Changed[0]; c.TeamID != "team-a" || c.ModelID != haiku || c.InvocationsAfter != c.InvocationsBefore+1 || c.CostDiff().String() != "0.001" {
		t.Errorf("changed row %+v, cost %s; want team-a/haiku one more call, 0.001", c, c.CostDiff())
	}
	if d.Moved().String() != "0.00375" || d.Unchanged != d.RowsBefore-1 {
		t.Errorf("money moved %s (%s -> %s), %d unchanged of %d", d.Moved(), d.TotalBefore, d.TotalAfter, d.Unchanged, d.RowsBefore)
	}
	sameObjects(t, "live store after a dry run", objects(t, st, ""), before)

	// --apply: the previous revision is kept, the day replaced.
	res = runReplay(t, replay.Config{Source: src, Store: st, Apply: true})
	newCSV := getObject(t, st, schemas.ChargebackCSVKey(replayDay))
	after, err := aggregator.DiffChargeback(oldCSV, newCSV)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Added) != 1 || len(after.Changed) != 1 || after.Moved().String() != "0.00375" {
		t.Errorf("live chargeback after apply: %+v", after)
	}
	if res.Applied.Manifest.Revision != 2 || !strings.HasSuffix(strings.SplitN(string(newCSV), "\n", 3)[1], ",2") {
		t.Errorf("applied revision %d; CSV:\n%s", res.Applied.Manifest.Revision, newCSV)
	}
	kept := getObject(t, st, schemas.Partition(schemas.ChargebackPrefix, replayDay)+"revisions/r1/chargeback-"+replayDay+".csv")
	if !bytes.Equal(kept, oldCSV) {
		t.Errorf("revision r1 is not the previous chargeback:\n%s", kept)
	}
	nowEvents := objects(t, st, schemas.Partition(schemas.EventsPrefix, replayDay))
	for k := range oldEvents {
		if _, ok := nowEvents[k]; ok {
			t.Errorf("stale live object %s kept", k)
		}
	}
	if got, want := requestIDs(t, nowEvents), expect(full, replay.DefaultMargin).dayEvents; !strings.HasPrefix(got, fmt.Sprintf("%d rows ", want)) {
		t.Errorf("live events of the day after apply: %s, want %d rows", got, want)
	}
	if len(res.Deleted) < len(oldEvents) {
		t.Errorf("deleted %d objects, the live day had %d event objects", len(res.Deleted), len(oldEvents))
	}
	// Neighbouring days are as the live path left them.
	for _, d := range []string{replayNeighb, replayNext} {
		sameObjects(t, "events of "+d, objects(t, st, schemas.Partition(schemas.EventsPrefix, d)), onlyPrefix(before, schemas.Partition(schemas.EventsPrefix, d)))
	}
	// A second apply of the same stream changes nothing more: same inputs, same revision.
	res = runReplay(t, replay.Config{Source: src, Store: st, Apply: true})
	if !res.Diff.Same() || !res.Applied.Unchanged || res.Applied.Manifest.Revision != 2 || len(res.Deleted) != 0 {
		t.Errorf("second apply: diff %+v, unchanged %v, revision %d, deleted %v", res.Diff, res.Applied.Unchanged, res.Applied.Manifest.Revision, res.Deleted)
	}
}

func readEventRows(data []byte) ([]string, error) {
	rows, err := parquetio.ReadEvents(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].RequestID
	}
	return ids, nil
}

func onlyPrefix(m map[string]string, prefix string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

func TestReplayReadsOnlyTheMarginAroundTheDay(t *testing.T) {
	recs := []sent{
		usageRecord(at("2026-11-24T22:00:00Z"), "before-margin", "team-a", "cc-100", haiku, schemas.StatusSuccess, at("2026-11-24T22:00:00Z"), 100, 100),
		usageRecord(at("2026-11-24T23:30:00Z"), "eve-in-margin", "team-a", "cc-100", haiku, schemas.StatusSuccess, at("2026-11-24T23:30:00Z"), 100, 100),
		// An event of the day that arrived (clock skew) before midnight.
		usageRecord(at("2026-11-24T23:59:00Z"), "early", "team-a", "cc-100", haiku, schemas.StatusSuccess, at("2026-11-25T00:00:30Z"), 1000, 0),
		usageRecord(at("2026-11-25T12:00:00Z"), "noon", "team-a", "cc-100", haiku, schemas.StatusSuccess, at("2026-11-25T12:00:00Z"), 1000, 0),
		usageRecord(at("2026-11-26T00:10:00Z"), "next-in-margin", "team-a", "cc-100", haiku, schemas.StatusSuccess, at("2026-11-26T00:10:00Z"), 100, 100),
		usageRecord(at("2026-11-26T00:30:00Z"), "late", "team-a", "cc-100", haiku, schemas.StatusSuccess, at("2026-11-25T23:59:00Z"), 1000, 0),
		usageRecord(at("2026-11-26T02:00:00Z"), "very-late", "team-a", "cc-100", haiku, schemas.StatusSuccess, at("2026-11-25T23:58:00Z"), 1000, 0),
		usageRecord(at("2026-11-26T05:00:00Z"), "next-morning", "team-a", "cc-100", haiku, schemas.StatusSuccess, at("2026-11-26T05:00:00Z"), 100, 100),
	}
	src := newStream(t, recs)
	for _, c := range []struct {
		margin                    time.Duration
		records, dayEvents, other int
		invocations, inputTokens  string
	}{
		{time.Hour, 5, 3, 2, "3", "3000"},     // early, noon, late; two neighbours ignored
		{3 * time.Hour, 7, 4, 3, "4", "4000"}, // very-late too; before-margin is an event of the day before
		{-1, 1, 1, 0, "1", "1000"},            // negative, no margin: noon only; early arrived before the day, late after it
	} {
		st := newStore(t)
		res := runReplay(t, replay.Config{Source: src, Store: st, Margin: c.margin, Apply: true})
		if res.Records != c.records || res.DayEvents != c.dayEvents || res.OtherDays != c.other {
			t.Errorf("margin %s: %d records, %d of the day, %d of others; want %d, %d, %d", c.margin, res.Records, res.DayEvents, res.OtherDays, c.records, c.dayEvents, c.other)
		}
		csv := string(getObject(t, st, schemas.ChargebackCSVKey(replayDay)))
		row := strings.Split(strings.Split(csv, "\n")[1], ",")
		if row[1] != "team-a" || row[4] != c.invocations || row[5] != c.inputTokens {
			t.Errorf("margin %s: chargeback row %q; want %s invocations, %s input tokens", c.margin, row, c.invocations, c.inputTokens)
		}
		if len(objects(t, st, schemas.EventsPrefix)) != len(objects(t, st, schemas.Partition(schemas.EventsPrefix, replayDay))) {
			t.Errorf("margin %s: events of other days written: %v", c.margin, keysOf(objects(t, st, schemas.EventsPrefix)))
		}
	}
}

func TestReplayRefusesToApplyAnEmptyStream(t *testing.T) {
	st := newStore(t)
	livePath(t, newStream(t, dayUsage(60)), st)
	before := objects(t, st, "")
	empty := newStream(t, []sent{usageRecord(at("2026-11-27T01:00:00Z"), "later", "team-a", "cc-100", haiku, schemas.StatusSuccess, at("2026-11-27T01:00:00Z"), 1, 1)})
	_, err := replay.Run(context.Background(), replay.Config{Source: empty, Store: st, Day: replayDay, Prices: pricing.Default(), Now: replayNow, Apply: true, Poll: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "holds no events of "+replayDay) {
		t.Fatalf("err = %v", err)
	}
	after := objects(t, st, "")
	sameObjects(t, "live store", onlyPrefixNot(after, replay.Prefix), before)
}

func onlyPrefixNot(m map[string]string, prefix string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

func TestDiffChargeback(t *testing.T) {
	before := "day,team_id,cost_center,model_id,invocations,input_tokens,output_tokens,input_cost,output_cost,total_cost,revision\n" +
		"D,a,cc,m1,2,10,10,0.1,0.2,0.3,1\n" +
		"D,b,cc,m1,1,10,10,0.1,0.2,0.3,1\n" +
		"D,c,,m2,1,10,10,0.5,0.5,1.0,1\n"
	after := "day,team_id,cost_center,model_id,invocations,input_tokens,output_tokens,input_cost,output_cost,total_cost,revision\n" +
		"D,a,cc,m1,2,10,10,0.1,0.2,0.3,2\n" + // only the revision differs
		"D,b,cc,m1,1,10,12,0.1,0.25,0.35,2\n" +
		"D,d,cc,m2,4,40,40,2,2,4,2\n"
	d, err := aggregator.DiffChargeback([]byte(before), []byte(after))
	if err != nil {
		t.Fatal(err)
	}
	if d.Unchanged != 1 || len(d.Added) != 1 || d.Added[0].TeamID != "d" || len(d.Removed) != 1 || d.Removed[0].TeamID != "c" ||
		len(d.Changed) != 1 || strings.Join(d.Changed[0].Columns, " ") != "output_cost output_tokens total_cost" {
		t.Fatalf("diff %+v", d)
	}
	if d.Moved().String() != "3.05" || d.Changed[0].CostDiff().String() != "0.05" || d.Removed[0].CostDiff().String() != "-1" {
		t.Errorf("moved %s, changed %s, removed %s", d.Moved(), d.Changed[0].CostDiff(), d.Removed[0].CostDiff())
	}
	if _, err := aggregator.DiffChargeback(nil, []byte("day,team_id\nD,a\n")); err == nil {
		t.Error("a CSV without the key columns was accepted")
	}
}

// Over Kinesis (kinesalite): shards opened AT_TIMESTAMP give the live path's
// chargeback; records arrive now, so the day replayed is today.
func TestReplayKinesisEqualsLivePath(t *testing.T) {
	k := testenv.StartKinesalite(t)
	k.CreateStream(t, "usage", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := k.Client()
	src, err := stream.OpenKinesisWithOptions(ctx, client, "usage", stream.KinesisSourceOptions{MinPollInterval: 20 * time.Millisecond, AtTimestampTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	day := now.Format(schemas.DayLayout)
	dayStart := now.Truncate(24 * time.Hour)
	var entries []stream.Entry
	for i := 0; i < 120; i++ {
		ts := dayStart.Add(time.Duration(i) * time.Minute)
		if i%10 == 0 {
			ts = dayStart.Add(-time.Duration(i+1) * time.Minute) // yesterday's, arriving late: ignored
		}
		r := usageRecord(now, fmt.Sprintf("kreq-%04d", i), []string{"team-a", "team-b"}[i%2], "cc-1", []string{haiku, sonnet35}[i/2%2], schemas.StatusSuccess, ts, int64(100+i), int64(10+i))
		entries = append(entries, r.entry)
		if i%15 == 1 {
			entries = append(entries, r.entry) // redelivered
		}
	}
	if err := stream.NewKinesisProducer(client, "usage", stream.KinesisProducerOptions{}).Put(ctx, entries); err != nil {
		t.Fatal(err)
	}

	st := newStore(t)
	if _, err := mustConsumer(t, collector.Config{Source: src, Store: st, BatchRecords: 50}).Run(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: day, Prices: pricing.Default(), Force: true}); err != nil {
		t.Fatal(err)
	}
	liveCSV := getObject(t, st, schemas.ChargebackCSVKey(day))

	res, err := replay.Run(ctx, replay.Config{Source: src, Store: st, Day: day, Prices: pricing.Default(), KeepStaging: true, Run: "kinesis", Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got := getObject(t, store.WithPrefix(st, res.Staging), schemas.ChargebackCSVKey(day)); !bytes.Equal(got, liveCSV) {
		t.Errorf("replayed chargeback:\n%s\nlive:\n%s", got, liveCSV)
	}
	if res.Records != len(entries) || res.OtherDays != 12 || res.DayEvents != len(entries)-12 || res.Duplicates != 8 || !res.Diff.Same() {
		t.Errorf("read %d records (%d of the day, %d of others, %d duplicates), diff %+v; want %d records, 12 of others, 8 duplicates",
			res.Records, res.DayEvents, res.OtherDays, res.Duplicates, res.Diff, len(entries))
	}
	if len(res.CaughtUp) != 2 {
		t.Errorf("caught up: %v, want both shards (the day is not over)", res.CaughtUp)
	}
}

// heldBack is an event of the day that its sender held back during an outage
// and delivered at 03:00 the day after: past the replay's arrival range.
var heldBack = usageRecord(at("2026-11-26T03:00:00Z"), "req-held-back", "team-a", "cc-100", haiku, schemas.StatusSuccess, at("2026-11-25T23:00:00Z"), 1000, 0)

func TestReplayApplyKeepsLiveEventsItDidNotRead(t *testing.T) {
	recs := append(dayUsage(200), heldBack)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].arrival.Before(recs[j].arrival) })
	src := newStream(t, recs)
	st := newStore(t)
	livePath(t, src, st)
	liveCSV := getObject(t, st, schemas.ChargebackCSVKey(replayDay))
	liveEvents := objects(t, st, schemas.Partition(schemas.EventsPrefix, replayDay))
	liveWindows := objects(t, st, schemas.Partition(schemas.WindowsPrefix, replayDay))
	held := ""
	for k, v := range liveEvents {
		ids, err := readEventRows([]byte(v))
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if id == "req-held-back" {
				held = k
			}
		}
	}
	if held == "" || len(liveEvents) < 2 {
		t.Fatalf("the live path wrote %d events objects, none with the held-back event", len(liveEvents))
	}
	heldWindows := schemas.Partition(schemas.WindowsPrefix, replayDay) + strings.TrimPrefix(held, schemas.Partition(schemas.EventsPrefix, replayDay))
	if _, ok := liveWindows[heldWindows]; !ok {
		t.Fatalf("no windows object %s beside %s", heldWindows, held)
	}
	checkKept := func(what string, res *replay.Result) {
		t.Helper()
		if len(res.KeptLive) != 1 || res.KeptLive[0].Key != held || res.KeptLive[0].Missing != 1 || !strings.Contains(res.KeptLive[0].Reason, "req-held-back") {
			t.Errorf("%s: kept live %+v, want %s, missing req-held-back only", what, res.KeptLive, held)
		}
	}

	// The stream read misses the held-back event; the dry run says which
	// live object stays, and its comparison counts it as applying will.
	res := runReplay(t, replay.Config{Source: src, Store: st, BatchRecords: 60})
	if want := expect(recs, replay.DefaultMargin).dayEvents; res.DayEvents != want {
		t.Fatalf("%d events of the day read, want %d", res.DayEvents, want)
	}
	checkKept("dry run", res)
	if !res.Diff.Same() {
		t.Errorf("dry run diff: added %+v removed %+v changed %+v", res.Diff.Added, res.Diff.Removed, res.Diff.Changed)
	}

	res = runReplay(t, replay.Config{Source: src, Store: st, BatchRecords: 60, Apply: true})
	checkKept("apply", res)
	after, err := aggregator.DiffChargeback(liveCSV, getObject(t, st, schemas.ChargebackCSVKey(replayDay)))
	if err != nil {
		t.Fatal(err)
	}
	if !after.Same() || after.RowsAfter == 0 {
		t.Errorf("live chargeback changed by apply: added %+v removed %+v changed %+v", after.Added, after.Removed, after.Changed)
	}
	nowEvents := objects(t, st, schemas.Partition(schemas.EventsPrefix, replayDay))
	if nowEvents[held] != liveEvents[held] {
		t.Errorf("the live object holding the held-back event is gone or changed: %s", held)
	}
	if got := objects(t, st, schemas.Partition(schemas.WindowsPrefix, replayDay))[heldWindows]; got != liveWindows[heldWindows] {
		t.Errorf("its windows object %s is gone or changed", heldWindows)
	}
	// Every other live object was covered by the rebuilt day and replaced.
	deleted := map[string]bool{}
	for _, k := range res.Deleted {
		deleted[k] = true
	}
	for k := range liveEvents {
		if _, still := nowEvents[k]; k != held && (still || !deleted[k]) {
			t.Errorf("covered live object %s not replaced", k)
		}
	}
	ids := func(objs map[string]string) map[string]bool {
		out := map[string]bool{}
		for k, v := range objs {
			rows, err := readEventRows([]byte(v))
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			for _, id := range rows {
				out[id] = true
			}
		}
		return out
	}
	have := ids(nowEvents)
	for id := range ids(liveEvents) {
		if !have[id] {
			t.Errorf("request %s lost from the live events", id)
		}
	}
}

func TestReplayApplyRefusesUnreadableLiveObject(t *testing.T) {
	src := newStream(t, dayUsage(60))
	st := newStore(t)
	livePath(t, src, st)
	bad := schemas.Partition(schemas.EventsPrefix, replayDay) + "torn.parquet"
	if err := st.Put(context.Background(), bad, strings.NewReader("not parquet")); err != nil {
		t.Fatal(err)
	}
	before := objects(t, st, "")
	_, err := replay.Run(context.Background(), replay.Config{Source: src, Store: st, Day: replayDay, Prices: pricing.Default(), Now: replayNow, Apply: true, Poll: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "move it aside") {
		t.Fatalf("err = %v, want one naming %s", err, bad)
	}
	sameObjects(t, "live store", onlyPrefixNot(objects(t, st, ""), replay.Prefix), before)
}

// laggingKinesis is one Kinesis shard, scripted: the GetRecords calls in lag
// answer empty pages that are still behind the tip (as Kinesis does while it
// walks a shard's older data), the others the next records.
type laggingKinesis struct {
	stream.KinesisAPI
	recs []sent
	lag  map[int]bool

	mu    sync.Mutex
	calls int
}

func (k *laggingKinesis) DescribeStreamSummary(context.Context, *kinesis.DescribeStreamSummaryInput, ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	return &kinesis.DescribeStreamSummaryOutput{}, nil
}

func (k *laggingKinesis) ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return &kinesis.ListShardsOutput{Shards: []types.Shard{{ShardId: aws.String("shardId-000000000000")}}}, nil
}

func (k *laggingKinesis) GetShardIterator(_ context.Context, in *kinesis.GetShardIteratorInput, _ ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	pos := 0 // every record arrived within the range read
	if in.ShardIteratorType == types.ShardIteratorTypeAfterSequenceNumber {
		n, _ := strconv.Atoi(aws.ToString(in.StartingSequenceNumber))
		pos = n - 1000 + 1
	}
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(strconv.Itoa(pos))}, nil
}

func (k *laggingKinesis) GetRecords(_ context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	call := k.calls
	k.calls++
	if k.lag[call] {
		return &kinesis.GetRecordsOutput{NextShardIterator: in.ShardIterator, MillisBehindLatest: aws.Int64(6 * 3600 * 1000)}, nil
	}
	pos, _ := strconv.Atoi(aws.ToString(in.ShardIterator))
	end := min(pos+int(aws.ToInt32(in.Limit)), len(k.recs))
	out := &kinesis.GetRecordsOutput{NextShardIterator: aws.String(strconv.Itoa(end)), MillisBehindLatest: aws.Int64(0)}
	if end < len(k.recs) {
		out.MillisBehindLatest = aws.Int64(k.recs[len(k.recs)-1].arrival.Sub(k.recs[end].arrival).Milliseconds() + 1)
	}
	for i := pos; i < end; i++ {
		r := k.recs[i]
		out.Records = append(out.Records, types.Record{SequenceNumber: aws.String(strconv.Itoa(1000 + i)), PartitionKey: aws.String(r.entry.PartitionKey),
			Data: r.entry.Data, ApproximateArrivalTimestamp: aws.Time(r.arrival)})
	}
	return out, nil
}

// lagging returns a Kinesis source over recs whose first reads, and some in
// between, are empty pages behind the tip: more in a row than IdleReads.
func lagging(t *testing.T, recs []sent) *stream.KinesisSource {
	t.Helper()
	lag := map[int]bool{}
	for _, c := range []int{0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14} {
		lag[c] = true
	}
	src, err := stream.OpenKinesisWithOptions(context.Background(), &laggingKinesis{recs: recs, lag: lag}, "usage", stream.KinesisSourceOptions{MinPollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// dayOnly is the usage of replayDay that arrived within the day and the margin.
func dayOnly(recs []sent) []sent {
	from := at(replayDay + "T00:00:00Z").Add(-replay.DefaultMargin)
	until := at(replayDay + "T00:00:00Z").Add(24*time.Hour + replay.DefaultMargin)
	var out []sent
	for _, r := range recs {
		if !r.arrival.Before(from) && !r.arrival.After(until) {
			out = append(out, r)
		}
	}
	return out
}

func TestReplayKinesisReadsOnWhileBehindTheTip(t *testing.T) {
	recs := dayOnly(dayUsage(200))
	res := runReplay(t, replay.Config{Source: lagging(t, recs), Store: newStore(t), BatchRecords: 20})
	want := expect(recs, replay.DefaultMargin)
	if res.Records != len(recs) || res.DayEvents != want.dayEvents || want.dayEvents == 0 {
		t.Fatalf("read %d records, %d events of the day; want %d and %d: the replay stopped at an empty page behind the tip",
			res.Records, res.DayEvents, len(recs), want.dayEvents)
	}
	// The stream ends within the range: the shard ended caught up.
	if fmt.Sprint(res.CaughtUp) != "[shardId-000000000000]" {
		t.Errorf("caught up %v", res.CaughtUp)
	}
	// The same records from the embedded stream give the same chargeback.
	file := runReplay(t, replay.Config{Source: newStream(t, recs), Store: newStore(t)})
	if k, f := res.Rebuilt.Day.Totals.Invocations, file.Rebuilt.Day.Totals.Invocations; k != f || !res.Diff.TotalAfter.Equal(file.Diff.TotalAfter) {
		t.Errorf("Kinesis replay: %d invocations, %s USD; file stream: %d, %s USD", k, res.Diff.TotalAfter, f, file.Diff.TotalAfter)
	}
}

func TestConsumerUntilIdleReadsOnWhileBehindTheTip(t *testing.T) {
	recs := dayOnly(dayUsage(200))
	stats := runConsumer(t, collector.Config{Source: lagging(t, recs), Store: newStore(t), BatchRecords: 20, Now: replayNow})
	if stats.Records != len(recs) {
		t.Fatalf("read %d records, want %d: the consumer went idle at an empty page behind the tip", stats.Records, len(recs))
	}
}
