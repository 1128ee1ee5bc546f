// Package replay rebuilds one day from the stream, after an incident: every shard is
// read from AT_TIMESTAMP (the day's start less a lateness margin) until its
// records arrive after the day's end plus the margin, through the same
// aggregator and collector.WriteBatch as the live consumer, into a staging prefix of the
// store. Only events whose event time falls on the day are kept. The staged
// day is compacted there with the daily compaction, compared with the day as
// it stands, and, when asked, swapped in. Replay never writes a checkpoint and,
// without Apply, never writes outside its staging prefix.
//
// The stream read covers only the arrival range, so the rebuilt day can lack
// events the live day holds (an event of the day held back by its sender and
// delivered hours later). A live raw object is therefore replaced only when
// every request_id in it is in the rebuilt day; any other stays, and is staged
// with the rebuilt day so that the comparison shows what applying does. The
// daily compaction counts each request_id once, so the overlap is harmless.
package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/schemas"
)

// Prefix is the folder of the store under which replays stage their days.
const Prefix = "_replay/"

// DefaultMargin is how far before and after the day replay reads by
// arrival time: the compaction's grace period, so that replay reads every late
// event the live path would have counted.
const DefaultMargin = compaction.DefaultGrace

// Config wires the replay of one day.
type Config struct {
	Source stream.Source
	Store  store.Store // the live store; the day is staged under Prefix+Day+"/"+Run+"/"
	Day    string      // YYYY-MM-DD, UTC
	// Margin widens the arrival range on both sides of the day (default
	// DefaultMargin, the compaction's grace; negative means none): late
	// events of the day arrive after midnight, and a day's first events may
	// have arrived just before it.
	Margin time.Duration
	Prices *pricing.Book
	// Scale is the CSV's decimal places; nil takes the day's current manifest's
	// scale (so the comparison is like for like), or exact when there is none.
	Scale *int
	// Apply swaps the rebuilt day into the live tables.
	Apply bool
	// KeepStaging leaves the staging prefix in place for inspection.
	KeepStaging bool
	// Run names the staging folder (default: the start time, UTC).
	Run string
	// Parallel caps the shards read at once (default 4). Each shard has one
	// reader, paced by the stream's own read limits.
	Parallel int
	// BatchRecords caps the records per output batch (default 20,000).
	BatchRecords int
	// IdleReads is how many reads in a row that find nothing new make a shard
	// caught up (default 3), Poll the pause between them (default 200ms). A
	// read counts only when the iterator says it is at the shard's tip
	// (stream.CaughtUp): Kinesis answers empty pages while still behind.
	IdleReads  int
	Poll       time.Duration
	Aggregator aggregator.Config
	Parquet    parquetio.Options // of the raw events and windows
	Now        func() time.Time
	// Progress, when set, is called after every batch and every finished
	// shard, one call at a time.
	Progress func(Progress)
	Logger   *slog.Logger
}

// Progress says how far a replay has read.
type Progress struct {
	Shards, ShardsDone int
	Records            int
	// Covered is the share of the arrival range read so far, 0 to 1, over all shards.
	Covered float64
	Elapsed time.Duration
	Left    time.Duration // estimated from Covered; 0 until something was read
}

// Result is what a replay read, rebuilt and changed.
type Result struct {
	Day         string
	From, Until time.Time // the arrival range read
	Staging     string    // the staging prefix in the store
	Kept        bool      // the staging prefix was left in place

	Shards      int
	CaughtUp    []string // shards that ended with nothing newer before Until
	Records     int      // records read in the arrival range
	Events      int      // valid events among them, every day, duplicates included
	DayEvents   int      // events of Day, duplicates included (the rebuilt raw events)
	OtherDays   int      // events of other days, ignored
	Duplicates  int      // events of Day whose request_id was already counted (exact)
	Quarantined int      // records that could not be parsed
	Objects     int      // objects written to staging by the read

	// KeptLive are the live raw objects of the day that the rebuilt day does
	// not cover: they stay in the live tables (with their usage_windows
	// objects of the same name) and are staged with the rebuilt day, so
	// Rebuilt and Diff count them as applying will.
	KeptLive []KeptObject

	Rebuilt *compaction.Result // the staged compaction
	Diff    aggregator.ChargebackDiff

	// With Apply: the live compaction of the swapped-in day, and the objects written and deleted.
	Applied *compaction.Result
	Written []string
	Deleted []string
}

