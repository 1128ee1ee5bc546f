// Package streamtest is the contract every implementation of package stream
// keeps, as a test suite in the style of testing/fstest.TestFS: Run puts
// records through a Producer and reads them back through the Source, using
// only the public API of package stream, and checks the behaviour the
// collector and the aggregator rely on whichever stream they are given —
// read-back order and shard labels, partition-key routing, every Start kind,
// CaughtUp and the idle-reader stop rule, CompareSeq over the sequence numbers
// handed out (KPL sub-sequences included), entry validation, shard listing and,
// where the implementation can reshard, closed shards and ErrShardClosed. An
// implementation's tests call Run with a Harness that makes fresh streams.
package streamtest

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meter-dev/meter/internal/stream"
)

// Harness describes one stream implementation to Run.
type Harness struct {
	// New makes a fresh, empty stream with the given number of shards for
	// one subtest, and releases it when t ends (t.Cleanup). Required.
	New func(t *testing.T, shards int) Stream

	// DeaggregatesKPL says the Source splits a record that the Kinesis
	// Producer Library aggregated into the user records it holds, as
	// stream.Deaggregate does. Without it the KPLAggregates subtest is not
	// run: a stream that keeps records opaque need not decode them.
	DeaggregatesKPL bool

	// Reshards says every Stream that New makes has a Split. Without it the
	// ClosedShard subtest is not run: a stream that never reshards never
	// closes a shard.
	Reshards bool

	// KnownDeviations names subtests, by their path below the test that
	// calls Run (such as "AtTimestamp/just-after-a-record"), that the
	// implementation is known to fail, each with the reason. They are
	// skipped with that reason, so the deviation shows in verbose output
	// instead of being forgotten. A name that is no subtest fails Run.
	KnownDeviations map[string]string
}

// Stream is one fresh stream made by Harness.New.
type Stream struct {
	Producer stream.Producer
	Source   stream.Source

	// Split closes the open shard shardID by splitting it in two, and
	// returns once records put afterwards go to its children. Nil when the
	// implementation cannot reshard (the file stream never does): the
	// ClosedShard subtest, the only way to reach ErrShardClosed, is skipped.
	Split func(t *testing.T, shardID string)
}

// Run checks that h's streams keep the contract of package stream. Each
// subtest makes its own stream with h.New.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("streamtest.Run: Harness.New is nil")
	}
	valid := subtestNames()
	for name := range h.KnownDeviations {
		if !valid[name] {
			t.Fatalf("streamtest.Run: KnownDeviations names %q, which is not a subtest (have %s)", name, strings.Join(slices.Sorted(maps.Keys(valid)), ", "))
		}
	}
	s := &suite{h: h, root: t.Name()}
	for _, st := range subtests {
		if (st.name == "KPLAggregates" && !h.DeaggregatesKPL) || (st.name == "ClosedShard" && !h.Reshards) {
			t.Logf("%s: not a capability of this stream, not run", st.name)
			continue
		}
		s.run(t, st.name, func(t *testing.T) { st.fn(s, t) })
	}
}

// subtests are Run's subtests, in order.
var subtests = []struct {
	name string
	fn   func(*suite, *testing.T)
}{
	{"Shards", (*suite).testShards},
	{"ReadInOrder", (*suite).testReadInOrder},
	{"PartitionKeyRouting", (*suite).testPartitionKeyRouting},
	{"InvalidEntries", (*suite).testInvalidEntries},
	{"EmptyData", (*suite).testEmptyData},
	{"TrimHorizon", (*suite).testTrimHorizon},
	{"Latest", (*suite).testLatest},
	{"AfterSequence", (*suite).testAfterSequence},
	{"AtTimestamp", (*suite).testAtTimestamp},
	{"CaughtUp", (*suite).testCaughtUp},
	{"CompareSeq", (*suite).testCompareSeq},
	{"KPLAggregates", (*suite).testKPLAggregates},
	{"ClosedShard", (*suite).testClosedShard},
}

// Names of the nested subtests, so that KnownDeviations can be checked
// before anything runs (and whatever -run selects).
var (
	emptyDataCases   = []string{"nil", "zero-length"}
	atTimestampCases = []string{"before-first-record", "at-first-record", "at-a-later-record",
		"a-millisecond-after-a-record", "just-after-a-record", "after-newest-record"}
	caughtUpCases = []string{"idle-reader-reads-everything", "not-after-a-partial-read"}
)

func subtestNames() map[string]bool {
	names := map[string]bool{}
	for _, st := range subtests {
		names[st.name] = true
	}
	for parent, cases := range map[string][]string{"EmptyData": emptyDataCases, "AtTimestamp": atTimestampCases, "CaughtUp": caughtUpCases} {
		for _, c := range cases {
			names[parent+"/"+c] = true
		}
	}
	return names
}

type suite struct {
	h    Harness
	root string // t.Name() of the test that called Run
}

// run runs fn as subtest name of t, unless it is a known deviation.
func (s *suite) run(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		rel := strings.TrimPrefix(t.Name(), s.root+"/")
		if why, ok := s.h.KnownDeviations[rel]; ok {
			t.Skipf("known deviation of this implementation from the stream contract: %s", why)
		}
		fn(t)
	})
}

// newStream makes a fresh stream and checks the harness filled it in.
func (s *suite) newStream(t *testing.T, shards int) Stream {
	t.Helper()
	st := s.h.New(t, shards)
	if st.Producer == nil || st.Source == nil {
		t.Fatalf("Harness.New(%d) returned a Stream without Producer or Source", shards)
	}
	return st
}

