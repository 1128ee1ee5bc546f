package stream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
)

// Kinesis service limits for PutRecords.
const (
	kinesisMaxBatchRecords = 500
	kinesisMaxBatchBytes   = 5 << 20 // data plus partition keys of one request
)

// KinesisPutAPI is the part of the Kinesis client a KinesisProducer uses;
// *kinesis.Client satisfies it.
type KinesisPutAPI interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
}

// KinesisProducerOptions tune retries. Zero values take the defaults.
type KinesisProducerOptions struct {
	MaxAttempts int           // PutRecords calls per batch before giving up; default 10
	BaseBackoff time.Duration // first retry waits up to this; default 100ms
	MaxBackoff  time.Duration // cap of the jittered exponential backoff; default 5s
	CallTimeout time.Duration // deadline of one PutRecords call; default 10s
}

func (o KinesisProducerOptions) withDefaults() KinesisProducerOptions {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Second
	}
	return o
}

// KinesisProducer appends entries to a Kinesis stream with PutRecords.
type KinesisProducer struct {
	client KinesisPutAPI
	stream string
	opts   KinesisProducerOptions
}

var _ Producer = (*KinesisProducer)(nil)

// NewKinesisProducer returns a producer for streamName.
// A *kinesis.Client whose options allow it puts by the direct path
// (kinesis_direct.go).
func NewKinesisProducer(client KinesisPutAPI, streamName string, opts KinesisProducerOptions) *KinesisProducer {
	if c, ok := client.(*kinesis.Client); ok {
		if d, _ := newDirectPut(c, noSDKRetries); d != nil {
			client = d
		}
	}
	return &KinesisProducer{client: client, stream: streamName, opts: opts.withDefaults()}
}

// ErrInvalidEntry reports an entry Kinesis can never accept (too large, bad partition key).
var ErrInvalidEntry = errors.New("entry not acceptable to Kinesis")

// PutError lists the entries a Put could not deliver, so the caller can keep them.
type PutError struct {
	Failed []Entry
	Err    error // the last cause seen
}

func (e *PutError) Error() string {
	return fmt.Sprintf("%d entries not delivered: %v", len(e.Failed), e.Err)
}

func (e *PutError) Unwrap() error { return e.Err }

// Put sends entries in PutRecords batches, retrying throttled calls and failed
// records with jittered exponential backoff. It returns nil only when Kinesis
// accepted every entry; otherwise a *PutError naming the entries that may not
// be in the stream, once ctx ends or a batch has used MaxAttempts calls.
// Entries in a batch may be reordered by retries; each carries its own key.
func (p *KinesisProducer) Put(ctx context.Context, entries []Entry) error {
	var failed []Entry
	var lastErr error
	valid := make([]Entry, 0, len(entries))
	for _, e := range entries {
		if err := CheckEntry(e); err != nil {
			failed = append(failed, e)
			lastErr = err
			continue
		}
		valid = append(valid, e)
	}
	for _, batch := range kinesisBatches(valid, kinesisMaxBatchRecords, kinesisMaxBatchBytes) {
		if err := ctx.Err(); err != nil {
			failed = append(failed, batch...)
			lastErr = err
			continue
		}
		rest, err := p.putBatch(ctx, batch)
		if err != nil {
			failed = append(failed, rest...)
			lastErr = err
		}
	}
	if len(failed) > 0 {
		return &PutError{Failed: failed, Err: lastErr}
	}
	return nil
}

// putBatch delivers one batch; on failure it returns the entries not accepted.
func (p *KinesisProducer) putBatch(ctx context.Context, batch []Entry) ([]Entry, error) {
	pending := batch
	var lastErr error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if attempt >= p.opts.MaxAttempts {
				return pending, fmt.Errorf("putting records to %s: gave up after %d attempts: %w", p.stream, attempt, lastErr)
			}
			if err := sleepCtx(ctx, jitteredBackoff(attempt-1, p.opts.BaseBackoff, p.opts.MaxBackoff)); err != nil {
				return pending, fmt.Errorf("putting records to %s: %w (last error: %v)", p.stream, err, lastErr)
			}
		}
		in := &kinesis.PutRecordsInput{StreamName: aws.String(p.stream), Records: make([]types.PutRecordsRequestEntry, len(pending))}
		for i, e := range pending {
			data := e.Data
			if data == nil {
				data = []byte{} // Kinesis takes an empty record; the SDK refuses a missing one
			}
			in.Records[i] = types.PutRecordsRequestEntry{Data: data, PartitionKey: aws.String(e.PartitionKey)}
		}
		callCtx, cancel := context.WithTimeout(ctx, p.opts.CallTimeout)
		// This loop is the only retry policy of PutRecords: it alone sees
		// per-record failures, so the SDK's retryer is off for the call.
		out, err := p.client.PutRecords(callCtx, in, noSDKRetries)
		cancel()
		if err != nil {
			lastErr = err
			if !retryableKinesisError(err) {
				return pending, fmt.Errorf("putting records to %s: %w", p.stream, err)
			}
			continue
		}
		if len(out.Records) != len(pending) {
			lastErr = fmt.Errorf("PutRecords answered %d results for %d records", len(out.Records), len(pending))
			continue
		}
		var next []Entry
		for i, r := range out.Records {
			if r.ErrorCode != nil {
				next = append(next, pending[i])
				lastErr = fmt.Errorf("record rejected: %s: %s", aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage))
			}
		}
		if len(next) == 0 {
			return nil, nil
		}
		pending = next
	}
}

func kinesisEntrySize(e Entry) int { return len(e.Data) + len(e.PartitionKey) }

// kinesisBatches splits entries into consecutive batches within the record and byte limits.
func kinesisBatches(entries []Entry, maxRecords, maxBytes int) [][]Entry {
	var out [][]Entry
	start, size := 0, 0
	for i, e := range entries {
		s := kinesisEntrySize(e)
		if i > start && (i-start >= maxRecords || size+s > maxBytes) {
			out = append(out, entries[start:i])
			start, size = i, 0
		}
		size += s
	}
	if start < len(entries) {
		out = append(out, entries[start:])
	}
	return out
}

// retryableKinesisError says whether a failed call may succeed if repeated:
// throttling, server faults, timeouts and network errors may; a rejected
// request (bad argument, access denied, KMS key unusable) may not.
// ResourceNotFound is retried too: a stream being re-created comes back.
func retryableKinesisError(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "InvalidArgumentException", "ValidationException", "AccessDeniedException",
			"KMSAccessDeniedException", "KMSDisabledException", "KMSInvalidStateException",
			"KMSNotFoundException", "KMSOptInRequired", "UnrecognizedClientException",
			"InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken":
			return false
		}
	}
	return true
}

// isKinesisThrottle reports a read or write limit being exceeded.
func isKinesisThrottle(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "ProvisionedThroughputExceededException", "KMSThrottlingException", "LimitExceededException", "ThrottlingException":
			return true
		}
	}
	return false
}

// jitteredBackoff is "equal jitter": with d = min(max, base*2^attempt), a uniform
// wait in [d/2, d], so retries spread out yet still back off.
func jitteredBackoff(attempt int, base, max time.Duration) time.Duration {
	d := base
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// noSDKRetries turns the SDK's retryer off for one call whose caller retries
// itself, so that one policy (and one backoff) governs each call.
func noSDKRetries(o *kinesis.Options) { o.Retryer = aws.NopRetryer{} }
