package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/schemas"
)

// `meter put` is the bulk-load path. The stream's Put returns once a batch is
// durable (an fsync for a file stream), so batches are large; lines are read
// on one goroutine, checked on every core, and the batches appended in input
// order by one more, while the next ones are read and checked.
const (
	// putBatchBytes closes a batch at this many bytes of lines: a few fsyncs
	// per second of disk bandwidth, not one per few hundred lines.
	putBatchBytes = 4 << 20
	// putBatchEntries closes a batch at this many lines.
	putBatchEntries = 20_000
	// putBatches is how many batches exist at once (being filled, checked or
	// appended); each owns an arena of putBatchBytes plus one record.
	putBatches = 4
)

// putBatch is a batch of lines whose bytes live in one arena.
type putBatch struct {
	arena   []byte
	lines   []int // input line numbers
	ends    []int // end of each line in arena
	entries []stream.Entry
	events  int
	bad     []putMalformed
	ready   chan struct{} // closed once checked
}

type putMalformed = struct {
	line   int
	reason string
}

type putPipeline struct {
	ctx    context.Context
	p      stream.Producer
	origin string
	cur    *putBatch
	free   chan *putBatch
	check  chan *putBatch // to the checkers
	order  chan *putBatch // to the appender, in input order
	done   chan struct{}
	wg     sync.WaitGroup
	res    putResult
	err    atomic.Pointer[error] // the first failed append; later batches are not sent
}

func newPutPipeline(ctx context.Context, p stream.Producer, origin string) *putPipeline {
	pl := &putPipeline{ctx: ctx, p: p, origin: origin, free: make(chan *putBatch, putBatches),
		check: make(chan *putBatch, putBatches), order: make(chan *putBatch, putBatches), done: make(chan struct{})}
	for i := 0; i < putBatches; i++ {
		pl.free <- &putBatch{arena: make([]byte, 0, putBatchBytes+stream.MaxRecordBytes)}
	}
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		pl.wg.Add(1)
		go pl.checker()
	}
	go pl.appender()
	return pl
}

// checker parses each line of a batch and keys it: a valid event by its
// request_id, a malformed line by its origin.
func (pl *putPipeline) checker() {
	defer pl.wg.Done()
	var dec schemas.Decoder
	for b := range pl.check {
		start := 0
		for i, end := range b.ends {
			data := b.arena[start:end:end]
			start = end
			e, err := dec.Parse(data)
			key := e.RequestID
			if err != nil {
				key = aggregator.MalformedKey(pl.origin, b.lines[i])
				if len(key) > stream.MaxPartitionKeyLen {
					key = key[len(key)-stream.MaxPartitionKeyLen:]
				}
				b.bad = append(b.bad, putMalformed{b.lines[i], err.Error()})
			} else {
				b.events++
			}
			b.entries = append(b.entries, stream.Entry{PartitionKey: key, Data: data})
		}
		close(b.ready)
	}
}

// appender appends the checked batches in input order.
func (pl *putPipeline) appender() {
	defer close(pl.done)
	for b := range pl.order {
		<-b.ready
		if pl.failed() == nil {
			if err := pl.p.Put(pl.ctx, b.entries); err != nil {
				err = fmt.Errorf("appending to stream: %w", err)
				pl.err.Store(&err)
			} else {
				pl.res.events += b.events
				pl.res.malformed = append(pl.res.malformed, b.bad...)
			}
		}
		clear(b.entries)
		b.arena, b.lines, b.ends, b.entries, b.events, b.bad = b.arena[:0], b.lines[:0], b.ends[:0], b.entries[:0], 0, nil
		pl.free <- b
	}
}

func (pl *putPipeline) failed() error {
	if e := pl.err.Load(); e != nil {
		return *e
	}
	return nil
}

// add copies one non-blank line into the current batch, sending the batch on
// when it is full. It reports false once an append has failed.
func (pl *putPipeline) add(line int, data []byte) bool {
	if pl.failed() != nil {
		return false
	}
	if pl.cur != nil && (len(pl.cur.arena)+len(data) > cap(pl.cur.arena) || len(pl.cur.ends) == putBatchEntries) {
		pl.send()
	}
	if pl.cur == nil {
		pl.cur = <-pl.free
		pl.cur.ready = make(chan struct{})
	}
	pl.cur.arena = append(pl.cur.arena, data...)
	pl.cur.lines = append(pl.cur.lines, line)
	pl.cur.ends = append(pl.cur.ends, len(pl.cur.arena))
	if len(pl.cur.arena) >= putBatchBytes {
		pl.send()
	}
	return true
}

func (pl *putPipeline) send() {
	if pl.cur != nil && len(pl.cur.ends) > 0 {
		pl.order <- pl.cur
		pl.check <- pl.cur
		pl.cur = nil
	}
}

// close appends what is left, waits for every batch and returns the counts
// of what was appended and the first error.
func (pl *putPipeline) close() (putResult, error) {
	pl.send()
	close(pl.check)
	close(pl.order)
	<-pl.done
	pl.wg.Wait()
	return pl.res, pl.failed()
}
