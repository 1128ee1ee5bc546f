// Package collector moves usage records from the stream into the store: it reads
// every shard (following resharding, parents before children), hands records to
// the aggregator's pure core, writes the raw events and window partials as
// Parquet, and checkpoints a shard only after every output covering its records
// is durable. A crash therefore never loses a record; a redelivery can only
// repeat one, and the daily compaction counts each request_id once.
package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/schemas"
)

// Config wires a consumer.
type Config struct {
	Source stream.Source
	Store  store.Store
	// Consumer names this consumer's checkpoints (default "aggregator").
	Consumer string
	// Start is where a shard without a checkpoint is read from (default TRIM_HORIZON).
	Start stream.Start
	// BatchRecords caps the records per output batch (default 20,000).
	BatchRecords int
	// Poll is the pause between reads when every shard is caught up (default 1s).
	Poll       time.Duration
	Aggregator aggregator.Config
	Parquet    parquetio.Options
	Logger     *slog.Logger
	Now        func() time.Time
	// Progress, when set, is called after each durable batch with the run's
	// counts so far.
	Progress func(Stats)
}

// Stats counts what a run did.
type Stats struct {
	Records     int // records read from the stream
	Events      int // valid events written to the events table
	Duplicates  int // events already seen within the dedup horizon (kept raw, not summed again)
	Quarantined int // records written to quarantine
	// QuarantinedBy splits Quarantined by kind (aggregator.QuarantineMalformed, QuarantineInvalid).
	QuarantinedBy map[string]int
	// BehindMS is how far the slowest shard was behind the stream's tip at its
	// last read, in milliseconds (Kinesis' MillisBehindLatest; 0 for a file stream).
	BehindMS int64
	Objects  int // objects written to the store
	Batches  int
}

// Checkpoint is a shard's durable read position.
type Checkpoint struct {
	ShardID  string `json:"shard_id"`
	Sequence string `json:"sequence"`
	Closed   bool   `json:"closed"` // the shard was closed and read to its end
	// Pending is the last sequence number of the batch being written after
	// Sequence: its outputs may exist in part. A consumer resuming here ends
	// its first batch exactly at Pending, so it rebuilds that batch under the
	// same object names and replaces the outputs rather than adding others
	// that overlap them (which would count the records twice in usage_windows).
	Pending string    `json:"pending,omitempty"`
	Updated time.Time `json:"updated"`
}

// Consumer reads a stream into the store.
type Consumer struct {
	cfg   Config
	agg   *aggregator.Aggregator
	iters map[string]stream.Iterator
	cps   map[string]*Checkpoint
	carry map[string][]stream.Record // records read past a pending batch's end
	stats Stats
	// inflight are the batches being encoded or written, oldest first;
	// failed is the first of them that failed.
	inflight []*commitJob
	failed   error
	// decoders decode a batch's records in shares, one per goroutine
	// (see decode).
	decoders []*aggregator.RecordDecoder
}

// Validate reports the first thing wrong with cfg; zero values take defaults.
func (cfg *Config) Validate() error {
	switch {
	case cfg.Source == nil:
		return errors.New("collector: no stream to read (Config.Source)")
	case cfg.Store == nil:
		return errors.New("collector: no store to write (Config.Store)")
	case cfg.BatchRecords < 0:
		return fmt.Errorf("collector: BatchRecords %d is negative", cfg.BatchRecords)
	case cfg.Poll < 0:
		return fmt.Errorf("collector: Poll %s is negative", cfg.Poll)
	case cfg.Aggregator.Validate() != nil:
		return fmt.Errorf("collector: %w", cfg.Aggregator.Validate())
	case strings.ContainsAny(cfg.Consumer, "/\\") || cfg.Consumer == "." || cfg.Consumer == "..":
		return fmt.Errorf("collector: consumer name %q cannot name a folder", cfg.Consumer)
	}
	return nil
}

