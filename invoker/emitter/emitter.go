// Package emitter makes the invoker's usage events durable: it puts them to
// the stream in group-committed batches and, when the stream cannot take them,
// fsyncs them to a spill store and re-drives them later. Emit returns only
// once its event is durable in one or the other, so no answered call loses
// its usage event.
package emitter

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/schemas"
)

// Config configures an Emitter.
type Config struct {
	// Producer is the usage stream (Kinesis or the embedded file stream).
	Producer stream.Producer
	// SpillDir holds the spill files: JSON lines of events the stream could not
	// take, written and fsynced before a call is answered. Required unless
	// Spill is set.
	SpillDir string
	// Spill is the spill as an object store (an S3 prefix in Lambda, where a
	// local disk does not outlive the instance): one object of JSON lines per
	// spilled batch, written before a call is answered. It replaces SpillDir.
	// Several emitters may share one; each re-drives whatever it finds there.
	Spill store.Store
	// PutTimeout bounds one Put to the stream before events spill (default 2s).
	PutTimeout time.Duration
	// RedriveInterval is how often spilled events are re-sent (default 5s).
	RedriveInterval time.Duration
	// ProbeInterval is how often, while events can be recorded nowhere (or
	// the disk is full), the emitter looks for room again (default 1s).
	ProbeInterval time.Duration
	// MaxBatch is the largest group commit (default 500, Kinesis' PutRecords limit).
	MaxBatch int
	// ReserveBytes is disk space the emitter holds in SpillDir as a reserve
	// file (default 16 MiB; negative: none). When the disk fills and a spill
	// write fails, the reserve is released so the events of calls already
	// served still land, and Ready turns false so the invoker refuses new
	// calls before they reach Bedrock, until the reserve can be held again
	// with as much space to spare. Only with SpillDir.
	ReserveBytes int64
	Logger       *slog.Logger
}

// DefaultReserveBytes is Config.ReserveBytes' default: room for some 20,000
// usage events of calls in flight when the disk fills.
const DefaultReserveBytes = 16 << 20

// ReserveFile is the name of the reserve file in the spill directory.
const ReserveFile = "reserve.bin"

// Emitter hands usage events to the stream. Emit returns only when the event is
// durable in the stream or in the local spill; concurrent Emits are committed
// together in one Put. While the stream is unreachable events go straight to
// the spill, and a background re-driver sends them once it is back. An event is
// re-sent only whole and under its own request_id (the partition key), so a
// duplicate is always recognizable downstream.
type Emitter struct {
	cfg   Config
	log   *slog.Logger
	queue chan *pending

	degraded atomic.Bool
	// lowDisk: the disk filled and the reserve was spent on the events of
	// calls in flight; no new call should start until it is held again.
	lowDisk atomic.Bool
	reserve string // the reserve file's path; "" without one

	// Running counts, for metrics.
	emitted, spilled, redriven, lost, deadLettered atomic.Int64
	failing                                        atomic.Bool // the last batch was neither streamed nor spilled

	spill    store.Store
	instance string     // distinguishes this emitter's spill objects from others'
	spillMu  sync.Mutex // orders spilling against the re-driver's final check
	seq      int

	stop     chan struct{}
	wg       sync.WaitGroup
	closeMu  sync.RWMutex
	closed   bool
	redriveM sync.Mutex
}

type pending struct {
	entry stream.Entry
	done  chan error
}

// ErrClosed is returned by Emit after Close.
var ErrClosed = errors.New("usage emitter closed")

// Validate reports the first thing wrong with cfg; zero values take defaults.
func (cfg *Config) Validate() error {
	switch {
	case cfg.Producer == nil:
		return errors.New("emitter: no stream producer")
	case cfg.Spill == nil && cfg.SpillDir == "":
		return errors.New("emitter: no spill store or directory")
	case cfg.PutTimeout < 0 || cfg.RedriveInterval < 0 || cfg.ProbeInterval < 0 || cfg.MaxBatch < 0:
		return errors.New("emitter: PutTimeout, RedriveInterval, ProbeInterval and MaxBatch cannot be negative")
	}
	return nil
}

