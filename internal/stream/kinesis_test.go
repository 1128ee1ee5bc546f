// Servers: kinesalite (local Kinesis, Node.js) on 127.0.0.1, started per test by
// testenv.StartKinesalite; tests skip with install instructions when it is absent.
package stream

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meter-dev/meter/internal/testenv"
)

const kinesisShard0 = "shardId-000000000000"

func startKinesis(t *testing.T, stream string, shards int) (*testenv.Kinesalite, *kinesis.Client) {
	t.Helper()
	k := testenv.StartKinesalite(t)
	k.CreateStream(t, stream, shards)
	return k, k.Client()
}

func kinesisCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func openKinesisSource(t *testing.T, ctx context.Context, c KinesisAPI, stream string) *KinesisSource {
	t.Helper()
	src, err := OpenKinesisWithOptions(ctx, c, stream, KinesisSourceOptions{MinPollInterval: 20 * time.Millisecond, AtTimestampTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// drainKinesis reads it until want records arrived, then once more to check nothing
// follows; it fails the test if a read errs (other than ErrShardClosed) or
// the records do not arrive within the context.
func drainKinesis(t *testing.T, ctx context.Context, it Iterator, want int) []Record {
	t.Helper()
	var got []Record
	for len(got) < want {
		recs, err := it.Next(ctx, 1000)
		if errors.Is(err, ErrShardClosed) {
			break
		}
		if err != nil {
			t.Fatalf("after %d of %d records: %v", len(got), want, err)
		}
		got = append(got, recs...)
	}
	recs, err := it.Next(ctx, 1000)
	if err != nil && !errors.Is(err, ErrShardClosed) {
		t.Fatal(err)
	}
	got = append(got, recs...)
	if len(got) != want {
		t.Fatalf("read %d records, want %d", len(got), want)
	}
	return got
}

func kinesisEntries(prefix string, n int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		key := fmt.Sprintf("%s-%05d", prefix, i)
		out[i] = Entry{PartitionKey: key, Data: []byte(`{"request_id":"` + key + `"}`)}
	}
	return out
}

// checkKinesisExactlyOnce checks that recs hold each entry once, with its data, and
// that sequence numbers increase within each shard.
func checkKinesisExactlyOnce(t *testing.T, recs []Record, want []Entry) {
	t.Helper()
	wantData := make(map[string]string, len(want))
	for _, e := range want {
		wantData[e.PartitionKey] = string(e.Data)
	}
	seen := make(map[string]bool, len(recs))
	lastSeq := map[string]string{}
	for _, r := range recs {
		d, ok := wantData[r.PartitionKey]
		switch {
		case !ok:
			t.Fatalf("unexpected record %q", r.PartitionKey)
		case seen[r.PartitionKey]:
			t.Fatalf("record %q read twice", r.PartitionKey)
		case d != string(r.Data):
			t.Fatalf("record %q data %q, want %q", r.PartitionKey, r.Data, d)
		}
		seen[r.PartitionKey] = true
		if prev, ok := lastSeq[r.ShardID]; ok && compareKinesisSeq(prev, r.SequenceNumber) >= 0 {
			t.Fatalf("shard %s: sequence %s after %s", r.ShardID, r.SequenceNumber, prev)
		}
		lastSeq[r.ShardID] = r.SequenceNumber
		if r.Arrival.IsZero() {
			t.Fatalf("record %q without arrival time", r.PartitionKey)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("read %d distinct records, want %d", len(seen), len(want))
	}
}

func TestKinesisProducerRoundTrip5000(t *testing.T) {
	k, _ := startKinesis(t, "usage", 2)
	// The standard SDK configuration, as the CLI builds it.
	for name, v := range k.Env() {
		t.Setenv(name, v)
	}
	ctx := kinesisCtx(t, 2*time.Minute)
	client, err := NewKinesisClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := kinesisEntries("req", 5000)
	if err := NewKinesisProducer(client, "usage", KinesisProducerOptions{}).Put(ctx, want); err != nil {
		t.Fatalf("put: %v", err)
	}

	src, err := OpenKinesis(ctx, client, "usage")
	if err != nil {
		t.Fatal(err)
	}
	shards, err := src.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) != 2 {
		t.Fatalf("shards = %v, want 2", shards)
	}
	var all []Record
	for _, sh := range shards {
		it, err := src.Open(ctx, sh.ID, Start{Kind: TrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		var recs []Record
		for idle := 0; idle < 3; {
			batch, err := it.Next(ctx, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(batch) == 0 {
				idle++
			}
			recs = append(recs, batch...)
		}
		if len(recs) == 0 {
			t.Fatalf("shard %s received nothing: partition keys not spread", sh.ID)
		}
		for _, r := range recs {
			if r.ShardID != sh.ID {
				t.Fatalf("record from %s labelled %s", sh.ID, r.ShardID)
			}
		}
		all = append(all, recs...)
		it.Close()
	}
	checkKinesisExactlyOnce(t, all, want)
}

// TestKinesisProducerOutage stops Kinesis under a producer: Put must give up by
// its deadline and name every entry, then succeed once Kinesis is back.
func TestKinesisProducerOutage(t *testing.T) {
	k, _ := startKinesis(t, "usage", 1)
	ctx := kinesisCtx(t, time.Minute)
	want := kinesisEntries("req", 20)

	k.Stop()
	p := NewKinesisProducer(k.Client(), "usage", KinesisProducerOptions{CallTimeout: time.Second})
	putCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	start := time.Now()
	err := p.Put(putCtx, want)
	cancel()
	var pe *PutError
	if !errors.As(err, &pe) || len(pe.Failed) != len(want) {
		t.Fatalf("Put during outage = %v, want a PutError naming all %d entries", err, len(want))
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Fatalf("Put took %v past its 3s deadline", took)
	}

	k.Restart()
	k.CreateStream(t, "usage", 1)
	if err := p.Put(ctx, pe.Failed); err != nil {
		t.Fatalf("Put after restart: %v", err)
	}
	src := openKinesisSource(t, ctx, k.Client(), "usage")
	it, err := src.Open(ctx, kinesisShard0, Start{Kind: TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	checkKinesisExactlyOnce(t, drainKinesis(t, ctx, it, len(want)), want)
}

// TestKinesisSourceFollowsSplit splits the only shard while records flow and
// reads the way a consumer must: a child only after its parents are drained.
func TestKinesisSourceFollowsSplit(t *testing.T) {
	_, c := startKinesis(t, "usage", 1)
	ctx := kinesisCtx(t, 2*time.Minute)
	p := NewKinesisProducer(c, "usage", KinesisProducerOptions{})
	before, after := kinesisEntries("before", 300), kinesisEntries("after", 300)
	if err := p.Put(ctx, before); err != nil {
		t.Fatal(err)
	}
	src := openKinesisSource(t, ctx, c, "usage")
	shards, err := src.Shards(ctx)
	if err != nil || len(shards) != 1 {
		t.Fatalf("shards = %v, %v", shards, err)
	}
	parent := shards[0].ID

	// Read part of the parent, then split it while the consumer is mid-shard.
	it, err := src.Open(ctx, parent, Start{Kind: TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	got, err := it.Next(ctx, 100)
	if err != nil || len(got) != 100 {
		t.Fatalf("first read: %d records, %v", len(got), err)
	}
	mid := new(big.Int).Lsh(big.NewInt(1), 127)
	if _, err := c.SplitShard(ctx, &kinesis.SplitShardInput{
		StreamName: aws.String("usage"), ShardToSplit: aws.String(parent), NewStartingHashKey: aws.String(mid.String()),
	}); err != nil {
		t.Fatal(err)
	}
	waitKinesisActive(t, ctx, c, "usage")
	if err := p.Put(ctx, after); err != nil {
		t.Fatal(err)
	}

	// The consumer loop: list shards, read every shard whose parents are done.
	done := map[string]bool{}
	iters := map[string]Iterator{parent: it}
	var order []string // "read <shard>" and "closed <shard>" as they happened
	for len(got) < 600 || len(done) < 1 {
		if ctx.Err() != nil {
			t.Fatalf("read %d of 600 records; done %v", len(got), done)
		}
		shards, err := src.Shards(ctx)
		if err != nil {
			t.Fatal(err)
		}
	next:
		for _, sh := range shards {
			if done[sh.ID] {
				continue
			}
			for _, p := range sh.Parents {
				if !done[p] {
					continue next
				}
			}
			if iters[sh.ID] == nil {
				if iters[sh.ID], err = src.Open(ctx, sh.ID, Start{Kind: TrimHorizon}); err != nil {
					t.Fatal(err)
				}
			}
			recs, err := iters[sh.ID].Next(ctx, 1000)
			if errors.Is(err, ErrShardClosed) {
				done[sh.ID] = true
				order = append(order, "closed "+sh.ID)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) > 0 {
				order = append(order, "read "+sh.ID)
			}
			got = append(got, recs...)
		}
	}
	checkKinesisExactlyOnce(t, got, append(before, after...))

	shards, _ = src.Shards(ctx)
	children := 0
	for _, sh := range shards {
		if len(sh.Parents) == 1 && sh.Parents[0] == parent {
			children++
		}
	}
	if len(shards) != 3 || children != 2 {
		t.Fatalf("shards after split = %+v, want the parent and two children of it", shards)
	}
	closedAt := -1
	for i, ev := range order {
		if ev == "closed "+parent {
			closedAt = i
		} else if ev != "read "+parent && closedAt < 0 {
			t.Fatalf("child read before the parent was drained: %v", order)
		}
	}
	if closedAt < 0 {
		t.Fatalf("parent never reported closed: %v", order)
	}
	for _, r := range got {
		if r.ShardID == parent && r.PartitionKey[:5] == "after" {
			t.Fatalf("record %s put after the split read from the parent", r.PartitionKey)
		}
	}
}

func waitKinesisActive(t *testing.T, ctx context.Context, c *kinesis.Client, stream string) {
	t.Helper()
	for {
		out, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("stream not active: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestKinesisSourceAtTimestamp(t *testing.T) {
	_, c := startKinesis(t, "usage", 1)
	ctx := kinesisCtx(t, time.Minute)
	p := NewKinesisProducer(c, "usage", KinesisProducerOptions{})
	src := openKinesisSource(t, ctx, c, "usage")
	shard := kinesisShard0

	old, recent := kinesisEntries("old", 50), kinesisEntries("recent", 50)
	if err := p.Put(ctx, old); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	at := time.Now()
	time.Sleep(50 * time.Millisecond)
	if err := p.Put(ctx, recent); err != nil {
		t.Fatal(err)
	}

	t.Run("between records", func(t *testing.T) {
		it, err := src.Open(ctx, shard, Start{Kind: AtTimestamp, Time: at})
		if err != nil {
			t.Fatal(err)
		}
		checkKinesisExactlyOnce(t, drainKinesis(t, ctx, it, 50), recent)
	})

	t.Run("after the newest record", func(t *testing.T) {
		time.Sleep(20 * time.Millisecond)
		start := time.Now()
		it, err := src.Open(ctx, shard, Start{Kind: AtTimestamp, Time: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("Open took %v", took)
		}
		if recs, err := it.Next(ctx, 1000); err != nil || len(recs) != 0 {
			t.Fatalf("Next = %d records, %v; want none yet", len(recs), err)
		}
		later := kinesisEntries("later", 10)
		if err := p.Put(ctx, later); err != nil {
			t.Fatal(err)
		}
		checkKinesisExactlyOnce(t, drainKinesis(t, ctx, it, 10), later)
	})

	t.Run("in the future", func(t *testing.T) {
		from := time.Now().Add(500 * time.Millisecond)
		it, err := src.Open(ctx, shard, Start{Kind: AtTimestamp, Time: from})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Put(ctx, kinesisEntries("early", 5)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(from) + 20*time.Millisecond)
		due := kinesisEntries("due", 5)
		if err := p.Put(ctx, due); err != nil {
			t.Fatal(err)
		}
		checkKinesisExactlyOnce(t, drainKinesis(t, ctx, it, 5), due)
	})
}

func TestKinesisSourceResumeAfterSequence(t *testing.T) {
	_, c := startKinesis(t, "usage", 1)
	ctx := kinesisCtx(t, time.Minute)
	want := kinesisEntries("req", 200)
	if err := NewKinesisProducer(c, "usage", KinesisProducerOptions{}).Put(ctx, want); err != nil {
		t.Fatal(err)
	}
	src := openKinesisSource(t, ctx, c, "usage")
	it, err := src.Open(ctx, kinesisShard0, Start{Kind: TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	var first []Record
	for len(first) < 120 {
		recs, err := it.Next(ctx, 120-len(first))
		if err != nil {
			t.Fatal(err)
		}
		first = append(first, recs...)
	}
	it.Close()
	checkpoint := first[119].SequenceNumber

	it, err = src.Open(ctx, kinesisShard0, Start{Kind: AfterSequence, Sequence: checkpoint})
	if err != nil {
		t.Fatal(err)
	}
	rest := drainKinesis(t, ctx, it, 80)
	if rest[0].PartitionKey != first[119].PartitionKey[:4]+"00120" {
		t.Fatalf("resumed at %s, want req-00120", rest[0].PartitionKey)
	}
	checkKinesisExactlyOnce(t, append(first, rest...), want)
}

// kplAggregate builds a KPL aggregated record the way the Kinesis Producer
// Library does: magic, AggregatedRecord protobuf, MD5 of the protobuf.
func kplAggregate(keys []string, recs []kplUserRecord) []byte {
	var body []byte
	index := map[string]uint64{}
	for i, k := range keys {
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendString(body, k)
		index[k] = uint64(i)
	}
	body = protowire.AppendTag(body, 2, protowire.BytesType) // explicit hash key table: skipped
	body = protowire.AppendString(body, "170141183460469231731687303715884105728")
	for _, r := range recs {
		var rb []byte
		rb = protowire.AppendTag(rb, 1, protowire.VarintType)
		rb = protowire.AppendVarint(rb, index[r.partitionKey])
		rb = protowire.AppendTag(rb, 3, protowire.BytesType)
		rb = protowire.AppendBytes(rb, r.data)
		rb = protowire.AppendTag(rb, 4, protowire.BytesType) // a tag: skipped
		rb = protowire.AppendBytes(rb, []byte{0x0a, 0x01, 'k'})
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendBytes(body, rb)
	}
	sum := md5.Sum(body)
	out := append([]byte{}, kplMagic...)
	out = append(out, body...)
	return append(out, sum[:]...)
}

func TestKinesisSourceDeaggregatesKPL(t *testing.T) {
	_, c := startKinesis(t, "usage", 1)
	ctx := kinesisCtx(t, time.Minute)
	agg := kplAggregate([]string{"req-a", "req-b"}, []kplUserRecord{
		{"req-a", []byte("a0")}, {"req-b", []byte("b1")}, {"req-a", []byte("a2")},
	})
	corrupt := append([]byte{}, agg...)
	corrupt[len(corrupt)-1] ^= 0xff // bad checksum: delivered whole
	for _, r := range []struct {
		key  string
		data []byte
	}{{"plain-1", []byte("p1")}, {"agg", agg}, {"corrupt", corrupt}, {"plain-2", []byte("p2")}} {
		if _, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("usage"), PartitionKey: aws.String(r.key), Data: r.data}); err != nil {
			t.Fatal(err)
		}
	}
	src := openKinesisSource(t, ctx, c, "usage")
	it, err := src.Open(ctx, kinesisShard0, Start{Kind: TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	got := drainKinesis(t, ctx, it, 6)
	want := []struct{ key, data string }{
		{"plain-1", "p1"}, {"req-a", "a0"}, {"req-b", "b1"}, {"req-a", "a2"}, {"corrupt", string(corrupt)}, {"plain-2", "p2"},
	}
	for i, w := range want {
		if got[i].PartitionKey != w.key || string(got[i].Data) != w.data {
			t.Fatalf("record %d = %s %q, want %s %q", i, got[i].PartitionKey, got[i].Data, w.key, w.data)
		}
		if i > 0 && compareKinesisSeq(got[i-1].SequenceNumber, got[i].SequenceNumber) >= 0 {
			t.Fatalf("sequence %s not after %s", got[i].SequenceNumber, got[i-1].SequenceNumber)
		}
	}
	base, _, _ := splitKinesisSeq(got[1].SequenceNumber)
	for i, r := range got[1:4] {
		if want := fmt.Sprintf("%s:%05d", base, i); r.SequenceNumber != want {
			t.Fatalf("user record %d sequence %s, want %s", i, r.SequenceNumber, want)
		}
	}
	if _, _, sub := splitKinesisSeq(got[4].SequenceNumber); sub {
		t.Fatalf("corrupt aggregate got sub-sequence %s", got[4].SequenceNumber)
	}

	// Resuming inside the aggregate continues with the next user record.
	for _, tc := range []struct {
		after string
		first string
		n     int
	}{
		{got[1].SequenceNumber, "b1", 4},
		{got[2].SequenceNumber, "a2", 3},
		{got[3].SequenceNumber, string(corrupt), 2},
		{got[0].SequenceNumber, "a0", 5},
	} {
		it, err := src.Open(ctx, kinesisShard0, Start{Kind: AfterSequence, Sequence: tc.after})
		if err != nil {
			t.Fatal(err)
		}
		rest := drainKinesis(t, ctx, it, tc.n)
		if string(rest[0].Data) != tc.first {
			t.Fatalf("after %s: first %q, want %q", tc.after, rest[0].Data, tc.first)
		}
	}
}

func TestKinesisCompareSeq(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1", "2", -1},
		{"9", "10", -1},
		{"49590338271490256608559692538361571095921575989136588898", "49590338271490256608559692538361571095921575989136588898", 0},
		{"49590338271490256608559692538361571095921575989136588898", "49590338271490256608559692538361571095921575989136588899", -1},
		{"100", "100:00000", -1},
		{"100:00000", "100:00001", -1},
		{"100:99999", "100:100000", -1},
		{"100:00007", "101", -1},
		{"999:00001", "1000", -1},
		{"00000000000000000042", "42", 0},
	} {
		if got := compareKinesisSeq(tc.a, tc.b); got != tc.want {
			t.Errorf("compare(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := compareKinesisSeq(tc.b, tc.a); got != -tc.want {
			t.Errorf("compare(%s, %s) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestKinesisDecodeKPLRejectsMalformed(t *testing.T) {
	good := kplAggregate([]string{"k"}, []kplUserRecord{{"k", []byte("d")}})
	if recs, err := decodeKPLAggregate(good); err != nil || len(recs) != 1 || string(recs[0].data) != "d" {
		t.Fatalf("decode = %v, %v", recs, err)
	}
	badIndex := kplAggregate(nil, []kplUserRecord{{"missing", []byte("d")}})
	for name, b := range map[string][]byte{
		"plain":        []byte(`{"request_id":"x"}`),
		"short":        kplMagic,
		"bad index":    badIndex,
		"truncated":    append(append([]byte{}, kplMagic...), func() []byte { b := []byte{0x1a, 0x10, 0x08}; s := md5.Sum(b); return append(b, s[:]...) }()...),
		"bad checksum": append(good[:len(good)-1:len(good)-1], good[len(good)-1]^1),
	} {
		if _, err := decodeKPLAggregate(b); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}