// New returns a consumer of a valid cfg; call Run.
func New(cfg Config) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Consumer == "" {
		cfg.Consumer = "aggregator"
	}
	if cfg.BatchRecords <= 0 {
		cfg.BatchRecords = 20000
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Consumer{cfg: cfg, agg: aggregator.New(cfg.Aggregator), iters: map[string]stream.Iterator{}, cps: map[string]*Checkpoint{}, carry: map[string][]stream.Record{}}, nil
}

// Run consumes until ctx ends, or, with untilIdle, until every shard is caught up.
func (c *Consumer) Run(ctx context.Context, untilIdle bool) (Stats, error) {
	defer func() {
		for _, it := range c.iters {
			it.Close()
		}
	}()
	for {
		progress, behind, err := c.round(ctx)
		if err != nil {
			c.wait()
			return c.stats, err
		}
		if progress || behind {
			// A shard that read nothing while still behind its tip is not
			// idle; its iterator paces the reads, so read on at once.
			continue
		}
		// Idle: the last batch is made durable before pausing or returning.
		if err := c.wait(); err != nil {
			return c.stats, err
		}
		// Every shard read nothing at its tip (CaughtUp): the stream is
		// drained, with no pause to confirm it.
		if untilIdle {
			return c.stats, nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return c.stats, nil
			}
			return c.stats, ctx.Err()
		case <-time.After(c.cfg.Poll):
		}
	}
}

// round reads one batch from every shard that is ready and reports whether
// anything moved, and whether some shard read nothing but is not caught up.
func (c *Consumer) round(ctx context.Context) (progress, behind bool, err error) {
	shards, err := c.cfg.Source.Shards(ctx)
	if err != nil {
		return false, false, fmt.Errorf("listing shards: %w", err)
	}
	for _, s := range shards {
		cp, err := c.checkpoint(ctx, s.ID)
		if err != nil {
			return false, false, err
		}
		if cp.Closed {
			continue
		}
		if !stream.ParentsRead(s, shards, func(id string) bool {
			cp, err := c.checkpoint(ctx, id)
			return err == nil && cp.Closed
		}) {
			continue
		}
		moved, err := c.readShard(ctx, s.ID, cp)
		if err != nil {
			return false, false, err
		}
		progress = progress || moved
		if it := c.iters[s.ID]; !moved && it != nil && !stream.CaughtUp(it) {
			behind = true
		}
	}
	return progress, behind, nil
}

func (c *Consumer) readShard(ctx context.Context, shardID string, cp *Checkpoint) (bool, error) {
	it := c.iters[shardID]
	if it == nil {
		start := c.cfg.Start
		if cp.Sequence != "" {
			start = stream.Start{Kind: stream.AfterSequence, Sequence: cp.Sequence}
		}
		var err error
		if it, err = c.cfg.Source.Open(ctx, shardID, start); err != nil {
			return false, fmt.Errorf("opening %s: %w", shardID, err)
		}
		c.iters[shardID] = it
	}
	recs, err := c.next(ctx, shardID, it, cp)
	if errors.Is(err, stream.ErrShardClosed) {
		if len(recs) > 0 {
			if err := c.process(ctx, shardID, recs); err != nil {
				return false, err
			}
		}
		cp.Closed = true
		if err := c.saveCheckpoint(ctx, cp); err != nil {
			return false, err
		}
		it.Close()
		delete(c.iters, shardID)
		delete(c.carry, shardID)
		c.cfg.Logger.Info("shard closed and drained", "shard", shardID)
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", shardID, err)
	}
	if len(recs) == 0 {
		return false, nil
	}
	return true, c.process(ctx, shardID, recs)
}