// timeout bounds each subtest's polling. Nothing asserts how long anything
// took: it only turns a hang into a failure that says what was awaited.
const timeout = 2 * time.Minute

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// testShards: a fresh stream lists the shards it was made with, none with
// parents (so ParentsRead lets a reader take them all at once); the list does
// not change as records are put; every listed shard opens, and an unlisted
// one does not.
func (s *suite) testShards(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 3)
	first := listShards(t, ctx, st.Source)
	if len(first) != 3 {
		t.Fatalf("a fresh stream of 3 shards lists %d: %+v", len(first), first)
	}
	for _, sh := range first {
		if len(sh.Parents) != 0 {
			t.Errorf("shard %s of a fresh stream has parents %q", sh.ID, sh.Parents)
		}
		if !stream.ParentsRead(sh, first, func(string) bool { return false }) {
			t.Errorf("shard %s of a fresh stream waits for a parent", sh.ID)
		}
	}
	put(t, ctx, st.Producer, entries("shards", 30)...)
	if again := listShards(t, ctx, st.Source); !reflect.DeepEqual(first, again) {
		t.Errorf("Shards changed after a Put:\nbefore %+v\n after %+v", first, again)
	}
	for _, sh := range first {
		for _, from := range []stream.Start{{Kind: stream.TrimHorizon}, {Kind: stream.Latest}} {
			it, err := st.Source.Open(ctx, sh.ID, from)
			if err != nil {
				t.Errorf("Open(%s, %s): %v", sh.ID, describeStart(from), err)
				continue
			}
			if err := it.Close(); err != nil {
				t.Errorf("closing the iterator of %s: %v", sh.ID, err)
			}
		}
	}
	unknown := "shardId-000000009999"
	for i := 1; slices.ContainsFunc(first, func(sh stream.Shard) bool { return sh.ID == unknown }); i++ {
		unknown = fmt.Sprintf("shardId-%012d", 9999+i)
	}
	if it, err := st.Source.Open(ctx, unknown, stream.Start{Kind: stream.TrimHorizon}); err == nil {
		it.Close()
		t.Errorf("Open of unlisted shard %s: no error", unknown)
	}
}

// testReadInOrder: every record put comes back once, from one shard, labelled
// with it, with its partition key, data and a non-zero arrival time; within
// a shard sequence numbers increase (by CompareSeq) and records of
// successive Puts come in Put order. Keys up to the limit in characters, any
// bytes and large records round-trip.
func (s *suite) testReadInOrder(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 3)
	putOf := map[string]int{} // partition key -> which Put carried it
	want := map[string]stream.Entry{}
	add := func(p int, batch []stream.Entry) {
		t.Helper()
		put(t, ctx, st.Producer, batch...)
		for _, e := range batch {
			putOf[e.PartitionKey], want[e.PartitionKey] = p, e
		}
	}
	for p := 0; p < 4; p++ {
		add(p, entries(fmt.Sprintf("put%d", p), 25))
	}
	binary := make([]byte, 512)
	for i := range binary {
		binary[i] = byte(i)
	}
	add(4, []stream.Entry{
		{PartitionKey: strings.Repeat("é", stream.MaxPartitionKeyLen), Data: []byte("the longest key, in characters not bytes")},
		{PartitionKey: "binary", Data: binary},
		{PartitionKey: "large", Data: bytes.Repeat([]byte("0123456789abcdef"), 16<<10)}, // 256 KiB
	})

	seen := map[string]string{} // partition key -> shard
	for _, sh := range listShards(t, ctx, st.Source) {
		it := open(t, ctx, st.Source, sh.ID, stream.Start{Kind: stream.TrimHorizon})
		recs, _ := drain(t, ctx, it, sh.ID, 7)
		checkShardOrder(t, sh.ID, recs)
		lastPut := -1
		for _, r := range recs {
			e, ok := want[r.PartitionKey]
			switch {
			case !ok:
				t.Fatalf("%s: record %s has key %.40q, which was never put", sh.ID, r.SequenceNumber, r.PartitionKey)
			case seen[r.PartitionKey] != "":
				t.Fatalf("key %.40q read twice: from %s and from %s", r.PartitionKey, seen[r.PartitionKey], sh.ID)
			case !bytes.Equal(r.Data, e.Data):
				t.Errorf("%s: key %.40q: data %.40q (%d bytes), want %.40q (%d bytes)", sh.ID, r.PartitionKey, r.Data, len(r.Data), e.Data, len(e.Data))
			}
			seen[r.PartitionKey] = sh.ID
			if p := putOf[r.PartitionKey]; p < lastPut {
				t.Errorf("%s: a record of Put %d (%.40q) after one of Put %d", sh.ID, p, r.PartitionKey, lastPut)
			} else {
				lastPut = p
			}
		}
	}
	if len(seen) != len(want) {
		var missing []string
		for k := range want {
			if seen[k] == "" {
				missing = append(missing, fmt.Sprintf("%.40q", k))
			}
		}
		sort.Strings(missing)
		t.Fatalf("read %d of %d records; missing %s", len(seen), len(want), strings.Join(missing, " "))
	}
}