// KeptObject is a live raw events object that replay leaves in place, and why.
type KeptObject struct {
	Key     string
	Reason  string
	Missing int // its request ids that the rebuilt day lacks
	// Unreadable says the object could not be read as events Parquet; Apply
	// refuses to run then, since the live compaction could not read it either.
	Unreadable bool
}

// Validate reports the first thing wrong with cfg; zero values take defaults.
func (cfg *Config) Validate() error {
	if _, err := time.Parse(schemas.DayLayout, cfg.Day); err != nil {
		return fmt.Errorf("bad day %q: want YYYY-MM-DD", cfg.Day)
	}
	switch {
	case cfg.Source == nil:
		return errors.New("replay: no stream to read (Config.Source)")
	case cfg.Store == nil:
		return errors.New("replay: no store (Config.Store)")
	case cfg.Prices == nil:
		return errors.New("replay: no price book (Config.Prices)")
	case strings.ContainsAny(cfg.Run, "/\\") || cfg.Run == "." || cfg.Run == "..":
		return fmt.Errorf("bad replay run name %q", cfg.Run)
	case cfg.Aggregator.Validate() != nil:
		return cfg.Aggregator.Validate()
	case cfg.Parallel < 0 || cfg.BatchRecords < 0 || cfg.IdleReads < 0 || cfg.Poll < 0:
		return errors.New("replay: Parallel, BatchRecords, IdleReads and Poll cannot be negative")
	}
	return nil
}

// Run rebuilds cfg.Day from the stream into a staging prefix, compacts it,
// compares it with the live day and, with cfg.Apply, swaps it in.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dayStart, _ := time.Parse(schemas.DayLayout, cfg.Day)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case cfg.Margin == 0:
		cfg.Margin = DefaultMargin
	case cfg.Margin < 0:
		cfg.Margin = 0
	}
	if cfg.Run == "" {
		cfg.Run = cfg.Now().UTC().Format("20060102T150405.000Z")
	}
	res = &Result{Day: cfg.Day, From: dayStart.Add(-cfg.Margin), Until: dayStart.Add(24*time.Hour + cfg.Margin),
		Staging: Prefix + cfg.Day + "/" + cfg.Run + "/", Kept: cfg.KeepStaging}
	staging := store.WithPrefix(cfg.Store, res.Staging)
	if objs, err := staging.List(ctx, ""); err != nil {
		return nil, fmt.Errorf("listing staging %s: %w", res.Staging, err)
	} else if len(objs) > 0 {
		return nil, fmt.Errorf("staging %s already holds %d objects: choose another run name or remove them", res.Staging, len(objs))
	}
	defer func() {
		if res.Kept {
			return
		}
		if cerr := removeStaging(context.WithoutCancel(ctx), cfg.Store, res.Staging); cerr != nil && err == nil {
			err = cerr
		}
	}()

	scale := -1
	if cfg.Scale != nil {
		scale = *cfg.Scale
	} else if s, ok, err := manifestScale(ctx, cfg.Store, cfg.Day); err != nil {
		return nil, err
	} else if ok {
		scale = s
	}

	r := &dayReader{cfg: cfg, st: staging, from: res.From, until: res.Until, res: res, started: time.Now(), covered: map[string]float64{}}
	if err := r.run(ctx); err != nil {
		return nil, err
	}
	cov, err := stageUncovered(ctx, cfg.Store, staging, cfg.Day, res)
	if err != nil {
		return nil, err
	}

	// Usage that cannot be priced is left out and listed in the manifest, as
	// the live compaction does; replay reports it once it is done.
	var unpriced *compaction.UnpricedError
	compact := func(st store.Store) (*compaction.Result, error) {
		r, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: cfg.Day, Prices: cfg.Prices, Scale: compaction.Places(scale), Force: true, Now: cfg.Now})
		if errors.As(err, &unpriced) {
			err = nil
		}
		return r, err
	}
	defer func() {
		if err == nil && unpriced != nil {
			err = unpriced
		}
	}()
	if res.Rebuilt, err = compact(staging); err != nil {
		return nil, fmt.Errorf("compacting the replayed day: %w", err)
	}
	res.Duplicates = res.Rebuilt.Day.Duplicates
	rebuiltCSV, err := store.ReadAll(ctx, staging, schemas.ChargebackCSVKey(cfg.Day))
	if err != nil {
		return nil, err
	}
	liveCSV, err := store.ReadAll(ctx, cfg.Store, schemas.ChargebackCSVKey(cfg.Day))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if res.Diff, err = aggregator.DiffChargeback(liveCSV, rebuiltCSV); err != nil {
		return nil, err
	}
	if !cfg.Apply {
		return res, nil
	}
	if res.DayEvents == 0 && res.Diff.RowsBefore > 0 {
		return res, fmt.Errorf("the stream holds no events of %s between %s and %s (past its retention?): not replacing a day that has %d chargeback rows",
			cfg.Day, res.From.Format(time.RFC3339), res.Until.Format(time.RFC3339), res.Diff.RowsBefore)
	}
	for _, k := range res.KeptLive {
		if k.Unreadable {
			return res, fmt.Errorf("live %s: %s; move it aside and replay again", k.Key, k.Reason)
		}
	}
	if err := applyDay(ctx, cfg.Store, staging, cfg.Day, res, cov, compact); err != nil {
		res.Kept = true
		return res, fmt.Errorf("applying the replayed day (the staged copy stays under %s): %w", res.Staging, err)
	}
	return res, nil
}