// next returns the shard's next batch. After a restart with a pending batch it
// reads until the batch ends exactly where the interrupted one did, however
// the stream splits its reads; records read past that end start the batch after.
func (c *Consumer) next(ctx context.Context, shardID string, it stream.Iterator, cp *Checkpoint) ([]stream.Record, error) {
	buf := c.carry[shardID]
	if cp.Pending == "" {
		if len(buf) == 0 {
			return it.Next(ctx, c.cfg.BatchRecords)
		}
		n := min(len(buf), c.cfg.BatchRecords)
		c.carry[shardID] = buf[n:]
		return buf[:n], nil
	}
	for {
		for i, r := range buf {
			if cmp := stream.CompareSeq(r.SequenceNumber, cp.Pending); cmp >= 0 {
				n := i
				if cmp == 0 {
					n++
				}
				if n == 0 {
					// The pending end is no longer in the stream: nothing to rebuild.
					cp.Pending = ""
					return c.next(ctx, shardID, it, cp)
				}
				c.carry[shardID] = buf[n:]
				return buf[:n], nil
			}
		}
		more, err := it.Next(ctx, c.cfg.BatchRecords)
		buf = append(buf, more...)
		if err != nil {
			// A closed shard ends the batch wherever its records end.
			c.carry[shardID] = nil
			return buf, err
		}
		if len(more) == 0 {
			c.carry[shardID] = buf
			return nil, nil
		}
	}
}

// process turns one batch of a shard into durable outputs, then checkpoints it.
// The checkpoint names the batch's end as pending before any output is
// written, so that a restart rebuilds this batch exactly (see Checkpoint.Pending).
//
// The records are decoded here, on every core (see decode); the rest runs on
// the batch's own goroutine while the next batch is read and decoded here:
// adding the decoded records to the aggregator (dedup and windows), in stream
// order, one batch after another; encoding the outputs, beside the batches
// before; then writing them. The store still sees one batch after another,
// in order: a batch's pending checkpoint is saved only once the batch before
// is durable and checkpointed, then its outputs, then its checkpoint. At most
// maxInFlight batches are being aggregated, encoded or written.
func (c *Consumer) process(ctx context.Context, shardID string, recs []stream.Record) error {
	now := c.cfg.Now()
	decoded := c.decode(shardID, recs, now)
	for len(c.inflight) >= maxInFlight {
		if err := c.waitOldest(); err != nil {
			return err
		}
	}
	if c.failed != nil {
		return c.failed
	}
	cp := c.cps[shardID]
	last := recs[len(recs)-1].SequenceNumber
	job := &commitJob{shardID: shardID, records: len(recs), through: last, added: make(chan struct{}), done: make(chan struct{})}
	if cp.Pending != last {
		pending := *cp
		pending.Pending = last
		job.pending = &pending
	}
	// The checkpoint as it will be once the outputs are durable; the job
	// saves this copy, the consumer's own moves on at once.
	cp.Sequence, cp.Pending = last, ""
	job.checkpoint = *cp
	c.stats.Records += len(recs)
	c.stats.BehindMS = 0
	for _, it := range c.iters {
		if b, ok := it.(interface{ Behind() time.Duration }); ok {
			c.stats.BehindMS = max(c.stats.BehindMS, b.Behind().Milliseconds())
		}
	}
	var prev *commitJob
	if n := len(c.inflight); n > 0 {
		prev = c.inflight[n-1]
	}
	c.inflight = append(c.inflight, job)
	name := BatchName(shardID, recs[0].SequenceNumber, last)
	arrived := arrivalOf(recs, now)
	go func() {
		defer close(job.done)
		// The aggregator takes the batches one after another, in order.
		if prev != nil {
			<-prev.added
		}
		c.agg.AddRows(decoded.rows)
		for _, q := range decoded.quarantined {
			c.agg.AddDecoded(&aggregator.Decoded{Quarantined: q})
		}
		b := c.agg.Flush()
		job.events, job.duplicates, job.quarantined = b.Events, b.Duplicates, len(b.Quarantined)
		job.quarantinedBy = map[string]int{}
		for _, q := range b.Quarantined {
			job.quarantinedBy[q.Kind]++
		}
		close(job.added)
		objs, err := EncodeBatch(b, name, c.cfg.Parquet, arrived)
		if prev != nil {
			<-prev.done
			if prev.err != nil {
				job.err = prev.err
				return
			}
		}
		if err != nil {
			job.err = err
			return
		}
		if job.pending != nil {
			if job.err = c.writeCheckpoint(ctx, job.pending); job.err != nil {
				return
			}
		}
		if job.err = PutObjects(ctx, c.cfg.Store, objs); job.err != nil {
			return
		}
		job.objects = len(objs)
		job.err = c.writeCheckpoint(ctx, &job.checkpoint)
	}()
	return nil
}