// testPartitionKeyRouting: every record put with a key lands in the same
// shard, however many times and in whichever Put it is put; keys spread over
// more than one shard.
func (s *suite) testPartitionKeyRouting(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 4)
	var keys []string
	for i := 0; i < 24; i++ {
		keys = append(keys, fmt.Sprintf("team-%02d/req-%d", i, i*7919))
	}
	batch := func(keys []string, round int) []stream.Entry {
		out := make([]stream.Entry, len(keys))
		for i, k := range keys {
			out[i] = stream.Entry{PartitionKey: k, Data: []byte(fmt.Sprintf("round %d", round))}
		}
		return out
	}
	put(t, ctx, st.Producer, batch(keys, 0)...)
	put(t, ctx, st.Producer, append(batch(keys, 1), batch(keys, 2)...)...) // each key twice in one Put
	reversed := slices.Clone(keys)
	slices.Reverse(reversed)
	put(t, ctx, st.Producer, batch(reversed, 3)...)

	shardOf := map[string]string{}
	count := map[string]int{}
	used := 0
	for _, sh := range listShards(t, ctx, st.Source) {
		recs, _ := drain(t, ctx, open(t, ctx, st.Source, sh.ID, stream.Start{Kind: stream.TrimHorizon}), sh.ID, 100)
		if len(recs) > 0 {
			used++
		}
		for _, r := range recs {
			if prev, ok := shardOf[r.PartitionKey]; ok && prev != sh.ID {
				t.Errorf("key %s in shard %s and in shard %s", r.PartitionKey, prev, sh.ID)
			}
			shardOf[r.PartitionKey] = sh.ID
			count[r.PartitionKey]++
		}
	}
	for _, k := range keys {
		if count[k] != 4 {
			t.Errorf("key %s: read %d records, want 4", k, count[k])
		}
	}
	if used < 2 {
		t.Errorf("24 keys all landed in one of 4 shards: keys are not spread")
	}
}

// testInvalidEntries: an entry no stream can accept (no key, a key over the
// limit, a record over the size limit) fails Put with ErrInvalidEntry and is
// not appended; the largest record allowed is accepted.
func (s *suite) testInvalidEntries(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 1)
	shard := listShards(t, ctx, st.Source)[0].ID
	for _, c := range []struct {
		name string
		e    stream.Entry
	}{
		{"empty partition key", stream.Entry{Data: []byte("x")}},
		{"partition key over the limit", stream.Entry{PartitionKey: strings.Repeat("k", stream.MaxPartitionKeyLen+1), Data: []byte("x")}},
		{"record over the limit", stream.Entry{PartitionKey: "k", Data: make([]byte, stream.MaxRecordBytes)}},
	} {
		if err := st.Producer.Put(ctx, []stream.Entry{c.e}); !errors.Is(err, stream.ErrInvalidEntry) {
			t.Errorf("Put of an entry with %s = %v, want an error wrapping ErrInvalidEntry", c.name, err)
		}
	}
	it := open(t, ctx, st.Source, shard, stream.Start{Kind: stream.TrimHorizon})
	if recs, _ := drain(t, ctx, it, shard, 10); len(recs) != 0 {
		t.Fatalf("rejected entries were appended: %s", describe(recs))
	}
	largest := stream.Entry{PartitionKey: "largest", Data: make([]byte, stream.MaxRecordBytes-len("largest"))}
	put(t, ctx, st.Producer, largest)
	got := await(t, ctx, it, shard, 10, 1)
	if len(got) != 1 || got[0].PartitionKey != largest.PartitionKey || !bytes.Equal(got[0].Data, largest.Data) {
		t.Fatalf("the largest record allowed read back as %s", describe(got))
	}
}

// testEmptyData: an entry with no data is a record, read back with empty data.
func (s *suite) testEmptyData(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
	}{{emptyDataCases[0], nil}, {emptyDataCases[1], []byte{}}} {
		s.run(t, c.name, func(t *testing.T) {
			ctx := testContext(t)
			st := s.newStream(t, 1)
			shard := listShards(t, ctx, st.Source)[0].ID
			put(t, ctx, st.Producer, stream.Entry{PartitionKey: "empty", Data: c.data})
			put(t, ctx, st.Producer, stream.Entry{PartitionKey: "next", Data: []byte("x")})
			got := await(t, ctx, open(t, ctx, st.Source, shard, stream.Start{Kind: stream.TrimHorizon}), shard, 10, 2)
			if len(got) != 2 || got[0].PartitionKey != "empty" || len(got[0].Data) != 0 || got[1].PartitionKey != "next" {
				t.Fatalf("read back %s, want the empty record then next", describe(got))
			}
		})
	}
}

// testTrimHorizon: TrimHorizon starts at the oldest record: an iterator on an
// empty shard waits there and gets the records put later, and every
// TrimHorizon iterator reads the same records with the same sequence numbers.
func (s *suite) testTrimHorizon(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 1)
	shard := listShards(t, ctx, st.Source)[0].ID
	early := open(t, ctx, st.Source, shard, stream.Start{Kind: stream.TrimHorizon})
	if recs, closed := drain(t, ctx, early, shard, 10); len(recs) != 0 || closed {
		t.Fatalf("an empty shard read %s (closed %v)", describe(recs), closed)
	}
	a := entries("a", 5)
	put(t, ctx, st.Producer, a...)
	gotA := await(t, ctx, early, shard, 3, len(a))
	sameEntries(t, "waiting at the start of an empty shard", gotA, a)

	later := open(t, ctx, st.Source, shard, stream.Start{Kind: stream.TrimHorizon})
	sameRecords(t, "a second TrimHorizon iterator", await(t, ctx, later, shard, 100, len(a)), gotA)

	b := entries("b", 5)
	put(t, ctx, st.Producer, b...)
	gotB := await(t, ctx, early, shard, 100, len(b))
	sameEntries(t, "records put after catching up", gotB, b)
	all := open(t, ctx, st.Source, shard, stream.Start{Kind: stream.TrimHorizon})
	sameRecords(t, "a TrimHorizon iterator opened last", await(t, ctx, all, shard, 4, len(a)+len(b)), append(slices.Clone(gotA), gotB...))
}