// New starts an emitter and its re-driver. Spill files left by an
// earlier process are re-driven too.
func New(cfg Config) (*Emitter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	spill := cfg.Spill
	if spill == nil {
		fs, err := store.OpenFile(cfg.SpillDir)
		if err != nil {
			return nil, fmt.Errorf("emitter: spill directory: %w", err)
		}
		spill = fs
	}
	if cfg.PutTimeout <= 0 {
		cfg.PutTimeout = 2 * time.Second
	}
	if cfg.RedriveInterval <= 0 {
		cfg.RedriveInterval = 5 * time.Second
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = time.Second
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	if cfg.ReserveBytes == 0 {
		cfg.ReserveBytes = DefaultReserveBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var inst [4]byte
	rand.Read(inst[:])
	e := &Emitter{cfg: cfg, log: log, queue: make(chan *pending, 4*cfg.MaxBatch), stop: make(chan struct{}),
		spill: spill, instance: hex.EncodeToString(inst[:])}
	if cfg.Spill == nil && cfg.ReserveBytes > 0 {
		e.reserve = filepath.Join(cfg.SpillDir, ReserveFile)
		if err := e.holdReserve(); err != nil {
			log.Error("the disk has no room for the usage spill's reserve; refusing calls until it has", "dir", cfg.SpillDir, "err", err)
			e.lowDisk.Store(true)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	segs, err := e.segments(ctx)
	cancel()
	if err != nil {
		// Not fatal: the re-driver looks again.
		log.Warn("listing the usage spill", "err", err)
		e.degraded.Store(true)
	}
	if len(segs) > 0 {
		e.degraded.Store(true)
	}
	e.wg.Add(2)
	go e.commitLoop()
	go e.redriveLoop()
	return e, nil
}

// Emit records ev and returns once it is durable in the stream or the spill.
// Cancelling ctx does not abandon the event: a served call must be metered.
func (e *Emitter) Emit(_ context.Context, ev *schemas.Event) error {
	data := ev.AppendJSON(make([]byte, 0, 384))
	p := &pending{entry: stream.Entry{PartitionKey: ev.RequestID, Data: data}, done: make(chan error, 1)}
	e.closeMu.RLock()
	if e.closed {
		e.closeMu.RUnlock()
		return ErrClosed
	}
	e.queue <- p
	e.closeMu.RUnlock()
	return <-p.done
}

// Close drains queued events and stops the re-driver after one last attempt.
// Events still spilled stay there for the next start.
func (e *Emitter) Close() error {
	e.closeMu.Lock()
	if e.closed {
		e.closeMu.Unlock()
		return nil
	}
	e.closed = true
	close(e.queue)
	e.closeMu.Unlock()
	close(e.stop)
	e.wg.Wait()
	if e.degraded.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*e.cfg.PutTimeout)
		e.Redrive(ctx)
		cancel()
	}
	return nil
}

// Spilled reports whether events are waiting in the spill.
func (e *Emitter) Spilled() bool { return e.degraded.Load() }

// Stats returns the emitter's running counts. The backlog counts events
// spilled by this emitter and not yet re-driven (re-driving what an earlier
// run left in the spill does not make it negative).
func (e *Emitter) Stats() metrics.UsageStats {
	st := metrics.UsageStats{Emitted: e.emitted.Load(), Spilled: e.spilled.Load(), Redriven: e.redriven.Load(), Lost: e.lost.Load(),
		DeadLettered: e.deadLettered.Load()}
	st.Backlog = max(st.Spilled-st.Redriven, 0)
	if !e.degraded.Load() {
		st.Backlog = 0
	}
	return st
}

// Ready reports whether a call started now can have its usage event
// recorded: false after a batch could be neither streamed nor spilled, and
// while the disk is full (the reserve spent), until the re-driver finds room
// again. The invoker refuses calls before they reach Bedrock while it is false.
func (e *Emitter) Ready() bool { return !e.failing.Load() && !e.lowDisk.Load() }

func (e *Emitter) commitLoop() {
	defer e.wg.Done()
	batch := make([]*pending, 0, e.cfg.MaxBatch)
	for first := range e.queue {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < e.cfg.MaxBatch {
			select {
			case p, ok := <-e.queue:
				if !ok {
					break fill
				}
				batch = append(batch, p)
			default:
				break fill
			}
		}
		e.commit(batch)
	}
}

func (e *Emitter) commit(batch []*pending) {
	// An event no stream can take (too large, a bad key) is refused for good,
	// not for now: it goes to the dead letters with the reason, and the rest
	// of the batch goes on, so one bad event never holds up the others.
	kept := batch[:0:0]
	for _, p := range batch {
		if err := stream.CheckEntry(p.entry); err != nil {
			p.done <- e.deadLetter(p.entry, err)
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) < len(batch) {
		batch = kept
		if len(batch) == 0 {
			return
		}
	}
	entries := make([]stream.Entry, len(batch))
	for i, p := range batch {
		entries[i] = p.entry
	}
	var err error
	if !e.degraded.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.PutTimeout)
		err = e.cfg.Producer.Put(ctx, entries)
		cancel()
		if err == nil {
			e.failing.Store(false)
			e.emitted.Add(int64(len(batch)))
			for _, p := range batch {
				p.done <- nil
			}
			return
		}
		e.degraded.Store(true)
		e.log.Warn("usage stream unreachable; spilling events to disk", "err", err, "events", len(entries))
	}
	err = e.spillEntries(entries)
	if err != nil && e.releaseReserve(err) {
		err = e.spillEntries(entries)
	}
	if err != nil {
		e.lost.Add(int64(len(entries)))
		e.failing.Store(true)
		e.log.Error("usage events could be neither streamed nor spilled", "err", err, "events", len(entries))
		err = fmt.Errorf("usage event not recorded: %w", err)
	} else {
		e.failing.Store(false)
		e.spilled.Add(int64(len(entries)))
	}
	for _, p := range batch {
		p.done <- err
	}
}

// spillPrefix starts every spill object's key; keys sort oldest first.
const spillPrefix = "spill-"

// DeadLetterPrefix starts the keys of events no stream can take, kept in the
// spill store with the reason and never re-driven: an operator reads them.
const DeadLetterPrefix = "dead-letter-"

// deadLetter keeps an event the stream refuses for good, with the reason.
func (e *Emitter) deadLetter(en stream.Entry, reason error) error {
	e.spillMu.Lock()
	e.seq++
	key := fmt.Sprintf("%s%020d-%s-%06d.json", DeadLetterPrefix, time.Now().UnixNano(), e.instance, e.seq)
	e.spillMu.Unlock()
	body, _ := json.Marshal(map[string]any{"reason": reason.Error(), "partition_key": en.PartitionKey, "event": json.RawMessage(en.Data)})
	ctx, cancel := context.WithTimeout(context.Background(), 4*e.cfg.PutTimeout)
	defer cancel()
	if err := e.spill.Put(ctx, key, bytes.NewReader(body)); err != nil {
		e.lost.Add(1)
		return fmt.Errorf("usage event refused by the stream (%v) and not kept: %w", reason, err)
	}
	e.deadLettered.Add(1)
	e.log.Error("usage event refused by the stream for good; kept as a dead letter", "key", key, "reason", reason)
	return nil
}

func (e *Emitter) spillEntries(entries []stream.Entry) error {
	e.spillMu.Lock()
	defer e.spillMu.Unlock()
	e.seq++
	key := fmt.Sprintf("%s%020d-%s-%06d.jsonl", spillPrefix, time.Now().UnixNano(), e.instance, e.seq)
	var buf bytes.Buffer
	for _, en := range entries {
		buf.Write(en.Data)
		buf.WriteByte('\n')
	}
	// A spill write is as urgent as the calls waiting on it, but a hung
	// store must not hold them forever.
	ctx, cancel := context.WithTimeout(context.Background(), 4*e.cfg.PutTimeout)
	defer cancel()
	if err := e.spill.Put(ctx, key, bytes.NewReader(buf.Bytes())); err != nil {
		return fmt.Errorf("writing spill: %w", err)
	}
	e.degraded.Store(true)
	return nil
}

func (e *Emitter) redriveLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.RedriveInterval)
	defer t.Stop()
	probe := time.NewTicker(e.cfg.ProbeInterval)
	defer probe.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			if e.degraded.Load() {
				e.Redrive(context.Background())
			}
		case <-probe.C:
			if e.failing.Load() || e.lowDisk.Load() {
				if e.degraded.Load() {
					e.Redrive(context.Background()) // draining the spill frees its disk
				}
				e.recover(context.Background())
			}
		}
	}
}