// maxInFlight bounds the batches being aggregated, encoded or written at
// once: enough to keep both cores busy while one batch waits for the store.
const maxInFlight = 2

// commitJob is a batch being aggregated, and its outputs and checkpoint
// encoded and written.
type commitJob struct {
	shardID string
	records int
	through string
	// added is closed once the batch is in the aggregator; the counts below
	// are set by then.
	added                           chan struct{}
	events, duplicates, quarantined int
	quarantinedBy                   map[string]int
	pending                         *Checkpoint // saved before the outputs; nil when already pending
	checkpoint                      Checkpoint  // saved after them
	objects                         int
	err                             error
	done                            chan struct{}
}

// wait returns once every batch in flight is durable and checkpointed, or
// with the first error; an error stays, the consumer stops at it.
func (c *Consumer) wait() error {
	for len(c.inflight) > 0 {
		if err := c.waitOldest(); err != nil {
			return err
		}
	}
	return c.failed
}

func (c *Consumer) waitOldest() error {
	job := c.inflight[0]
	<-job.done
	c.inflight = c.inflight[1:]
	c.count(job)
	if job.err != nil {
		if c.failed == nil {
			c.failed = job.err
		}
		// The later jobs fail with it; let them end before returning.
		for _, j := range c.inflight {
			<-j.done
			c.count(j)
		}
		c.inflight = nil
		return c.failed
	}
	c.stats.Objects += job.objects
	c.stats.Batches++
	if c.cfg.Progress != nil {
		c.cfg.Progress(c.stats)
	}
	c.cfg.Logger.Info("batch durable", "shard", job.shardID, "records", job.records, "quarantined", job.quarantined, "through", job.through)
	return nil
}

// count adds an ended job's aggregate counts to the run's: every batch read
// is counted, written or not, as Records is.
func (c *Consumer) count(job *commitJob) {
	c.stats.Events += job.events
	c.stats.Duplicates += job.duplicates
	c.stats.Quarantined += job.quarantined
	if c.stats.QuarantinedBy == nil {
		c.stats.QuarantinedBy = map[string]int{}
	}
	for k, n := range job.quarantinedBy {
		c.stats.QuarantinedBy[k] += n
	}
}

// arrivalOf is when a batch's first record reached the stream: the quarantine
// partition of the batch, the same on every retry of it.
func arrivalOf(recs []stream.Record, fallback time.Time) time.Time {
	if len(recs) > 0 && !recs[0].Arrival.IsZero() {
		return recs[0].Arrival
	}
	return fallback
}

// BatchName is the deterministic object name of a batch's outputs: a retry of the
// same records replaces the objects instead of adding new ones.
func BatchName(shardID, first, last string) string {
	return fmt.Sprintf("%s-%s-%s", shardID, first, last)
}

// WriteBatch writes a batch's raw events, window partials and quarantined records
// under name and returns how many objects it wrote. Quarantined records go to
// the partition of day arrived (when the batch's first record reached the
// stream), so that a retried batch replaces its quarantine object.
func WriteBatch(ctx context.Context, st store.Store, b aggregator.Batch, name string, opts parquetio.Options, arrived time.Time) (int, error) {
	objs, err := EncodeBatch(b, name, opts, arrived)
	if err != nil {
		return 0, err
	}
	if err := PutObjects(ctx, st, objs); err != nil {
		return 0, err
	}
	return len(objs), nil
}