// testLatest: Latest sees only records put after it was opened.
func (s *suite) testLatest(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 1)
	shard := listShards(t, ctx, st.Source)[0].ID
	put(t, ctx, st.Producer, entries("a", 5)...)
	it := open(t, ctx, st.Source, shard, stream.Start{Kind: stream.Latest})
	if recs, _ := drain(t, ctx, it, shard, 10); len(recs) != 0 {
		t.Fatalf("Latest read records put before it was opened: %s", describe(recs))
	}
	b := entries("b", 5)
	put(t, ctx, st.Producer, b...)
	gotB := await(t, ctx, it, shard, 10, len(b))
	sameEntries(t, "Latest after a Put", gotB, b)

	it2 := open(t, ctx, st.Source, shard, stream.Start{Kind: stream.Latest})
	if recs, _ := drain(t, ctx, it2, shard, 10); len(recs) != 0 {
		t.Fatalf("a second Latest read records put before it was opened: %s", describe(recs))
	}
	c := entries("c", 3)
	put(t, ctx, st.Producer, c...)
	got1, got2 := await(t, ctx, it, shard, 10, len(c)), await(t, ctx, it2, shard, 10, len(c))
	sameEntries(t, "the first Latest iterator", got1, c)
	sameRecords(t, "the second Latest iterator", got2, got1)
}

// testAfterSequence: AfterSequence resumes strictly after the record with
// that sequence number, wherever it is in the shard; after the newest
// record it waits for the next one.
func (s *suite) testAfterSequence(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 1)
	shard := listShards(t, ctx, st.Source)[0].ID
	for p := 0; p < 3; p++ {
		put(t, ctx, st.Producer, entries(fmt.Sprintf("put%d", p), 4)...)
	}
	ref := await(t, ctx, open(t, ctx, st.Source, shard, stream.Start{Kind: stream.TrimHorizon}), shard, 5, 12)
	checkShardOrder(t, shard, ref)
	var last stream.Iterator
	for i, r := range ref {
		it := open(t, ctx, st.Source, shard, stream.Start{Kind: stream.AfterSequence, Sequence: r.SequenceNumber})
		got := await(t, ctx, it, shard, 5, len(ref)-i-1)
		sameRecords(t, fmt.Sprintf("after record %d of %d (%s)", i, len(ref), r.SequenceNumber), got, ref[i+1:])
		last = it
	}
	more := entries("more", 3)
	put(t, ctx, st.Producer, more...)
	got := await(t, ctx, last, shard, 5, len(more))
	sameEntries(t, "after the newest record, then a Put", got, more)
	if len(got) > 0 && stream.CompareSeq(got[0].SequenceNumber, ref[len(ref)-1].SequenceNumber) <= 0 {
		t.Errorf("new record %s does not sort after the newest record %s", got[0].SequenceNumber, ref[len(ref)-1].SequenceNumber)
	}
}

// testAtTimestamp: AtTimestamp starts at the first record that arrived at or
// after the time (arrival as the records report it), and a time after every
// record waits for the records that arrive then.
func (s *suite) testAtTimestamp(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 1)
	shard := listShards(t, ctx, st.Source)[0].ID
	for i, prefix := range []string{"a", "b", "c"} {
		if i > 0 {
			// Apart in time, so that Puts arrive at distinct times even on
			// a stream that keeps arrival to the millisecond. The
			// expectations below follow the arrival times read back.
			time.Sleep(5 * time.Millisecond)
		}
		put(t, ctx, st.Producer, entries(prefix, 3)...)
	}
	ref := await(t, ctx, open(t, ctx, st.Source, shard, stream.Start{Kind: stream.TrimHorizon}), shard, 100, 9)
	lastA := slices.IndexFunc(ref, func(r stream.Record) bool { return strings.HasPrefix(r.PartitionKey, "b-") }) - 1
	if lastA < 0 {
		t.Fatalf("no record of the second Put after one of the first: %s", describe(ref))
	}
	newest := ref[len(ref)-1].Arrival
	for _, r := range ref {
		if r.Arrival.After(newest) {
			newest = r.Arrival
		}
	}
	times := map[string]time.Time{
		"before-first-record":          ref[0].Arrival.Add(-time.Hour),
		"at-first-record":              ref[0].Arrival,
		"at-a-later-record":            ref[lastA+1].Arrival,
		"a-millisecond-after-a-record": ref[lastA].Arrival.Add(time.Millisecond),
		"just-after-a-record":          ref[lastA].Arrival.Add(time.Nanosecond),
		"after-newest-record":          newest.Add(time.Millisecond),
	}
	for _, name := range atTimestampCases {
		at := times[name]
		s.run(t, name, func(t *testing.T) {
			k := slices.IndexFunc(ref, func(r stream.Record) bool { return !r.Arrival.Before(at) })
			if k < 0 {
				k = len(ref)
			}
			it := open(t, ctx, st.Source, shard, stream.Start{Kind: stream.AtTimestamp, Time: at})
			got := await(t, ctx, it, shard, 100, len(ref)-k)
			sameRecords(t, fmt.Sprintf("AtTimestamp(%s), with records arriving at %s", at.Format(time.RFC3339Nano), arrivals(ref)), got, ref[k:])
			if name != "after-newest-record" {
				return
			}
			// Nothing has arrived since: the records that arrive next are
			// read (once the clock has passed the time, so that they do
			// arrive after it).
			for time.Now().Before(at.Add(2 * time.Millisecond)) {
				time.Sleep(time.Millisecond)
			}
			d := entries("d", 3)
			put(t, ctx, st.Producer, d...)
			sameEntries(t, fmt.Sprintf("AtTimestamp(%s) once records arrive after it", at.Format(time.RFC3339Nano)), await(t, ctx, it, shard, 100, len(d)), d)
		})
	}
}