// dayReader reads every shard over the arrival range into the staging store.
type dayReader struct {
	cfg         Config
	st          store.Store
	from, until time.Time
	res         *Result
	started     time.Time

	mu      sync.Mutex
	covered map[string]float64 // per shard: share of the range read
	done    int
}

func (r *dayReader) run(ctx context.Context) error {
	parallel := r.cfg.Parallel
	if parallel <= 0 {
		parallel = 4
	}
	shards, err := r.cfg.Source.Shards(ctx)
	if err != nil {
		return fmt.Errorf("listing shards: %w", err)
	}
	r.res.Shards = len(shards)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		id  string
		err error
	}
	results := make(chan outcome)
	started, finished := map[string]bool{}, map[string]bool{}
	running := 0
	var firstErr error
	for len(finished) < len(shards) {
		// Parents first, as the live consumer reads them: a child's records
		// follow its parents'. A parent no longer listed holds no records.
		for _, s := range shards {
			if running >= parallel || firstErr != nil {
				break
			}
			if started[s.ID] || !stream.ParentsRead(s, shards, func(id string) bool { return finished[id] }) {
				continue
			}
			started[s.ID] = true
			running++
			go func(id string) { results <- outcome{id, r.shard(ctx, id)} }(s.ID)
		}
		if running == 0 {
			if firstErr != nil {
				return firstErr
			}
			return errors.New("shards wait on each other's parents: the shard list is inconsistent")
		}
		o := <-results
		running--
		finished[o.id] = true
		if o.err != nil && firstErr == nil {
			firstErr = o.err
			cancel()
		}
	}
	return firstErr
}

