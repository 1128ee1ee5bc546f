package invoker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/schemas"
)

// EmitterConfig configures an Emitter.
type EmitterConfig struct {
	// Producer is the usage stream (Kinesis or the embedded file stream).
	Producer stream.Producer
	// SpillDir holds the spill files: JSON lines of events the stream could not
	// take, written and fsynced before a call is answered. Required.
	SpillDir string
	// PutTimeout bounds one Put to the stream before events spill (default 2s).
	PutTimeout time.Duration
	// RedriveInterval is how often spilled events are re-sent (default 5s).
	RedriveInterval time.Duration
	// MaxBatch is the largest group commit (default 500, Kinesis' PutRecords limit).
	MaxBatch int
	Logger   *slog.Logger
}

// Emitter hands usage events to the stream. Emit returns only when the event is
// durable in the stream or in the local spill; concurrent Emits are committed
// together in one Put. While the stream is unreachable events go straight to
// the spill, and a background re-driver sends them once it is back. An event is
// re-sent only whole and under its own request_id (the partition key), so a
// duplicate is always recognizable downstream.
type Emitter struct {
	cfg   EmitterConfig
	log   *slog.Logger
	queue chan *pending

	degraded atomic.Bool

	spillMu sync.Mutex
	spill   *os.File // the segment being appended to, nil when none is open
	seq     int

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

// ErrEmitterClosed is returned by Emit after Close.
var ErrEmitterClosed = errors.New("usage emitter closed")

// NewEmitter starts an emitter and its re-driver. Spill files left by an
// earlier process are re-driven too.
func NewEmitter(cfg EmitterConfig) (*Emitter, error) {
	if cfg.Producer == nil {
		return nil, errors.New("emitter: no stream producer")
	}
	if cfg.SpillDir == "" {
		return nil, errors.New("emitter: no spill directory")
	}
	if err := os.MkdirAll(cfg.SpillDir, 0o700); err != nil {
		return nil, fmt.Errorf("emitter: spill directory: %w", err)
	}
	if cfg.PutTimeout <= 0 {
		cfg.PutTimeout = 2 * time.Second
	}
	if cfg.RedriveInterval <= 0 {
		cfg.RedriveInterval = 5 * time.Second
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Emitter{cfg: cfg, log: log, queue: make(chan *pending, 4*cfg.MaxBatch), stop: make(chan struct{})}
	if segs, _ := e.segments(); len(segs) > 0 {
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
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding usage event: %w", err)
	}
	p := &pending{entry: stream.Entry{PartitionKey: ev.RequestID, Data: data}, done: make(chan error, 1)}
	e.closeMu.RLock()
	if e.closed {
		e.closeMu.RUnlock()
		return ErrEmitterClosed
	}
	e.queue <- p
	e.closeMu.RUnlock()
	return <-p.done
}

// Close drains queued events, stops the re-driver after one last attempt and
// closes the spill. Events still spilled stay on disk for the next start.
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
	e.Redrive(context.Background())
	e.spillMu.Lock()
	defer e.spillMu.Unlock()
	if e.spill != nil {
		err := e.spill.Close()
		e.spill = nil
		return err
	}
	return nil
}

// Spilled reports whether events are waiting in the spill.
func (e *Emitter) Spilled() bool { return e.degraded.Load() }

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
			for _, p := range batch {
				p.done <- nil
			}
			return
		}
		e.degraded.Store(true)
		e.log.Warn("usage stream unreachable; spilling events to disk", "err", err, "events", len(entries))
	}
	err = e.spillEntries(entries)
	if err != nil {
		e.log.Error("usage events could be neither streamed nor spilled", "err", err, "events", len(entries))
		err = fmt.Errorf("usage event not recorded: %w", err)
	}
	for _, p := range batch {
		p.done <- err
	}
}

func (e *Emitter) spillEntries(entries []stream.Entry) error {
	e.spillMu.Lock()
	defer e.spillMu.Unlock()
	if e.spill == nil {
		e.seq++
		name := filepath.Join(e.cfg.SpillDir, fmt.Sprintf("spill-%020d-%06d.jsonl", time.Now().UnixNano(), e.seq))
		f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("opening spill: %w", err)
		}
		syncDir(e.cfg.SpillDir)
		e.spill = f
	}
	var buf []byte
	for _, en := range entries {
		buf = append(buf, en.Data...)
		buf = append(buf, '\n')
	}
	if _, err := e.spill.Write(buf); err != nil {
		return fmt.Errorf("writing spill: %w", err)
	}
	if err := e.spill.Sync(); err != nil {
		return fmt.Errorf("syncing spill: %w", err)
	}
	e.degraded.Store(true)
	return nil
}

func (e *Emitter) redriveLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.RedriveInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			if e.degraded.Load() {
				e.Redrive(context.Background())
			}
		}
	}
}

func (e *Emitter) segments() ([]string, error) {
	names, err := filepath.Glob(filepath.Join(e.cfg.SpillDir, "spill-*.jsonl"))
	sort.Strings(names)
	return names, err
}

// Redrive sends every spilled event to the stream, oldest first, and deletes
// each spill file once all its events are in the stream. It returns the number
// of events sent. The stream is used again for new events only when the spill
// is empty.
func (e *Emitter) Redrive(ctx context.Context) (int, error) {
	e.redriveM.Lock()
	defer e.redriveM.Unlock()
	// Seal the segment being appended to so new spills go to a fresh one.
	e.spillMu.Lock()
	if e.spill != nil {
		e.spill.Close()
		e.spill = nil
	}
	segs, err := e.segments()
	e.spillMu.Unlock()
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, seg := range segs {
		n, err := e.redriveSegment(ctx, seg)
		sent += n
		if err != nil {
			e.log.Warn("re-driving spilled usage events failed; will retry", "file", seg, "err", err)
			return sent, err
		}
	}
	e.spillMu.Lock()
	rest, _ := e.segments()
	if len(rest) == 0 && e.spill == nil {
		e.degraded.Store(false)
	}
	e.spillMu.Unlock()
	if sent > 0 {
		e.log.Info("re-drove spilled usage events", "events", sent)
	}
	return sent, nil
}

func (e *Emitter) redriveSegment(ctx context.Context, path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var entries []stream.Entry
	sc := bufio.NewScanner(f)
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
			e.log.Warn("skipping unreadable spill line", "file", path)
			continue
		}
		entries = append(entries, stream.Entry{PartitionKey: k.RequestID, Data: []byte(line)})
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	for i := 0; i < len(entries); i += e.cfg.MaxBatch {
		j := min(i+e.cfg.MaxBatch, len(entries))
		pctx, cancel := context.WithTimeout(ctx, e.cfg.PutTimeout)
		err := e.cfg.Producer.Put(pctx, entries[i:j])
		cancel()
		if err != nil {
			// Whatever was sent will be sent again under the same request ids.
			return i, err
		}
	}
	if err := os.Remove(path); err != nil {
		return len(entries), err
	}
	syncDir(e.cfg.SpillDir)
	return len(entries), nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
