package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// BatcherOptions tune a Batcher. Zero values take the defaults.
type BatcherOptions struct {
	MaxRecords int           // entries per Put; default 500
	MaxBytes   int           // data plus partition key bytes per Put; default 5 MiB
	MaxDelay   time.Duration // how long an entry waits for a fuller batch; default 100ms
	MaxPending int           // entries added but not yet delivered or failed; Add blocks beyond it; default 10000
	PutTimeout time.Duration // deadline of one Put including its retries; default 30s

	// OnFailure receives the entries a Put could not deliver, with the cause,
	// so they can be kept elsewhere (a spill file). It runs on the batcher's
	// goroutine: while it runs, nothing else is sent.
	OnFailure func(entries []Entry, err error)
}

func (o BatcherOptions) withDefaults() BatcherOptions {
	if o.MaxRecords <= 0 {
		o.MaxRecords = kinesisMaxBatchRecords
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = kinesisMaxBatchBytes
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 100 * time.Millisecond
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10000
	}
	if o.PutTimeout <= 0 {
		o.PutTimeout = 30 * time.Second
	}
	return o
}

// ErrBatcherClosed is returned by Add after Close.
var ErrBatcherClosed = errors.New("batcher closed")

// ErrUndelivered is wrapped by Flush and Close when entries were handed to OnFailure.
var ErrUndelivered = errors.New("entries not delivered")

// Batcher collects entries from many callers into batches and sends them with
// one Put at a time in the background. Memory is bounded: at most MaxPending
// entries are held, and Add waits for room.
type Batcher struct {
	p    Producer
	opts BatcherOptions

	slots    chan struct{} // one token per held entry
	in       chan Entry
	flushReq chan struct{}
	stop     chan struct{}
	finished chan struct{}

	mu      sync.Mutex
	added   uint64        // entries accepted by Add
	done    uint64        // entries delivered or handed to OnFailure, in Add order
	failed  int           // entries failed since the last Flush returned
	changed chan struct{} // closed and replaced whenever done grows
	closed  bool
}

// NewBatcher starts a batcher sending through p. Call Close to stop it.
func NewBatcher(p Producer, opts BatcherOptions) *Batcher {
	opts = opts.withDefaults()
	b := &Batcher{
		p:        p,
		opts:     opts,
		slots:    make(chan struct{}, opts.MaxPending),
		in:       make(chan Entry, opts.MaxPending),
		flushReq: make(chan struct{}, 1),
		stop:     make(chan struct{}),
		finished: make(chan struct{}),
		changed:  make(chan struct{}),
	}
	go b.run()
	return b
}

// Add queues e for sending. It blocks while MaxPending entries are held and
// returns ctx's error if ctx ends first; the entry is then not queued and
// stays the caller's to keep.
func (b *Batcher) Add(ctx context.Context, e Entry) error {
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.stop:
		return ErrBatcherClosed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		<-b.slots
		return ErrBatcherClosed
	}
	b.added++
	b.in <- e // never blocks: in has a place for every slot
	return nil
}

// Flush sends what is queued now and waits until every entry added before the
// call is delivered or handed to OnFailure. It returns an error wrapping
// ErrUndelivered if entries failed since the previous Flush returned, or ctx's
// error if ctx ends first.
func (b *Batcher) Flush(ctx context.Context) error {
	b.mu.Lock()
	target := b.added
	b.mu.Unlock()
	select {
	case b.flushReq <- struct{}{}:
	default: // a request is already pending; it covers this one
	}
	return b.wait(ctx, target)
}

func (b *Batcher) wait(ctx context.Context, target uint64) error {
	for {
		b.mu.Lock()
		if b.done >= target {
			n := b.failed
			b.failed = 0
			b.mu.Unlock()
			if n > 0 {
				return fmt.Errorf("%w: %d handed to OnFailure", ErrUndelivered, n)
			}
			return nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops accepting entries, sends everything queued and waits for it
// like Flush. The background goroutine ends even if ctx ends first.
func (b *Batcher) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.stop)
	}
	target := b.added
	b.mu.Unlock()
	return b.wait(ctx, target)
}

func (b *Batcher) run() {
	defer close(b.finished)
	var (
		batch []Entry
		bytes int
		timer = time.NewTimer(time.Hour)
	)
	timer.Stop()
	send := func() {
		if len(batch) == 0 {
			return
		}
		timer.Stop()
		b.send(batch)
		batch, bytes = nil, 0
	}
	take := func(e Entry) {
		s := kinesisEntrySize(e)
		if len(batch) > 0 && bytes+s > b.opts.MaxBytes {
			send()
		}
		if len(batch) == 0 {
			timer.Reset(b.opts.MaxDelay)
		}
		batch = append(batch, e)
		bytes += s
		if len(batch) >= b.opts.MaxRecords {
			send()
		}
	}
	drain := func() {
		for {
			select {
			case e := <-b.in:
				take(e)
			default:
				send()
				return
			}
		}
	}
	for {
		select {
		case e := <-b.in:
			take(e)
		case <-timer.C:
			send()
		case <-b.flushReq:
			drain()
		case <-b.stop:
			// Add queues nothing once closed is set, which happened before stop closed.
			drain()
			return
		}
	}
}

func (b *Batcher) send(batch []Entry) {
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.PutTimeout)
	err := b.p.Put(ctx, batch)
	cancel()
	var failed []Entry
	if err != nil {
		var pe *PutError
		if errors.As(err, &pe) {
			failed = pe.Failed
		} else {
			failed = batch
		}
		if len(failed) > 0 && b.opts.OnFailure != nil {
			b.opts.OnFailure(failed, err)
		}
	}
	b.mu.Lock()
	b.done += uint64(len(batch))
	b.failed += len(failed)
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
	for range batch {
		<-b.slots
	}
}