// shard reads one shard until its records arrive after r.until, it closes, or
// it has nothing newer.
func (r *dayReader) shard(ctx context.Context, id string) error {
	batch := r.cfg.BatchRecords
	if batch <= 0 {
		batch = 20000
	}
	idleReads := r.cfg.IdleReads
	if idleReads <= 0 {
		idleReads = 3
	}
	poll := r.cfg.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	it, err := r.cfg.Source.Open(ctx, id, stream.Start{Kind: stream.AtTimestamp, Time: r.from})
	if err != nil {
		return fmt.Errorf("opening %s at %s: %w", id, r.from.Format(time.RFC3339), err)
	}
	defer it.Close()
	// One aggregator per shard: a request_id's redeliveries share its partition
	// key and so its shard; the compaction's dedup is exact in any case.
	agg := aggregator.New(r.cfg.Aggregator)
	idle := 0
	for {
		recs, err := it.Next(ctx, batch)
		closed := errors.Is(err, stream.ErrShardClosed)
		if err != nil && !closed {
			return fmt.Errorf("reading %s: %w", id, err)
		}
		past := false
		for i := range recs {
			if recs[i].Arrival.After(r.until) {
				recs, past = recs[:i], true
				break
			}
		}
		if len(recs) > 0 {
			idle = 0
			if err := r.process(ctx, agg, id, recs); err != nil {
				return err
			}
		}
		switch {
		case closed || past:
			r.finish(id, "")
			return nil
		case len(recs) > 0:
			continue
		case !stream.CaughtUp(it):
			// Still behind the shard's tip, or throttled: not idle. The
			// iterator paces its own reads.
			idle = 0
			if err := ctx.Err(); err != nil {
				return err
			}
			continue
		}
		if idle++; idle >= idleReads {
			r.finish(id, id)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// process aggregates one batch and writes the day's part of it to staging, under
// the same names the live consumer gives a batch.
func (r *dayReader) process(ctx context.Context, agg *aggregator.Aggregator, id string, recs []stream.Record) error {
	now := r.cfg.Now()
	for _, rec := range recs {
		agg.Add(aggregator.Input{Data: rec.Data, Source: id + "/" + rec.SequenceNumber, PartitionKey: rec.PartitionKey, Arrival: rec.Arrival}, now)
	}
	b := agg.Flush()
	keep := aggregator.Batch{Days: map[string]*aggregator.DayBatch{}, Quarantined: b.Quarantined, Duplicates: b.Duplicates, Events: b.Events}
	dayEvents := 0
	if db := b.Days[r.cfg.Day]; db != nil {
		keep.Days[r.cfg.Day] = db
		dayEvents = len(db.Events)
	}
	n, err := collector.WriteBatch(ctx, r.st, keep, collector.BatchName(id, recs[0].SequenceNumber, recs[len(recs)-1].SequenceNumber), r.cfg.Parquet, now)
	if err != nil {
		return err
	}
	last := recs[len(recs)-1].Arrival
	cov := float64(last.Sub(r.from)) / float64(r.until.Sub(r.from))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Records += len(recs)
	r.res.Events += b.Events
	r.res.DayEvents += dayEvents
	r.res.OtherDays += b.Events - dayEvents
	r.res.Quarantined += len(b.Quarantined)
	r.res.Objects += n
	r.covered[id] = min(max(cov, 0), 1)
	r.report()
	return nil
}

// finish marks a shard read; caughtUp names it when it ended with nothing newer.
func (r *dayReader) finish(id, caughtUp string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.covered[id] = 1
	r.done++
	if caughtUp != "" {
		r.res.CaughtUp = append(r.res.CaughtUp, caughtUp)
		sort.Strings(r.res.CaughtUp)
	}
	r.report()
}

// report calls Progress; r.mu is held.
func (r *dayReader) report() {
	if r.cfg.Progress == nil {
		return
	}
	p := Progress{Shards: r.res.Shards, ShardsDone: r.done, Records: r.res.Records, Elapsed: time.Since(r.started)}
	for _, c := range r.covered {
		p.Covered += c
	}
	if r.res.Shards > 0 {
		p.Covered /= float64(r.res.Shards)
	}
	if p.Covered > 0 && p.Covered < 1 {
		p.Left = time.Duration(float64(p.Elapsed) * (1 - p.Covered) / p.Covered).Round(time.Second)
	}
	r.cfg.Progress(p)
}

// coverage is what the rebuilt day holds, to tell which live raw objects it replaces.
type coverage struct {
	ids    map[string]bool // request ids of the rebuilt day's events
	staged map[string]bool // keys of the staged raw objects, kept live copies included
	stale  map[string]bool // live events objects every request id of which ids holds
	kept   map[string]bool // live events objects that stay
}

// stageUncovered reads the request ids of the rebuilt day, sorts the live raw
// events objects of the day it did not rebuild under the same name into stale
// and kept ones (res.KeptLive), and copies the readable kept ones, with their
// usage_windows objects, into staging.
func stageUncovered(ctx context.Context, live, staging store.Store, day string, res *Result) (*coverage, error) {
	events := schemas.Partition(schemas.EventsPrefix, day)
	cov := &coverage{ids: map[string]bool{}, staged: map[string]bool{}, stale: map[string]bool{}, kept: map[string]bool{}}
	for _, p := range []string{events, schemas.Partition(schemas.WindowsPrefix, day)} {
		objs, err := staging.List(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("listing staged %s: %w", p, err)
		}
		for _, o := range objs {
			cov.staged[o.Key] = true
			if p != events {
				continue
			}
			data, err := store.ReadAll(ctx, staging, o.Key)
			if err != nil {
				return nil, err
			}
			rows, err := parquetio.ReadEvents(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				return nil, fmt.Errorf("reading staged %s: %w", o.Key, err)
			}
			for i := range rows {
				cov.ids[rows[i].RequestID] = true
			}
		}
	}
	objs, err := live.List(ctx, events)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", events, err)
	}
	for _, o := range objs {
		if cov.staged[o.Key] {
			continue
		}
		data, k, err := cov.check(ctx, live, o.Key)
		if err != nil {
			return nil, err
		}
		if k == nil {
			cov.stale[o.Key] = true
			continue
		}
		res.KeptLive = append(res.KeptLive, *k)
		cov.kept[o.Key] = true
		if k.Unreadable {
			continue
		}
		if err := staging.Put(ctx, o.Key, bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("staging %s: %w", o.Key, err)
		}
		cov.staged[o.Key] = true
		w := windowsTwin(day, o.Key)
		wdata, err := store.ReadAll(ctx, live, w)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := staging.Put(ctx, w, bytes.NewReader(wdata)); err != nil {
			return nil, fmt.Errorf("staging %s: %w", w, err)
		}
		cov.staged[w] = true
	}
	return cov, nil
}

// check reads a live events object and returns, with its bytes, why it must
// stay, or nil when the rebuilt day holds every request id in it.
func (cov *coverage) check(ctx context.Context, live store.Store, key string) ([]byte, *KeptObject, error) {
	data, err := store.ReadAll(ctx, live, key)
	if err != nil {
		return nil, nil, err
	}
	rows, err := parquetio.ReadEvents(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		if !strings.HasSuffix(key, ".parquet") {
			return data, &KeptObject{Key: key, Reason: "not an events Parquet object, left alone"}, nil
		}
		return data, &KeptObject{Key: key, Reason: fmt.Sprintf("unreadable (%v)", err), Unreadable: true}, nil
	}
	missing := map[string]bool{}
	example := ""
	for i := range rows {
		if id := rows[i].RequestID; !cov.ids[id] && !missing[id] {
			missing[id] = true
			if example == "" || id < example {
				example = id
			}
		}
	}
	if len(missing) == 0 {
		return data, nil, nil
	}
	return data, &KeptObject{Key: key, Missing: len(missing),
		Reason: fmt.Sprintf("%d request ids not in the rebuilt day (such as %s): they arrived outside the range read", len(missing), example)}, nil
}

// windowsTwin is the usage_windows object written with an events object.
func windowsTwin(day, eventsKey string) string {
	return schemas.Partition(schemas.WindowsPrefix, day) + strings.TrimPrefix(eventsKey, schemas.Partition(schemas.EventsPrefix, day))
}

// applyDay swaps the staged day in. The raw tables first: every rebuilt object
// is written before any stale one is deleted, so the events never lack a
// record (the compaction's exact dedup absorbs the overlap). A live events
// object is deleted only when the rebuilt day holds every request id in it;
// one written since stageUncovered looked is checked here. Then the daily
// compaction runs on the live day: it keeps the current chargeback CSV and
// manifest as a revision and writes manifest.json last, so readers switch
// from the old revision to the new one at a single Put. Last, compacted
// objects the rebuilt day does not have are deleted; revisions stay.
func applyDay(ctx context.Context, live, staging store.Store, day string, res *Result, cov *coverage, compact func(store.Store) (*compaction.Result, error)) error {
	events, windows := schemas.Partition(schemas.EventsPrefix, day), schemas.Partition(schemas.WindowsPrefix, day)
	for _, p := range []string{events, windows} {
		objs, err := staging.List(ctx, p)
		if err != nil {
			return fmt.Errorf("listing staged %s: %w", p, err)
		}
		for _, o := range objs {
			if cov.kept[o.Key] || (p == windows && cov.kept[strings.Replace(o.Key, windows, events, 1)]) {
				continue // a live object staged as it is
			}
			data, err := store.ReadAll(ctx, staging, o.Key)
			if err != nil {
				return err
			}
			if err := live.Put(ctx, o.Key, bytes.NewReader(data)); err != nil {
				return fmt.Errorf("writing %s: %w", o.Key, err)
			}
			res.Written = append(res.Written, o.Key)
		}
	}
	objs, err := live.List(ctx, events)
	if err != nil {
		return fmt.Errorf("listing %s: %w", events, err)
	}
	for _, o := range objs {
		if cov.staged[o.Key] || cov.kept[o.Key] {
			continue
		}
		if !cov.stale[o.Key] {
			_, k, err := cov.check(ctx, live, o.Key)
			if err != nil {
				return err
			}
			if k != nil {
				k.Reason += "; written while the replay ran"
				res.KeptLive = append(res.KeptLive, *k)
				cov.kept[o.Key] = true
				continue
			}
		}
		if err := live.Delete(ctx, o.Key); err != nil {
			return fmt.Errorf("deleting %s: %w", o.Key, err)
		}
		res.Deleted = append(res.Deleted, o.Key)
	}
	keepRaw := map[string]bool{}
	for k := range cov.staged {
		keepRaw[k] = true
	}
	for k := range cov.kept {
		keepRaw[windowsTwin(day, k)] = true
	}
	if err := deleteStale(ctx, live, []string{windows}, keepRaw, res); err != nil {
		return err
	}
	applied, err := compact(live)
	if err != nil {
		return fmt.Errorf("compacting the live day: %w", err)
	}
	res.Applied = applied

	compacted := []string{schemas.Partition(schemas.DailyPrefix, day), schemas.Partition(schemas.ChargebackPrefix, day)}
	keep := map[string]bool{}
	for _, p := range compacted {
		objs, err := staging.List(ctx, p)
		if err != nil {
			return fmt.Errorf("listing staged %s: %w", p, err)
		}
		for _, o := range objs {
			keep[o.Key] = true
		}
	}
	revisions := schemas.Partition(schemas.ChargebackPrefix, day) + "revisions/"
	objs, err = live.List(ctx, revisions)
	if err != nil {
		return fmt.Errorf("listing %s: %w", revisions, err)
	}
	for _, o := range objs {
		keep[o.Key] = true
	}
	return deleteStale(ctx, live, compacted, keep, res)
}

// deleteStale deletes the objects under prefixes that keep does not name.
func deleteStale(ctx context.Context, st store.Store, prefixes []string, keep map[string]bool, res *Result) error {
	for _, p := range prefixes {
		objs, err := st.List(ctx, p)
		if err != nil {
			return fmt.Errorf("listing %s: %w", p, err)
		}
		for _, o := range objs {
			if keep[o.Key] {
				continue
			}
			if err := st.Delete(ctx, o.Key); err != nil {
				return fmt.Errorf("deleting %s: %w", o.Key, err)
			}
			res.Deleted = append(res.Deleted, o.Key)
		}
	}
	return nil
}

// removeStaging deletes every object under the staging prefix (and, in a file
// store, the folders they leave empty).
func removeStaging(ctx context.Context, st store.Store, prefix string) error {
	staging := store.WithPrefix(st, prefix)
	objs, err := staging.List(ctx, "")
	if err != nil {
		return fmt.Errorf("listing staging %s: %w", prefix, err)
	}
	for _, o := range objs {
		if err := staging.Delete(ctx, o.Key); err != nil {
			return fmt.Errorf("removing staging %s: %w", prefix, err)
		}
	}
	if fs, ok := st.(*store.FileStore); ok {
		root := filepath.Clean(fs.Dir())
		dir := filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(prefix, "/")))
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("removing staging %s: %w", prefix, err)
		}
		// The day's and the replay folder go too when this was their last run.
		for d := filepath.Dir(dir); d != root && strings.HasPrefix(d, root); d = filepath.Dir(d) {
			if os.Remove(d) != nil {
				break
			}
		}
	}
	return nil
}

// manifestScale reads the CSV scale the day's current manifest records.
func manifestScale(ctx context.Context, st store.Store, day string) (int, bool, error) {
	data, err := store.ReadAll(ctx, st, schemas.ManifestKey(day))
	if errors.Is(err, store.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var m struct {
		Scale *int `json:"scale"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return 0, false, fmt.Errorf("manifest of %s is corrupt: %w", day, err)
	}
	if m.Scale == nil {
		return 0, false, nil
	}
	return *m.Scale, true, nil
}
