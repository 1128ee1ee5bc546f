package stream

// Pure logic tests of the retry and batching paths, with Kinesis answers a
// local server cannot produce (throttling, per-record failures, expiry).

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// scriptedPut answers PutRecords with respond, recording the keys of every call.
type scriptedPut struct {
	mu      sync.Mutex
	calls   [][]string
	respond func(call int, keys []string) (failed map[string]string, err error) // key -> error code
}

func (s *scriptedPut) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, len(in.Records))
	for i, r := range in.Records {
		keys[i] = aws.ToString(r.PartitionKey)
	}
	call := len(s.calls)
	s.calls = append(s.calls, keys)
	failed, err := s.respond(call, keys)
	if err != nil {
		return nil, err
	}
	out := &kinesis.PutRecordsOutput{Records: make([]types.PutRecordsResultEntry, len(keys))}
	for i, k := range keys {
		if code, ok := failed[k]; ok {
			out.Records[i] = types.PutRecordsResultEntry{ErrorCode: aws.String(code), ErrorMessage: aws.String("rate exceeded for shard")}
			continue
		}
		out.Records[i] = types.PutRecordsResultEntry{SequenceNumber: aws.String(strconv.Itoa(call*1000 + i)), ShardId: aws.String(kinesisShard0)}
	}
	out.FailedRecordCount = aws.Int32(int32(len(failed)))
	return out, nil
}

var fastRetries = KinesisProducerOptions{BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

func TestKinesisProducerRetriesOnlyFailedRecords(t *testing.T) {
	want := kinesisEntries("req", 1200)
	failOnce := map[string]bool{}
	for i := 0; i < len(want); i += 7 {
		failOnce[want[i].PartitionKey] = true
	}
	accepted := map[string]int{}
	api := &scriptedPut{respond: func(call int, keys []string) (map[string]string, error) {
		if call == 0 {
			return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded")}
		}
		failed := map[string]string{}
		for _, k := range keys {
			if failOnce[k] {
				delete(failOnce, k)
				failed[k] = "ProvisionedThroughputExceededException"
				continue
			}
			accepted[k]++
		}
		return failed, nil
	}}
	if err := NewKinesisProducer(api, "usage", fastRetries).Put(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, c := range api.calls {
		sizes = append(sizes, len(c))
	}
	// Per batch of at most 500: the first attempt, then one with only its failed records.
	if fmt.Sprint(sizes) != "[500 500 72 500 71 200 29]" {
		t.Fatalf("call sizes %v", sizes)
	}
	for i, c := range api.calls {
		if i == 2 || i == 4 || i == 6 {
			for _, k := range c {
				n, _ := strconv.Atoi(strings.TrimPrefix(k, "req-"))
				if n%7 != 0 {
					t.Fatalf("call %d resent %s, which had been accepted", i, k)
				}
			}
		}
	}
	for _, e := range want {
		if accepted[e.PartitionKey] != 1 {
			t.Fatalf("%s accepted %d times", e.PartitionKey, accepted[e.PartitionKey])
		}
	}
}

func TestKinesisProducerGivesUpNamingFailedEntries(t *testing.T) {
	want := kinesisEntries("req", 10)
	huge := Entry{PartitionKey: "huge", Data: make([]byte, MaxRecordBytes)}
	noKey := Entry{Data: []byte("x")}
	api := &scriptedPut{respond: func(call int, keys []string) (map[string]string, error) {
		for _, k := range keys {
			if k == "huge" || k == "" {
				t.Errorf("invalid entry %q sent", k)
			}
		}
		return map[string]string{"req-00003": "InternalFailure"}, nil
	}}
	opts := fastRetries
	opts.MaxAttempts = 3
	err := NewKinesisProducer(api, "usage", opts).Put(context.Background(), append(want, huge, noKey))
	var pe *PutError
	if !errors.As(err, &pe) {
		t.Fatalf("Put = %v, want a PutError", err)
	}
	var failed []string
	for _, e := range pe.Failed {
		failed = append(failed, e.PartitionKey)
	}
	if fmt.Sprint(failed) != "[huge  req-00003]" {
		t.Fatalf("failed entries %q", failed)
	}
	if len(api.calls) != 3 {
		t.Fatalf("%d calls, want 3 (MaxAttempts)", len(api.calls))
	}
	if !strings.Contains(err.Error(), "InternalFailure") {
		t.Fatalf("error %q does not name the cause", err)
	}
	if err := CheckEntry(huge); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("oversize entry: %v", err)
	}
}

func TestKinesisProducerStopsOnPermanentError(t *testing.T) {
	api := &scriptedPut{respond: func(int, []string) (map[string]string, error) {
		return nil, &types.InvalidArgumentException{Message: aws.String("bad request")}
	}}
	err := NewKinesisProducer(api, "usage", fastRetries).Put(context.Background(), kinesisEntries("req", 3))
	var pe *PutError
	if !errors.As(err, &pe) || len(pe.Failed) != 3 || len(api.calls) != 1 {
		t.Fatalf("Put = %v after %d calls, want all 3 failed after 1 call", err, len(api.calls))
	}
}

func TestKinesisProducerHonoursDeadline(t *testing.T) {
	api := &scriptedPut{respond: func(int, []string) (map[string]string, error) {
		return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded")}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := NewKinesisProducer(api, "usage", KinesisProducerOptions{MaxAttempts: 1000}).Put(ctx, kinesisEntries("req", 700))
	var pe *PutError
	if !errors.As(err, &pe) || len(pe.Failed) != 700 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put = %v, want all 700 failed by the deadline", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Put returned %v after a 300ms deadline", took)
	}
}

func TestKinesisBatchesRespectLimits(t *testing.T) {
	sizes := func(batches [][]Entry) string {
		var s []int
		for _, b := range batches {
			s = append(s, len(b))
		}
		return fmt.Sprint(s)
	}
	if got := sizes(kinesisBatches(kinesisEntries("r", 1200), kinesisMaxBatchRecords, kinesisMaxBatchBytes)); got != "[500 500 200]" {
		t.Errorf("1200 small entries: %s", got)
	}
	big := make([]Entry, 20)
	for i := range big {
		big[i] = Entry{PartitionKey: fmt.Sprint(i), Data: make([]byte, 600<<10)}
	}
	if got := sizes(kinesisBatches(big, kinesisMaxBatchRecords, kinesisMaxBatchBytes)); got != "[8 8 4]" {
		t.Errorf("600 KiB entries: %s", got)
	}
	if got := sizes(kinesisBatches(nil, 500, 1)); got != "[]" {
		t.Errorf("no entries: %s", got)
	}
}

// gatedProducer blocks every Put until gate is closed, then answers with fail.
type gatedProducer struct {
	gate chan struct{}
	fail func(batch []Entry) error
	mu   sync.Mutex
	puts [][]Entry
}

func (g *gatedProducer) Put(ctx context.Context, batch []Entry) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return &PutError{Failed: batch, Err: ctx.Err()}
	}
	g.mu.Lock()
	g.puts = append(g.puts, batch)
	g.mu.Unlock()
	if g.fail != nil {
		return g.fail(batch)
	}
	return nil
}

