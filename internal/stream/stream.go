// Package stream is the usage event stream: the embedded append-only log on disk
// (file://DIR) and Amazon Kinesis (kinesis://NAME) behind the same small interfaces.
// Records are opaque bytes here; decoding events is the aggregator's job.
package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// Record is one record read from a shard.
type Record struct {
	ShardID        string
	SequenceNumber string    // ordered within a shard; compare with CompareSeq
	PartitionKey   string    // the event's request_id
	Arrival        time.Time // when the stream accepted the record
	Data           []byte
}

// Entry is one record to append.
type Entry struct {
	PartitionKey string
	Data         []byte
}

// Producer appends records. Put returns only when every entry is durable in the
// stream, or an error when some may not be (the caller then keeps them).
type Producer interface {
	Put(ctx context.Context, entries []Entry) error
}

// Shard describes one shard; a child lists the parents that must be drained first.
type Shard struct {
	ID      string
	Parents []string
}

// StartKind says where reading a shard begins.
type StartKind int

const (
	TrimHorizon   StartKind = iota // the oldest record kept
	Latest                         // only records appended from now on
	AtTimestamp                    // the first record that arrived at or after Start.Time
	AfterSequence                  // the record after Start.Sequence (resume from a checkpoint)
)

// Start is a starting position within a shard.
type Start struct {
	Kind     StartKind
	Sequence string
	Time     time.Time
}

// Source is a stream that can be read shard by shard.
type Source interface {
	Shards(ctx context.Context) ([]Shard, error)
	Open(ctx context.Context, shardID string, from Start) (Iterator, error)
}

// Iterator reads one shard in order.
type Iterator interface {
	// Next returns up to max records. An empty batch with a nil error means
	// nothing new yet; ErrShardClosed means the shard is closed and fully read.
	Next(ctx context.Context, max int) ([]Record, error)
	Close() error
}

// CaughtUpper is implemented by iterators that can tell an empty read at the
// shard's tip from one that is still behind it: Kinesis answers empty pages
// while records wait further on (MillisBehindLatest > 0), and a throttled read
// returns nothing either. Readers that stop once a shard is idle must see
// CaughtUp before they do.
type CaughtUpper interface {
	// CaughtUp reports whether the last read reached the newest record the
	// shard held then and every record read has been returned. It is false
	// before the first read and after a read that failed or was throttled.
	CaughtUp() bool
}

// CaughtUp reports whether it is caught up with its shard. An iterator that
// does not implement CaughtUpper is taken at its word: an empty batch means
// nothing new.
func CaughtUp(it Iterator) bool {
	if c, ok := it.(CaughtUpper); ok {
		return c.CaughtUp()
	}
	return true
}

// ErrShardClosed reports that a closed shard (after a split or merge) has been read to its end.
var ErrShardClosed = errors.New("shard closed and fully read")

// ParentsRead says whether shard s may be read yet: every parent of s still
// listed has been read to its end (read reports that of a shard id). A parent
// no longer listed has expired from the stream and holds no records. Every
// reader takes shards in this order, so that a request's records after a
// reshard follow the ones before it.
func ParentsRead(s Shard, listed []Shard, read func(id string) bool) bool {
	for _, p := range s.Parents {
		if slices.ContainsFunc(listed, func(l Shard) bool { return l.ID == p }) && !read(p) {
			return false
		}
	}
	return true
}

// CheckEntry reports an entry no stream can ever take (a partition key of 0
// or more than MaxPartitionKeyLen characters, or a record over
// MaxRecordBytes): the limits of Kinesis, which the file stream keeps too.
// The error wraps ErrInvalidEntry. Retrying such an entry is futile.
func CheckEntry(e Entry) error {
	if n := utf8.RuneCountInString(e.PartitionKey); n == 0 || n > MaxPartitionKeyLen {
		return fmt.Errorf("%w: partition key of %d characters (1 to %d)", ErrInvalidEntry, n, MaxPartitionKeyLen)
	}
	if size := len(e.Data) + len(e.PartitionKey); size > MaxRecordBytes {
		return fmt.Errorf("%w: record of %d bytes (key %q) exceeds %d", ErrInvalidEntry, size, e.PartitionKey, MaxRecordBytes)
	}
	return nil
}