// testCaughtUp: CaughtUp is what lets a reader stop at an idle shard.
func (s *suite) testCaughtUp(t *testing.T) {
	s.run(t, caughtUpCases[0], s.testCaughtUpReadsEverything)
	s.run(t, caughtUpCases[1], s.testCaughtUpPartialRead)
}

// testCaughtUpReadsEverything: a reader that stops at the first empty batch
// CaughtUp vouches for has read every record put before it started, however
// small its batches; CaughtUp is false before the first read; and at the
// tip it stays true with every further empty read, until new records are
// read in the same way.
func (s *suite) testCaughtUpReadsEverything(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 1)
	shard := listShards(t, ctx, st.Source)[0].ID
	a := append(entries("a", 4), entries("b", 3)...)
	put(t, ctx, st.Producer, a[:4]...)
	put(t, ctx, st.Producer, a[4:]...)
	it := open(t, ctx, st.Source, shard, stream.Start{Kind: stream.TrimHorizon})
	if _, ok := it.(stream.CaughtUpper); ok && stream.CaughtUp(it) {
		t.Errorf("CaughtUp before the first read")
	}
	got, closed := drain(t, ctx, it, shard, 2)
	if closed {
		t.Fatalf("an open shard read as closed")
	}
	sameEntries(t, "read until an empty batch with CaughtUp", got, a)
	for i := 0; i < 3; i++ {
		recs, err := nextBatch(t, ctx, it, shard, 2)
		if err != nil || len(recs) != 0 {
			t.Fatalf("read %d at the tip = %s, %v; want nothing", i+1, describe(recs), err)
		}
		if !stream.CaughtUp(it) {
			t.Fatalf("read %d at the tip: empty, but not CaughtUp", i+1)
		}
	}
	c := entries("c", 3)
	put(t, ctx, st.Producer, c...)
	var more []stream.Record
	for len(more) == 0 {
		recs, _ := drain(t, ctx, it, shard, 2)
		more = append(more, recs...)
		if len(more) == 0 {
			pause(t, ctx, "waiting for the records put after catching up")
		}
	}
	sameEntries(t, "records put after catching up, read until CaughtUp again", more, c)
}

// testCaughtUpPartialRead: a read that leaves records behind (fewer asked
// for than the shard holds) is not caught up.
func (s *suite) testCaughtUpPartialRead(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 1)
	shard := listShards(t, ctx, st.Source)[0].ID
	put(t, ctx, st.Producer, entries("a", 5)...)
	it := open(t, ctx, st.Source, shard, stream.Start{Kind: stream.TrimHorizon})
	if _, ok := it.(stream.CaughtUpper); !ok {
		t.Skip("the iterator does not implement CaughtUpper: every empty batch is taken to mean nothing new")
	}
	var got []stream.Record
	for len(got) == 0 {
		recs, err := nextBatch(t, ctx, it, shard, 2)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		got = recs
		if len(got) == 0 {
			pause(t, ctx, "waiting for the first records")
		}
	}
	if stream.CaughtUp(it) {
		t.Errorf("CaughtUp after a read of %d of 5 records", len(got))
	}
}

// testCompareSeq: CompareSeq orders the sequence numbers a shard hands out
// as the shard does, and places the sub-sequence numbers Deaggregate gives a
// KPL aggregate's user records after their record and before the next.
func (s *suite) testCompareSeq(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 2)
	put(t, ctx, st.Producer, entries("a", 10)...)
	put(t, ctx, st.Producer, entries("b", 10)...)
	agg := kplAggregate([]stream.Entry{{PartitionKey: "u-1", Data: []byte("one")}, {PartitionKey: "u-2", Data: []byte("two")}, {PartitionKey: "u-1", Data: []byte("three")}})
	total := 0
	for _, sh := range listShards(t, ctx, st.Source) {
		recs, _ := drain(t, ctx, open(t, ctx, st.Source, sh.ID, stream.Start{Kind: stream.TrimHorizon}), sh.ID, 100)
		total += len(recs)
		var seqs []string // every record's, each followed by the sub-sequences of its would-be aggregate
		for _, r := range recs {
			seqs = append(seqs, r.SequenceNumber)
			if plain := stream.Deaggregate(sh.ID, r.SequenceNumber, r.PartitionKey, r.Arrival, r.Data); len(plain) != 1 || plain[0].SequenceNumber != r.SequenceNumber {
				t.Errorf("Deaggregate of plain record %s = %s, want the record itself", r.SequenceNumber, describe(plain))
			}
			users := stream.Deaggregate(sh.ID, r.SequenceNumber, "agg", r.Arrival, agg)
			if len(users) != 3 || string(users[2].Data) != "three" || users[1].PartitionKey != "u-2" || users[0].ShardID != sh.ID || !users[0].Arrival.Equal(r.Arrival) {
				t.Fatalf("Deaggregate of an aggregate at %s = %s", r.SequenceNumber, describe(users))
			}
			for _, u := range users {
				seqs = append(seqs, u.SequenceNumber)
			}
		}
		for i, a := range seqs {
			for j, b := range seqs {
				if got, want := stream.CompareSeq(a, b), cmpInt(i, j); got != want {
					t.Errorf("%s: CompareSeq(%s, %s) = %d, want %d", sh.ID, a, b, got, want)
				}
			}
		}
	}
	if total != 20 {
		t.Errorf("read %d records, want 20", total)
	}
}