// scriptedRead serves one open shard of records "1000".."1009" and can answer
// a chosen GetRecords call with an error, or with an empty page that is still
// behind the tip (as Kinesis does while it walks a shard's older data).
type scriptedRead struct {
	KinesisAPI
	records   []string
	errOnCall map[int]error
	lagOnCall map[int]int64 // call -> MillisBehindLatest of an empty page
	calls     int
	iterators []string // type and position of every GetShardIterator call
}

func (s *scriptedRead) GetShardIterator(_ context.Context, in *kinesis.GetShardIteratorInput, _ ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	pos := 0
	switch in.ShardIteratorType {
	case types.ShardIteratorTypeAfterSequenceNumber:
		pos = s.index(aws.ToString(in.StartingSequenceNumber)) + 1
	case types.ShardIteratorTypeAtSequenceNumber:
		pos = s.index(aws.ToString(in.StartingSequenceNumber))
	}
	s.iterators = append(s.iterators, fmt.Sprintf("%s %s", in.ShardIteratorType, aws.ToString(in.StartingSequenceNumber)))
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(strconv.Itoa(pos))}, nil
}

func (s *scriptedRead) index(seq string) int {
	for i, r := range s.records {
		if r == seq {
			return i
		}
	}
	return -1
}

func (s *scriptedRead) GetRecords(_ context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	call := s.calls
	s.calls++
	if err := s.errOnCall[call]; err != nil {
		return nil, err
	}
	pos, _ := strconv.Atoi(aws.ToString(in.ShardIterator))
	if lag, ok := s.lagOnCall[call]; ok {
		return &kinesis.GetRecordsOutput{NextShardIterator: in.ShardIterator, MillisBehindLatest: aws.Int64(lag)}, nil
	}
	end := min(pos+int(aws.ToInt32(in.Limit)), len(s.records))
	behind := int64(len(s.records)-end) * 1000
	out := &kinesis.GetRecordsOutput{NextShardIterator: aws.String(strconv.Itoa(end)), MillisBehindLatest: &behind}
	now := time.Now()
	for _, seq := range s.records[pos:end] {
		out.Records = append(out.Records, types.Record{SequenceNumber: aws.String(seq), PartitionKey: aws.String("k" + seq), Data: []byte(seq), ApproximateArrivalTimestamp: &now})
	}
	return out, nil
}

