package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// KinesisAPI is the part of the Kinesis client this package uses;
// *kinesis.Client satisfies it.
type KinesisAPI interface {
	KinesisPutAPI
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// NewKinesisClient returns a Kinesis client configured the standard SDK way:
// AWS_REGION, credentials, and AWS_ENDPOINT_URL_KINESIS (or AWS_ENDPOINT_URL)
// for a local server.
func NewKinesisClient(ctx context.Context, optFns ...func(*config.LoadOptions) error) (*kinesis.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx, optFns...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	return kinesis.NewFromConfig(cfg), nil
}

// KinesisSourceOptions tune reading. Zero values take the defaults.
type KinesisSourceOptions struct {
	CallTimeout        time.Duration // deadline of each Kinesis call; default 10s
	MinPollInterval    time.Duration // least time between GetRecords calls on one shard (5 per second allowed); default 200ms
	MaxBackoff         time.Duration // cap of the wait after a throttled read; default 5s
	AtTimestampTimeout time.Duration // deadline of the AT_TIMESTAMP GetShardIterator call; default 3s
}

func (o KinesisSourceOptions) withDefaults() KinesisSourceOptions {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.MinPollInterval <= 0 {
		o.MinPollInterval = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.AtTimestampTimeout <= 0 {
		o.AtTimestampTimeout = 3 * time.Second
	}
	return o
}

// KinesisSource reads a Kinesis stream shard by shard with GetRecords.
// Records that the Kinesis Producer Library aggregated are split back into
// the user records they hold; each gets the sequence number
// "SEQUENCE:SUBSEQUENCE" (SUBSEQUENCE zero-padded to 5 digits), which orders
// after SEQUENCE and before the next record (see compareKinesisSeq).
type KinesisSource struct {
	client KinesisAPI
	stream string
	opts   KinesisSourceOptions
}

var _ Source = (*KinesisSource)(nil)

// OpenKinesis returns a Source for streamName, checking that the stream exists.
func OpenKinesis(ctx context.Context, client KinesisAPI, streamName string) (*KinesisSource, error) {
	return OpenKinesisWithOptions(ctx, client, streamName, KinesisSourceOptions{})
}

// OpenKinesisWithOptions is OpenKinesis with tuning.
func OpenKinesisWithOptions(ctx context.Context, client KinesisAPI, streamName string, opts KinesisSourceOptions) (*KinesisSource, error) {
	s := &KinesisSource{client: client, stream: streamName, opts: opts.withDefaults()}
	callCtx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	if _, err := client.DescribeStreamSummary(callCtx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(streamName)}); err != nil {
		return nil, fmt.Errorf("opening Kinesis stream %s: %w", streamName, err)
	}
	return s, nil
}

// Shards lists every shard still within retention, open and closed, with its parents.
func (s *KinesisSource) Shards(ctx context.Context) ([]Shard, error) {
	var shards []Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(s.stream)}
	for {
		callCtx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
		out, err := s.client.ListShards(callCtx, in)
		cancel()
		if err != nil {
			var expired *types.ExpiredNextTokenException
			if errors.As(err, &expired) {
				shards, in = nil, &kinesis.ListShardsInput{StreamName: aws.String(s.stream)}
				continue
			}
			return nil, fmt.Errorf("listing shards of %s: %w", s.stream, err)
		}
		for _, sh := range out.Shards {
			shard := Shard{ID: aws.ToString(sh.ShardId)}
			for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
				if p != nil && *p != "" {
					shard.Parents = append(shard.Parents, *p)
				}
			}
			shards = append(shards, shard)
		}
		if out.NextToken == nil || *out.NextToken == "" {
			return shards, nil
		}
		// With a NextToken the stream name must be left out.
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

// Open starts reading shardID at from.
//
// AtTimestamp asks Kinesis for an AT_TIMESTAMP iterator. If that call does not
// answer within AtTimestampTimeout (a local Kinesis can stall when no record
// arrived at or after the time) the shard is read from TRIM_HORIZON and the
// records that arrived earlier are skipped; a time after now starts at LATEST
// with the same skipping. Either way no record at or after the time is lost.
//
// AfterSequence accepts sequence numbers of aggregated user records
// ("SEQUENCE:SUBSEQUENCE") and resumes with the next user record.
func (s *KinesisSource) Open(ctx context.Context, shardID string, from Start) (Iterator, error) {
	it := &kinesisIterator{src: s, shardID: shardID, start: from}
	if err := it.acquire(ctx, from); err != nil {
		return nil, err
	}
	return it, nil
}

type kinesisIterator struct {
	src     *KinesisSource
	shardID string
	start   Start

	iter   *string  // shard iterator for the next GetRecords; nil once the shard is closed and read
	closed bool     // no more GetRecords: the shard ended
	buf    []Record // records fetched but not yet returned
	last   string   // sequence number of the last Kinesis record fetched, the resume point

	skipThrough string    // drop records at or before this sequence number (resume inside an aggregate)
	skipBefore  time.Time // drop records that arrived before this, until one did not

	lastCall  time.Time
	throttled int

	// From the last GetRecords call: whether it succeeded, and how far behind
	// the shard's tip its page ended. An empty page says nothing by itself:
	// Kinesis hands them out while it is still behind.
	answered bool
	behind   int64
	full     bool // the last page was as large as asked: more may follow at once
}

var _ CaughtUpper = (*kinesisIterator)(nil)

// CaughtUp reports whether the last GetRecords call succeeded at the shard's
// tip (MillisBehindLatest 0) and every record it fetched has been returned.
// A server that leaves MillisBehindLatest out is taken to be at the tip.
func (it *kinesisIterator) CaughtUp() bool {
	if len(it.buf) > 0 {
		return false
	}
	return it.closed || (it.answered && it.behind == 0 && !it.full)
}

// Behind is how far the last read was behind the shard's tip
// (MillisBehindLatest), for metrics.
func (it *kinesisIterator) Behind() time.Duration {
	return time.Duration(it.behind) * time.Millisecond
}

func (it *kinesisIterator) acquire(ctx context.Context, from Start) error {
	it.skipThrough, it.skipBefore = "", time.Time{}
	switch from.Kind {
	case TrimHorizon:
		return it.getIterator(ctx, types.ShardIteratorTypeTrimHorizon, nil, nil)
	case Latest:
		return it.getIterator(ctx, types.ShardIteratorTypeLatest, nil, nil)
	case AfterSequence:
		if from.Sequence == "" {
			return fmt.Errorf("opening shard %s: AfterSequence without a sequence number", it.shardID)
		}
		base, _, isSub := splitKinesisSeq(from.Sequence)
		if isSub {
			it.skipThrough = from.Sequence
			return it.getIterator(ctx, types.ShardIteratorTypeAtSequenceNumber, aws.String(base), nil)
		}
		return it.getIterator(ctx, types.ShardIteratorTypeAfterSequenceNumber, aws.String(base), nil)
	case AtTimestamp:
		t := from.Time
		if t.After(time.Now()) {
			if err := it.getIterator(ctx, types.ShardIteratorTypeLatest, nil, nil); err != nil {
				return err
			}
			it.skipBefore = t
			return nil
		}
		probeCtx, cancel := context.WithTimeout(ctx, it.src.opts.AtTimestampTimeout)
		err := it.getIteratorCtx(probeCtx, types.ShardIteratorTypeAtTimestamp, nil, &t)
		stalled := err != nil && probeCtx.Err() != nil && ctx.Err() == nil
		cancel()
		var invalid *types.InvalidArgumentException
		switch {
		case err == nil:
			// Kinesis takes the time to the millisecond: records of the same
			// millisecond before it are dropped below.
		case stalled:
			if err := it.getIterator(ctx, types.ShardIteratorTypeTrimHorizon, nil, nil); err != nil {
				return err
			}
		case errors.As(err, &invalid) && strings.Contains(strings.ToLower(invalid.ErrorMessage()), "timestamp"):
			// The server's clock says the time is still ahead.
			if err := it.getIterator(ctx, types.ShardIteratorTypeLatest, nil, nil); err != nil {
				return err
			}
		default:
			return err
		}
		it.skipBefore = t
		return nil
	default:
		return fmt.Errorf("opening shard %s: unknown start kind %d", it.shardID, from.Kind)
	}
}

func (it *kinesisIterator) getIterator(ctx context.Context, typ types.ShardIteratorType, seq *string, ts *time.Time) error {
	callCtx, cancel := context.WithTimeout(ctx, it.src.opts.CallTimeout)
	defer cancel()
	return it.getIteratorCtx(callCtx, typ, seq, ts)
}

func (it *kinesisIterator) getIteratorCtx(ctx context.Context, typ types.ShardIteratorType, seq *string, ts *time.Time) error {
	out, err := it.src.client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
		StreamName:             aws.String(it.src.stream),
		ShardId:                aws.String(it.shardID),
		ShardIteratorType:      typ,
		StartingSequenceNumber: seq,
		Timestamp:              ts,
	})
	if err != nil {
		return fmt.Errorf("getting %s iterator for %s/%s: %w", typ, it.src.stream, it.shardID, err)
	}
	it.iter = out.ShardIterator
	it.closed = it.iter == nil
	return nil
}