// holdReserve writes the reserve file, fsynced, unless it is already there
// whole. Zeros written (not a sparse hole) hold real blocks.
func (e *Emitter) holdReserve() error {
	if st, err := os.Stat(e.reserve); err == nil && st.Size() == e.cfg.ReserveBytes {
		return nil
	}
	f, err := os.OpenFile(e.reserve, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	zeros := make([]byte, 1<<20)
	for left := e.cfg.ReserveBytes; left > 0 && err == nil; {
		n := min(left, int64(len(zeros)))
		_, err = f.Write(zeros[:n])
		left -= n
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(e.reserve)
	}
	return err
}

// releaseReserve frees the reserve after a spill write failed, so the batch
// can be written into its room, and stops new calls (Ready turns false). It
// reports whether there was a reserve to free.
func (e *Emitter) releaseReserve(cause error) bool {
	if e.reserve == "" || e.lowDisk.Load() {
		return false
	}
	if err := os.Remove(e.reserve); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.log.Error("releasing the usage spill's reserve", "err", err)
		return false
	}
	e.lowDisk.Store(true)
	e.log.Error("usage spill full; spending its reserve on calls in flight and refusing new calls until there is room",
		"dir", e.cfg.SpillDir, "err", cause)
	return true
}

// recover looks for room again after the spill failed or the disk filled.
// With a spill directory the reserve is held again only when the disk has
// twice its size free, so that a disk hovering at full does not flap; with a
// spill store, a small probe object must be written and deleted.
func (e *Emitter) recover(ctx context.Context) {
	if e.reserve != "" {
		var fs syscall.Statfs_t
		if err := syscall.Statfs(e.cfg.SpillDir, &fs); err != nil {
			return
		}
		if free := int64(fs.Bavail) * int64(fs.Bsize); e.lowDisk.Load() && free < 2*e.cfg.ReserveBytes {
			return
		}
		if err := e.holdReserve(); err != nil {
			return
		}
		if e.lowDisk.Swap(false) {
			e.log.Info("usage spill has room again; accepting calls")
		}
		e.failing.Store(false)
		return
	}
	key := fmt.Sprintf("probe-%s.tmp", e.instance)
	pctx, cancel := context.WithTimeout(ctx, 4*e.cfg.PutTimeout)
	defer cancel()
	if err := e.spill.Put(pctx, key, strings.NewReader("probe")); err != nil {
		return
	}
	e.spill.Delete(pctx, key)
	e.failing.Store(false)
}