func TestKinesisIteratorRenewsExpiredAndWaitsOutThrottling(t *testing.T) {
	api := &scriptedRead{errOnCall: map[int]error{
		1: &types.ExpiredIteratorException{Message: aws.String("Iterator expired")},
		3: &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded")},
	}}
	for i := 0; i < 10; i++ {
		api.records = append(api.records, strconv.Itoa(1000+i))
	}
	src := &KinesisSource{client: api, stream: "usage", opts: KinesisSourceOptions{MinPollInterval: time.Millisecond}.withDefaults()}
	ctx := context.Background()
	it, err := src.Open(ctx, kinesisShard0, Start{Kind: TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var empties int
	for len(got) < 10 {
		recs, err := it.Next(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			empties++
		}
		for _, r := range recs {
			got = append(got, r.SequenceNumber)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(api.records) {
		t.Fatalf("read %v", got)
	}
	if empties != 1 {
		t.Fatalf("%d empty reads, want 1 (the throttled one)", empties)
	}
	if fmt.Sprint(api.iterators) != "[TRIM_HORIZON  AFTER_SEQUENCE_NUMBER 1002]" {
		t.Fatalf("iterators %q", api.iterators)
	}
}

func TestKinesisIteratorCaughtUpOnlyAtTheTip(t *testing.T) {
	// Empty pages still behind the tip, a throttled read, then the records.
	api := &scriptedRead{
		lagOnCall: map[int]int64{0: 86_400_000, 1: 3_600_000, 2: 60_000, 4: 1_000},
		errOnCall: map[int]error{3: &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded")}},
	}
	for i := 0; i < 10; i++ {
		api.records = append(api.records, strconv.Itoa(1000+i))
	}
	src := &KinesisSource{client: api, stream: "usage", opts: KinesisSourceOptions{MinPollInterval: time.Millisecond}.withDefaults()}
	ctx := context.Background()
	it, err := src.Open(ctx, kinesisShard0, Start{Kind: TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	cu := it.(CaughtUpper)
	if cu.CaughtUp() {
		t.Fatal("caught up before the first read")
	}
	var log []string
	var got []string
	for i := 0; i < 12; i++ {
		recs, err := it.Next(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			got = append(got, r.SequenceNumber)
		}
		log = append(log, fmt.Sprintf("%d:%v", len(recs), cu.CaughtUp()))
	}
	if fmt.Sprint(got) != fmt.Sprint(api.records) {
		t.Fatalf("read %v", got)
	}
	// Five empty reads behind the tip (four lagging pages, one throttled),
	// then 4+4+2 records, caught up only once the last page said so.
	want := "[0:false 0:false 0:false 0:false 0:false 4:false 4:false 2:true 0:true 0:true 0:true 0:true]"
	if fmt.Sprint(log) != want {
		t.Fatalf("reads (records:caught up)\n%v, want\n%s", log, want)
	}
	if !CaughtUp(it) {
		t.Fatal("stream.CaughtUp disagrees with the iterator")
	}
}

func TestKinesisIteratorNotCaughtUpWithRecordsUnreturned(t *testing.T) {
	api := &scriptedRead{records: []string{"1000", "1001", "1002"}}
	src := &KinesisSource{client: api, stream: "usage", opts: KinesisSourceOptions{MinPollInterval: time.Millisecond}.withDefaults()}
	ctx := context.Background()
	it, err := src.Open(ctx, kinesisShard0, Start{Kind: TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	// One GetRecords reaches the tip (as one KPL aggregate can fetch more user
	// records than Next returns), then Next hands out 2 of its 3 records.
	if n, err := it.(*kinesisIterator).fetch(ctx, 10); err != nil || n != 3 || CaughtUp(it) {
		t.Fatalf("fetch = %d, %v; caught up %v; want 3 buffered, not caught up", n, err, CaughtUp(it))
	}
	if recs, err := it.Next(ctx, 2); err != nil || len(recs) != 2 || CaughtUp(it) {
		t.Fatalf("Next = %d records, %v; caught up %v; want 2, not caught up", len(recs), err, CaughtUp(it))
	}
	if api.calls != 1 {
		t.Fatalf("%d GetRecords calls, want 1", api.calls)
	}
	if recs, err := it.Next(ctx, 2); err != nil || len(recs) != 1 || !CaughtUp(it) {
		t.Fatalf("Next = %d records, %v; caught up %v; want 1, caught up", len(recs), err, CaughtUp(it))
	}
}

func TestFileIteratorCaughtUpAtTheEndOfTheLog(t *testing.T) {
	fs, err := OpenFile(t.TempDir(), FileOptions{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	ctx := context.Background()
	if err := fs.Put(ctx, kinesisEntries("req", 5)); err != nil {
		t.Fatal(err)
	}
	shards, _ := fs.Shards(ctx)
	it, err := fs.Open(ctx, shards[0].ID, Start{Kind: TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if CaughtUp(it) {
		t.Fatal("caught up before the first read")
	}
	if recs, _ := it.Next(ctx, 3); len(recs) != 3 || CaughtUp(it) {
		t.Fatalf("3 of 5 read: %d records, caught up %v", len(recs), CaughtUp(it))
	}
	if recs, _ := it.Next(ctx, 3); len(recs) != 2 || !CaughtUp(it) {
		t.Fatalf("the rest read: %d records, caught up %v", len(recs), CaughtUp(it))
	}
}
