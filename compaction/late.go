package compaction

// Late events. The collector accepts an event long after its day (aggregator
// quarantines only events dated in the future or before 2023), and writes it
// to its own day's events partition as a new object. A day compacted before
// the event arrived would leave it out of the bill; RecompactChanged, run on
// the compactor's schedule, finds such days and compacts them again as a new
// revision, whose manifest says what was added and where the money moved.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meter-dev/meter/schemas"
)

// DefaultLookbackDays is how many closed days before now the scheduled
// compactor checks for late events. Kinesis keeps records 1 to 365 days (24 h
// by default) and the invoker's spill is re-sent within hours, so a week
// covers every path by which an event reaches the store on its own; older
// days change only through `meter replay --apply`, which commits its own
// revision.
const DefaultLookbackDays = 7

// DayState says whether a day's committed compaction still matches its events.
type DayState struct {
	Day string
	// Reason is why the day needs compacting ("" when it does not): never
	// compacted, or which inputs were added, removed or rewritten.
	Reason string
}

// Changed reports whether the day needs a new revision.
func (d DayState) Changed() bool { return d.Reason != "" }

// ChangedDays checks the closed days of the lookbackDays days before now
// (UTC; a day is closed once its grace period has ended) and returns those
// whose events objects differ, by key or size, from the inputs their
// manifest lists, or which have events but no manifest. Only listings and
// manifests are read, never the events.
func ChangedDays(ctx context.Context, cfg Config, now time.Time, lookbackDays int) ([]DayState, error) {
	if cfg.Store == nil {
		return nil, errors.New("compaction: no store (Config.Store)")
	}
	if lookbackDays < 1 || lookbackDays > 400 {
		return nil, fmt.Errorf("compaction: lookback of %d days: want 1 to 400", lookbackDays)
	}
	grace := cfg.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	today := now.UTC().Truncate(24 * time.Hour)
	var out []DayState
	for i := lookbackDays; i >= 1; i-- {
		start := today.AddDate(0, 0, -i)
		if now.Before(start.Add(24*time.Hour + grace)) {
			continue // still open: the regular run compacts it when it closes
		}
		day := start.Format(schemas.DayLayout)
		st, err := dayState(ctx, cfg, day)
		if err != nil {
			return nil, err
		}
		if st.Changed() {
			out = append(out, st)
		}
	}
	return out, nil
}

func dayState(ctx context.Context, cfg Config, day string) (DayState, error) {
	objs, err := cfg.Store.List(ctx, schemas.Partition(schemas.EventsPrefix, day))
	if err != nil {
		return DayState{}, fmt.Errorf("listing events of %s: %w", day, err)
	}
	now := map[string]int64{}
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".parquet") {
			now[o.Key] = o.Size
		}
	}
	m, err := readManifest(ctx, cfg.Store, day)
	if err != nil {
		return DayState{}, err
	}
	st := DayState{Day: day}
	if m == nil {
		if len(now) > 0 {
			st.Reason = fmt.Sprintf("%d events objects, never compacted", len(now))
		}
		return st, nil
	}
	var added, removed, rewritten int
	was := map[string]bool{}
	for _, in := range m.Inputs {
		was[in.Key] = true
		size, ok := now[in.Key]
		switch {
		case !ok:
			removed++
		case size != in.Size:
			rewritten++
		}
	}
	for k := range now {
		if !was[k] {
			added++
		}
	}
	if added+removed+rewritten > 0 {
		st.Reason = fmt.Sprintf("events changed since revision %d: %d objects added, %d removed, %d rewritten", m.Revision, added, removed, rewritten)
	}
	return st, nil
}

// Recompacted is one day RecompactChanged compacted again.
type Recompacted struct {
	DayState
	Result *Result // nil when Err is set
	Err    error
}

// RecompactChanged compacts again, each as a new revision, the closed days
// of the lookback whose events changed after their last compaction
// (ChangedDays). compact compacts one day (Compact, or an engine that
// chooses by the day's size); cfg is the template, its Day set per day and
// Force left as given (every day checked is closed). A day that fails does
// not stop the others: each outcome is returned, and the error joins the
// failures.
func RecompactChanged(ctx context.Context, cfg Config, now time.Time, lookbackDays int,
	compact func(context.Context, Config) (*Result, error)) ([]Recompacted, error) {
	days, err := ChangedDays(ctx, cfg, now, lookbackDays)
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return now }
	}
	var out []Recompacted
	var errs []error
	for _, d := range days {
		c := cfg
		c.Day = d.Day
		res, err := compact(ctx, c)
		var unpriced *UnpricedError
		if err != nil && !errors.As(err, &unpriced) {
			res = nil
		}
		out = append(out, Recompacted{DayState: d, Result: res, Err: err})
		if err != nil {
			errs = append(errs, fmt.Errorf("recompacting %s (%s): %w", d.Day, d.Reason, err))
		}
	}
	return out, errors.Join(errs...)
}