func (e *Emitter) segments(ctx context.Context) ([]string, error) {
	objs, err := e.spill.List(ctx, spillPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing spill: %w", err)
	}
	var keys []string
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".jsonl") && !strings.Contains(o.Key, "/") {
			keys = append(keys, o.Key)
		}
	}
	return keys, nil
}

// Redrive sends every spilled event to the stream, oldest first, and deletes
// each spill object once all its events are in the stream. It returns the
// number of events sent. The stream is used again for new events only when
// the spill is empty.
func (e *Emitter) Redrive(ctx context.Context) (int, error) {
	e.redriveM.Lock()
	defer e.redriveM.Unlock()
	segs, err := e.segments(ctx)
	if err != nil {
		return 0, err
	}
	// Spilled batches are small (each is one group commit), so several are
	// sent together in one Put and deleted once it succeeds.
	sent := 0
	var group []string
	var entries []stream.Entry
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		if err := e.redriveGroup(ctx, group, entries); err != nil {
			e.log.Warn("re-driving spilled usage events failed; will retry", "keys", len(group), "err", err)
			return err
		}
		sent += len(entries)
		e.redriven.Add(int64(len(entries)))
		group, entries = group[:0], entries[:0]
		return nil
	}
	for _, seg := range segs {
		got, err := e.readSegment(ctx, seg)
		if err != nil {
			e.log.Warn("reading spilled usage events failed; will retry", "key", seg, "err", err)
			return sent, err
		}
		group, entries = append(group, seg), append(entries, got...)
		if len(entries) >= e.cfg.MaxBatch {
			if err := flush(); err != nil {
				return sent, err
			}
		}
	}
	if err := flush(); err != nil {
		return sent, err
	}
	// Under spillMu: a batch spilled after this listing sets degraded again.
	e.spillMu.Lock()
	rest, err := e.segments(ctx)
	if err == nil && len(rest) == 0 {
		e.degraded.Store(false)
	}
	e.spillMu.Unlock()
	if sent > 0 {
		e.log.Info("re-drove spilled usage events", "events", sent)
	}
	return sent, nil
}

// readSegment reads one spill object's events.
func (e *Emitter) readSegment(ctx context.Context, key string) ([]stream.Entry, error) {
	rc, err := e.spill.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil // another emitter sharing the spill re-drove it
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var entries []stream.Entry
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var k struct {
			RequestID string `json:"request_id"`
		}
		// A torn last line (a crash mid-write, before the call was answered) is skipped.
		if err := json.Unmarshal([]byte(line), &k); err != nil || k.RequestID == "" {
			e.log.Warn("skipping unreadable spill line", "key", key)
			continue
		}
		entries = append(entries, stream.Entry{PartitionKey: k.RequestID, Data: []byte(line)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	return entries, nil
}

// redriveGroup puts the events of some spill objects to the stream, then
// deletes the objects. A failure part way leaves every object in place:
// whatever was sent is sent again later under the same request ids.
func (e *Emitter) redriveGroup(ctx context.Context, keys []string, entries []stream.Entry) error {
	for i := 0; i < len(entries); i += e.cfg.MaxBatch {
		j := min(i+e.cfg.MaxBatch, len(entries))
		pctx, cancel := context.WithTimeout(ctx, e.cfg.PutTimeout)
		err := e.cfg.Producer.Put(pctx, entries[i:j])
		cancel()
		if err != nil {
			return err
		}
	}
	for _, key := range keys {
		if err := e.spill.Delete(ctx, key); err != nil {
			return fmt.Errorf("deleting re-driven spill %s: %w", key, err)
		}
	}
	return nil
}