// Object is one encoded output of a batch and its key.
type Object struct {
	Key  string
	Body []byte
}

// EncodeBatch encodes the objects WriteBatch writes, in the order it writes
// them; it touches no store.
func EncodeBatch(b aggregator.Batch, name string, opts parquetio.Options, arrived time.Time) ([]Object, error) {
	days := make([]string, 0, len(b.Days))
	for d := range b.Days {
		days = append(days, d)
	}
	sort.Strings(days)
	var objs []Object
	for _, d := range days {
		db := b.Days[d]
		if len(db.Events) > 0 {
			o, err := encodeParquet(schemas.Partition(schemas.EventsPrefix, d)+name+".parquet", db.Events, opts)
			if err != nil {
				return nil, err
			}
			objs = append(objs, o)
		}
		if len(db.Windows) > 0 {
			o, err := encodeParquet(schemas.Partition(schemas.WindowsPrefix, d)+name+".parquet", db.Windows, opts)
			if err != nil {
				return nil, err
			}
			objs = append(objs, o)
		}
	}
	if len(b.Quarantined) > 0 {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		for _, q := range b.Quarantined {
			if err := enc.Encode(q); err != nil {
				return nil, err
			}
		}
		key := schemas.Partition(schemas.QuarantinePrefix, arrived.UTC().Format(schemas.DayLayout)) + name + ".jsonl"
		objs = append(objs, Object{Key: key, Body: buf.Bytes()})
	}
	return objs, nil
}

// PutObjects writes objects in order.
func PutObjects(ctx context.Context, st store.Store, objs []Object) error {
	for _, o := range objs {
		if err := st.Put(ctx, o.Key, bytes.NewReader(o.Body)); err != nil {
			return fmt.Errorf("writing %s: %w", o.Key, err)
		}
	}
	return nil
}

func encodeParquet[T any](key string, rows []T, opts parquetio.Options) (Object, error) {
	var buf bytes.Buffer
	if err := parquetio.Write(&buf, rows, opts); err != nil {
		return Object{}, fmt.Errorf("encoding %s: %w", key, err)
	}
	return Object{Key: key, Body: buf.Bytes()}, nil
}

func (c *Consumer) checkpointKey(shardID string) string {
	return schemas.CheckpointPrefix + c.cfg.Consumer + "/" + shardID + ".json"
}

func (c *Consumer) checkpoint(ctx context.Context, shardID string) (*Checkpoint, error) {
	if cp := c.cps[shardID]; cp != nil {
		return cp, nil
	}
	cp := &Checkpoint{ShardID: shardID}
	data, err := store.ReadAll(ctx, c.cfg.Store, c.checkpointKey(shardID))
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("checkpoint of %s: %w", shardID, err)
	default:
		if err := json.Unmarshal(data, cp); err != nil {
			return nil, fmt.Errorf("checkpoint of %s is corrupt: %w", shardID, err)
		}
	}
	c.cps[shardID] = cp
	return cp, nil
}

// saveCheckpoint saves cp once the batch in flight is durable.
func (c *Consumer) saveCheckpoint(ctx context.Context, cp *Checkpoint) error {
	if err := c.wait(); err != nil {
		return err
	}
	return c.writeCheckpoint(ctx, cp)
}

func (c *Consumer) writeCheckpoint(ctx context.Context, cp *Checkpoint) error {
	cp.Updated = c.cfg.Now().UTC()
	data, _ := json.Marshal(cp)
	if err := c.cfg.Store.Put(ctx, c.checkpointKey(cp.ShardID), bytes.NewReader(data)); err != nil {
		return fmt.Errorf("writing checkpoint of %s: %w", cp.ShardID, err)
	}
	return nil
}