// testKPLAggregates: a Source that deaggregates returns a KPL aggregate's
// user records in place of it, each with its own partition key and data and
// a sequence number between the records around the aggregate; AfterSequence
// resumes inside the aggregate.
func (s *suite) testKPLAggregates(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 1)
	shard := listShards(t, ctx, st.Source)[0].ID
	users := []stream.Entry{{PartitionKey: "req-a", Data: []byte("a0")}, {PartitionKey: "req-b", Data: []byte("b1")}, {PartitionKey: "req-a", Data: []byte("a2")}}
	for _, e := range []stream.Entry{{PartitionKey: "plain-1", Data: []byte("p1")}, {PartitionKey: "agg", Data: kplAggregate(users)}, {PartitionKey: "plain-2", Data: []byte("p2")}} {
		put(t, ctx, st.Producer, e)
	}
	got := await(t, ctx, open(t, ctx, st.Source, shard, stream.Start{Kind: stream.TrimHorizon}), shard, 100, 5)
	want := [][2]string{{"plain-1", "p1"}, {"req-a", "a0"}, {"req-b", "b1"}, {"req-a", "a2"}, {"plain-2", "p2"}}
	if len(got) != len(want) {
		t.Fatalf("read %s, want %d records", describe(got), len(want))
	}
	for i, w := range want {
		if got[i].PartitionKey != w[0] || string(got[i].Data) != w[1] || got[i].Arrival.IsZero() {
			t.Errorf("record %d = %s %q (arrival %v), want %s %q", i, got[i].PartitionKey, got[i].Data, got[i].Arrival, w[0], w[1])
		}
	}
	checkShardOrder(t, shard, got)
	for i := 2; i < 4; i++ {
		if !got[i].Arrival.Equal(got[1].Arrival) {
			t.Errorf("user records of one aggregate arrived at %v and %v", got[1].Arrival, got[i].Arrival)
		}
	}
	for i, r := range got {
		it := open(t, ctx, st.Source, shard, stream.Start{Kind: stream.AfterSequence, Sequence: r.SequenceNumber})
		sameRecords(t, fmt.Sprintf("after record %d (%s)", i, r.SequenceNumber), await(t, ctx, it, shard, 100, len(got)-i-1), got[i+1:])
	}
}

// testClosedShard: once a shard is closed (split), reading it to its end
// gives ErrShardClosed, again on every later read, with CaughtUp; it holds
// only what was put before; its children list it as a parent (so ParentsRead
// holds them back until it is read), every parent is listed, and the
// children hold what was put after, each key in one.
func (s *suite) testClosedShard(t *testing.T) {
	ctx := testContext(t)
	st := s.newStream(t, 1)
	if st.Split == nil {
		t.Fatal("Harness.Reshards is set but the Stream has no Split")
	}
	parent := listShards(t, ctx, st.Source)[0].ID
	before, after := entries("before", 20), entries("after", 20)
	put(t, ctx, st.Producer, before...)

	it := open(t, ctx, st.Source, parent, stream.Start{Kind: stream.TrimHorizon})
	var got []stream.Record
	for len(got) == 0 { // part of the parent, then split it under the reader
		recs, err := nextBatch(t, ctx, it, parent, 5)
		if err != nil {
			t.Fatalf("reading %s before the split: %v", parent, err)
		}
		got = recs
		if len(got) == 0 {
			pause(t, ctx, "waiting for the first records")
		}
	}
	st.Split(t, parent)
	put(t, ctx, st.Producer, after...)
	got = append(got, readToClose(t, ctx, it, parent, 5)...)
	sameEntries(t, "the split shard, read to its end", got, before)
	checkShardOrder(t, parent, got)
	for i := 0; i < 2; i++ {
		if recs, err := nextBatch(t, ctx, it, parent, 5); !errors.Is(err, stream.ErrShardClosed) || len(recs) != 0 {
			t.Errorf("read %d after ErrShardClosed = %s, %v; want ErrShardClosed again", i+1, describe(recs), err)
		}
	}
	if !stream.CaughtUp(it) {
		t.Errorf("not CaughtUp after ErrShardClosed")
	}

	shards := listShards(t, ctx, st.Source)
	if again := listShards(t, ctx, st.Source); !reflect.DeepEqual(shards, again) {
		t.Errorf("Shards after the split changed between calls:\n%+v\n%+v", shards, again)
	}
	listed := map[string]bool{}
	for _, sh := range shards {
		listed[sh.ID] = true
	}
	if !listed[parent] {
		t.Errorf("the closed shard %s is not listed: %+v", parent, shards)
	}
	var children []string
	for _, sh := range shards {
		for _, p := range sh.Parents {
			if !listed[p] {
				t.Errorf("shard %s has parent %s, which is not listed", sh.ID, p)
			}
			if p == parent {
				children = append(children, sh.ID)
			}
		}
	}
	if len(children) == 0 {
		t.Fatalf("no shard lists %s as a parent after the split: %+v", parent, shards)
	}
	for _, c := range children {
		sh := shards[slices.IndexFunc(shards, func(sh stream.Shard) bool { return sh.ID == c })]
		if stream.ParentsRead(sh, shards, func(string) bool { return false }) {
			t.Errorf("ParentsRead: child %s may be read before its parent %s is", c, parent)
		}
		if !stream.ParentsRead(sh, shards, func(id string) bool { return id == parent }) {
			t.Errorf("ParentsRead: child %s may not be read once its parent %s is (parents %q)", c, parent, sh.Parents)
		}
	}

	var inChildren []stream.Record
	iters := map[string]stream.Iterator{}
	for _, c := range children {
		iters[c] = open(t, ctx, st.Source, c, stream.Start{Kind: stream.TrimHorizon})
	}
	for len(inChildren) < len(after) {
		n := len(inChildren)
		for _, c := range children {
			recs, closed := drain(t, ctx, iters[c], c, 100)
			if closed {
				t.Fatalf("child %s read as closed", c)
			}
			checkShardOrder(t, c, recs)
			inChildren = append(inChildren, recs...)
		}
		if len(inChildren) == n {
			pause(t, ctx, fmt.Sprintf("%d of %d records in the children", n, len(after)))
		}
	}
	sameEntries(t, "the children", inChildren, after)

	reread := readToClose(t, ctx, open(t, ctx, st.Source, parent, stream.Start{Kind: stream.TrimHorizon}), parent, 100)
	sorted := slices.Clone(got)
	slices.SortFunc(sorted, func(a, b stream.Record) int { return stream.CompareSeq(a.SequenceNumber, b.SequenceNumber) })
	sameRecords(t, "the closed shard read again from TrimHorizon", reread, sorted)
	if tail := readToClose(t, ctx, open(t, ctx, st.Source, parent, stream.Start{Kind: stream.AfterSequence, Sequence: reread[len(reread)-1].SequenceNumber}), parent, 100); len(tail) != 0 {
		t.Errorf("after the last record of the closed shard: %s", describe(tail))
	}
}