// Next returns up to max records. Throttled reads wait with backoff and return
// an empty batch; an expired iterator is renewed after the last record read.
// Other errors are returned and Next may be called again. An empty batch may
// come while the shard still holds newer records: CaughtUp tells.
func (it *kinesisIterator) Next(ctx context.Context, max int) ([]Record, error) {
	if max <= 0 || max > 10000 {
		max = 10000
	}
	// Records skipped by a resumed or timestamp start return nothing; keep
	// reading while Kinesis still hands out records.
	for len(it.buf) == 0 && !it.closed {
		n, err := it.fetch(ctx, max)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
	}
	if len(it.buf) == 0 {
		if it.closed {
			return nil, ErrShardClosed
		}
		return nil, nil
	}
	n := min(max, len(it.buf))
	out := it.buf[:n:n]
	it.buf = it.buf[n:]
	return out, nil
}

// fetch makes one GetRecords call (renewing an expired iterator once) and
// returns how many Kinesis records it got.
func (it *kinesisIterator) fetch(ctx context.Context, max int) (int, error) {
	if wait := it.src.opts.MinPollInterval - time.Since(it.lastCall); wait > 0 {
		if err := sleepCtx(ctx, wait); err != nil {
			return 0, err
		}
	}
	it.answered = false
	for renewed := false; ; renewed = true {
		it.lastCall = time.Now()
		callCtx, cancel := context.WithTimeout(ctx, it.src.opts.CallTimeout)
		out, err := it.src.client.GetRecords(callCtx, &kinesis.GetRecordsInput{
			ShardIterator: it.iter,
			Limit:         aws.Int32(int32(max)),
		})
		cancel()
		if err != nil {
			var expired *types.ExpiredIteratorException
			if errors.As(err, &expired) && !renewed {
				from := it.start
				if it.last != "" {
					from = Start{Kind: AfterSequence, Sequence: it.last}
				}
				skipBefore := it.skipBefore
				if err := it.acquire(ctx, from); err != nil {
					return 0, err
				}
				if it.last != "" && !skipBefore.IsZero() {
					it.skipBefore = skipBefore
				}
				continue
			}
			if isKinesisThrottle(err) {
				it.throttled++
				return 0, sleepCtx(ctx, jitteredBackoff(it.throttled, it.src.opts.MinPollInterval, it.src.opts.MaxBackoff))
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("reading %s/%s: %w", it.src.stream, it.shardID, err)
		}
		it.throttled = 0
		it.answered, it.behind = true, aws.ToInt64(out.MillisBehindLatest)
		it.full = len(out.Records) >= max
		it.iter = out.NextShardIterator
		if it.iter == nil || *it.iter == "" {
			it.iter, it.closed = nil, true
		}
		for _, r := range out.Records {
			it.last = aws.ToString(r.SequenceNumber)
			for _, rec := range deaggregateKinesis(it.shardID, r) {
				if it.keep(rec) {
					it.buf = append(it.buf, rec)
				}
			}
		}
		return len(out.Records), nil
	}
}

// keep applies the skipping of a resumed or timestamp start; both end at the first record kept.
func (it *kinesisIterator) keep(r Record) bool {
	if it.skipThrough != "" {
		if compareKinesisSeq(r.SequenceNumber, it.skipThrough) <= 0 {
			return false
		}
		it.skipThrough = ""
	}
	if !it.skipBefore.IsZero() {
		if r.Arrival.Before(it.skipBefore) {
			return false
		}
		it.skipBefore = time.Time{}
	}
	return true
}

func (it *kinesisIterator) Close() error {
	it.buf, it.iter, it.closed = nil, nil, true
	return nil
}

// splitKinesisSeq splits "SEQUENCE:SUBSEQUENCE" into its parts.
func splitKinesisSeq(s string) (base, sub string, isSub bool) {
	base, sub, isSub = strings.Cut(s, ":")
	return base, sub, isSub
}

// compareKinesisSeq orders Kinesis sequence numbers (decimal strings of any
// length) and the "SEQUENCE:SUBSEQUENCE" numbers of aggregated user records:
// numerically by SEQUENCE, then a plain SEQUENCE before its sub-records, then
// numerically by SUBSEQUENCE.
func compareKinesisSeq(a, b string) int {
	ab, as, aSub := splitKinesisSeq(a)
	bb, bs, bSub := splitKinesisSeq(b)
	if c := compareDecimal(ab, bb); c != 0 {
		return c
	}
	switch {
	case aSub && bSub:
		return compareDecimal(as, bs)
	case aSub:
		return 1
	case bSub:
		return -1
	}
	return 0
}

// compareDecimal compares non-negative decimal integers written as strings.
func compareDecimal(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}