// Reading.

// pollPause is how long a reader waits after an empty read that is not yet
// at the tip, so that polling an implementation that answers at once does
// not spin.
const pollPause = 10 * time.Millisecond

func pause(t *testing.T, ctx context.Context, waitingFor string) {
	t.Helper()
	select {
	case <-ctx.Done():
		t.Fatalf("gave up after %v: %s", timeout, waitingFor)
	case <-time.After(pollPause):
	}
}

// nextBatch calls it.Next and checks what every batch must satisfy: at most
// max records, each labelled with the shard it was read from.
func nextBatch(t *testing.T, ctx context.Context, it stream.Iterator, shardID string, max int) ([]stream.Record, error) {
	t.Helper()
	recs, err := it.Next(ctx, max)
	if len(recs) > max {
		t.Fatalf("%s: Next(%d) returned %d records", shardID, max, len(recs))
	}
	for _, r := range recs {
		if r.ShardID != shardID {
			t.Fatalf("record %s read from %s is labelled with shard %q", r.SequenceNumber, shardID, r.ShardID)
		}
	}
	return recs, err
}

// drain reads it as a reader that stops at an idle shard does: until an
// empty batch that CaughtUp vouches for, or until ErrShardClosed. Any other
// error fails the test.
func drain(t *testing.T, ctx context.Context, it stream.Iterator, shardID string, max int) (recs []stream.Record, closed bool) {
	t.Helper()
	for {
		batch, err := nextBatch(t, ctx, it, shardID, max)
		recs = append(recs, batch...)
		switch {
		case errors.Is(err, stream.ErrShardClosed):
			return recs, true
		case err != nil:
			t.Fatalf("%s: Next after %d records: %v", shardID, len(recs), err)
		case len(batch) == 0 && stream.CaughtUp(it):
			return recs, false
		case len(batch) == 0:
			pause(t, ctx, fmt.Sprintf("%s: an empty read behind the tip after %d records", shardID, len(recs)))
		}
	}
}

// await reads until at least n records came (polling: a stream may show
// what was put only after a moment), then on to the tip, so that records
// beyond the n show up too.
func await(t *testing.T, ctx context.Context, it stream.Iterator, shardID string, max, n int) []stream.Record {
	t.Helper()
	var recs []stream.Record
	for {
		batch, closed := drain(t, ctx, it, shardID, max)
		recs = append(recs, batch...)
		if len(recs) >= n || closed {
			return recs
		}
		pause(t, ctx, fmt.Sprintf("%s: %d of %d records read", shardID, len(recs), n))
	}
}

// readToClose reads it until ErrShardClosed.
func readToClose(t *testing.T, ctx context.Context, it stream.Iterator, shardID string, max int) []stream.Record {
	t.Helper()
	var recs []stream.Record
	for {
		batch, closed := drain(t, ctx, it, shardID, max)
		recs = append(recs, batch...)
		if closed {
			return recs
		}
		pause(t, ctx, fmt.Sprintf("%s: ErrShardClosed after %d records", shardID, len(recs)))
	}
}

func open(t *testing.T, ctx context.Context, src stream.Source, shardID string, from stream.Start) stream.Iterator {
	t.Helper()
	it, err := src.Open(ctx, shardID, from)
	if err != nil {
		t.Fatalf("Open(%s, %s): %v", shardID, describeStart(from), err)
	}
	t.Cleanup(func() { it.Close() })
	return it
}

func listShards(t *testing.T, ctx context.Context, src stream.Source) []stream.Shard {
	t.Helper()
	shards, err := src.Shards(ctx)
	if err != nil {
		t.Fatalf("Shards: %v", err)
	}
	if len(shards) == 0 {
		t.Fatalf("Shards: none")
	}
	ids := map[string]bool{}
	for _, sh := range shards {
		if sh.ID == "" || ids[sh.ID] {
			t.Fatalf("Shards: empty or repeated id in %+v", shards)
		}
		ids[sh.ID] = true
	}
	return shards
}

func put(t *testing.T, ctx context.Context, p stream.Producer, entries ...stream.Entry) {
	t.Helper()
	if err := p.Put(ctx, entries); err != nil {
		t.Fatalf("Put of %d entries: %v", len(entries), err)
	}
}

// entries returns n entries with keys prefix-000, prefix-001, ...
func entries(prefix string, n int) []stream.Entry {
	out := make([]stream.Entry, n)
	for i := range out {
		key := fmt.Sprintf("%s-%03d", prefix, i)
		out[i] = stream.Entry{PartitionKey: key, Data: []byte(`{"request_id":"` + key + `"}`)}
	}
	return out
}

// Checking.

// checkShardOrder checks the records of one shard, in the order read:
// sequence numbers strictly increasing by CompareSeq, arrival times set.
func checkShardOrder(t *testing.T, shardID string, recs []stream.Record) {
	t.Helper()
	for i, r := range recs {
		if r.Arrival.IsZero() {
			t.Errorf("%s: record %s (key %.40q) has no arrival time", shardID, r.SequenceNumber, r.PartitionKey)
		}
		if i > 0 && stream.CompareSeq(recs[i-1].SequenceNumber, r.SequenceNumber) >= 0 {
			t.Errorf("%s: sequence number %s read after %s", shardID, r.SequenceNumber, recs[i-1].SequenceNumber)
		}
	}
}

// sameRecords fails unless got holds want's records (sequence number,
// partition key, data, arrival) in want's order.
func sameRecords(t *testing.T, what string, got, want []stream.Record) {
	t.Helper()
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		g, w := got[i], want[i]
		same = g.SequenceNumber == w.SequenceNumber && g.PartitionKey == w.PartitionKey && bytes.Equal(g.Data, w.Data) && g.Arrival.Equal(w.Arrival)
	}
	if !same {
		t.Fatalf("%s:\n got %s\nwant %s", what, describe(got), describe(want))
	}
}

// sameEntries fails unless recs hold exactly the entries, in any order (a
// Put may reorder the entries of one call).
func sameEntries(t *testing.T, what string, recs []stream.Record, want []stream.Entry) {
	t.Helper()
	var g, w []string
	for _, r := range recs {
		g = append(g, fmt.Sprintf("%s=%q", r.PartitionKey, r.Data))
	}
	for _, e := range want {
		w = append(w, fmt.Sprintf("%s=%q", e.PartitionKey, e.Data))
	}
	sort.Strings(g)
	sort.Strings(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s:\n got %d records %s\nwant %d entries %s", what, len(recs), describe(recs), len(want), strings.Join(w, " "))
	}
}

func describe(recs []stream.Record) string {
	if len(recs) == 0 {
		return "no records"
	}
	parts := make([]string, len(recs))
	for i, r := range recs {
		parts[i] = fmt.Sprintf("%s:%.40s", r.SequenceNumber, r.PartitionKey)
	}
	return fmt.Sprintf("%d records [%s]", len(recs), strings.Join(parts, " "))
}

func arrivals(recs []stream.Record) string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Arrival.Format("15:04:05.000000000"))
	}
	return strings.Join(out, " ")
}

func describeStart(from stream.Start) string {
	switch from.Kind {
	case stream.TrimHorizon:
		return "TrimHorizon"
	case stream.Latest:
		return "Latest"
	case stream.AtTimestamp:
		return "AtTimestamp " + from.Time.Format(time.RFC3339Nano)
	case stream.AfterSequence:
		return "AfterSequence " + from.Sequence
	}
	return fmt.Sprintf("start kind %d", from.Kind)
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// kplAggregate encodes user records as the Kinesis Producer Library
// aggregates them: magic, an AggregatedRecord protobuf (the partition key
// table, then the records), and the MD5 of the protobuf.
func kplAggregate(users []stream.Entry) []byte {
	var body []byte
	index := map[string]uint64{}
	for _, u := range users {
		if _, ok := index[u.PartitionKey]; !ok {
			index[u.PartitionKey] = uint64(len(index))
			body = protowire.AppendTag(body, 1, protowire.BytesType)
			body = protowire.AppendString(body, u.PartitionKey)
		}
	}
	for _, u := range users {
		var rec []byte
		rec = protowire.AppendTag(rec, 1, protowire.VarintType)
		rec = protowire.AppendVarint(rec, index[u.PartitionKey])
		rec = protowire.AppendTag(rec, 3, protowire.BytesType)
		rec = protowire.AppendBytes(rec, u.Data)
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendBytes(body, rec)
	}
	sum := md5.Sum(body)
	out := append([]byte{0xF3, 0x89, 0x9A, 0xC2}, body...)
	return append(out, sum[:]...)
}
