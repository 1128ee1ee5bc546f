// Package aggregator is the pure core of metering: it decodes usage records,
// deduplicates them by request_id, sums them into event-time windows, and
// compacts and prices a day. It imports no AWS package and does no I/O: it takes
// bytes and events and returns rows; the collector moves them in and out.
package aggregator

import (
	"fmt"
	"hash/maphash"
	"sort"
	"time"

	"github.com/meter-dev/meter/schemas"
)

// Config sets the window size and the dedup horizon.
type Config struct {
	// Window is the event-time window size (default 5 minutes; less than a
	// millisecond means the default).
	Window time.Duration
	// DedupHorizon is how long a request_id is remembered, in event time, to drop
	// redelivered events (default one hour). The daily compaction is exact.
	DedupHorizon time.Duration
}

// Validate reports the first thing wrong with c; zero values take defaults.
func (c Config) Validate() error {
	switch {
	case c.Window < 0:
		return fmt.Errorf("aggregator: window %s is negative", c.Window)
	case c.Window > 24*time.Hour || 24*time.Hour%max(c.Window, time.Millisecond) != 0:
		return fmt.Errorf("aggregator: window %s does not divide a day", c.Window)
	case c.DedupHorizon < 0:
		return fmt.Errorf("aggregator: dedup horizon %s is negative", c.DedupHorizon)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Window < time.Millisecond { // windows are whole milliseconds
		c.Window = 5 * time.Minute
	}
	if c.DedupHorizon <= 0 {
		c.DedupHorizon = time.Hour
	}
	return c
}

// Input is one record to aggregate with where it came from.
type Input struct {
	Data         []byte
	Source       string // e.g. "shardId-000000000000/00000000000000000042"
	PartitionKey string
	// Arrival is when the stream accepted the record (zero: when it was
	// received). An event dated after its own arrival cannot be true.
	Arrival time.Time
}

// Bounds of an event's time: a record dated more than MaxAhead after it
// reached the stream (a clock far ahead, a forged date such as 9999-12-31)
// or before EarliestEventTime (year 0) is quarantined: it would land in a
// partition nothing compacts, and a future date would stop the dedup memory
// from forgetting. Late events (hours or days) are accepted: the compaction
// recounts a day whose inputs changed.
const MaxAhead = 5 * time.Minute

// EarliestEventTime is the earliest event time meter accepts.
var EarliestEventTime = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)

// MalformedKey is the partition key `meter put` gives a line it could not parse,
// so that the line's origin reaches quarantine with it: "malformed/FILE:LINE".
func MalformedKey(file string, line int) string { return fmt.Sprintf("malformed/%s:%d", file, line) }

// Quarantined is a record that could not be used, with the reason.
type Quarantined struct {
	Source       string `json:"source"`
	PartitionKey string `json:"partition_key,omitempty"`
	// Origin and Line say where a line given to `meter put` came from.
	Origin string `json:"origin,omitempty"`
	Line   int    `json:"line,omitempty"`
	Reason string `json:"reason"`
	// Kind sorts the reason for metrics: QuarantineMalformed (not JSON)
	// or QuarantineInvalid (JSON that is not a valid usage event).
	Kind     string    `json:"kind"`
	Field    string    `json:"field,omitempty"`
	Record   string    `json:"record"`
	Received time.Time `json:"received"`
}

// Kinds of quarantined records: a bounded set, for metric labels.
const (
	QuarantineMalformed = "malformed"
	QuarantineInvalid   = "invalid"
)

// WindowKey identifies one window partial.
type WindowKey struct {
	Start                                     int64 // unix milliseconds
	TeamID, CostCenter, ModelID, Status, Tier string
}

// Aggregator accumulates a batch of records. It keeps the request ids it has
// seen across batches (within the dedup horizon) so redelivered records do not
// count twice in windows; Reset clears the batch but keeps that memory.
type Aggregator struct {
	cfg     Config
	decoder RecordDecoder
	// seen maps a 64-bit hash of each request_id to its event time (ms). A hash
	// collision (odds about 1 in 10^7 per million ids in the horizon) could only
	// keep one request out of a window partial; the daily compaction compares
	// request ids themselves.
	seen        map[uint64]int64
	seed        maphash.Seed
	maxEventMS  int64
	lastEvict   int64
	events      []schemas.EventRow // every valid event of the batch, duplicates included
	eventsHint  int                // how many the last batch had
	windows     map[WindowKey]*schemas.WindowRow
	quarantined []Quarantined
	duplicates  int
}

// New returns an empty aggregator.
func New(cfg Config) *Aggregator {
	return &Aggregator{cfg: cfg.withDefaults(), seen: map[uint64]int64{}, seed: maphash.MakeSeed(), windows: map[WindowKey]*schemas.WindowRow{}}
}

// Add decodes one record and adds it to the batch; a record that cannot be
// decoded or validated is quarantined with the reason instead.
func (a *Aggregator) Add(in Input, received time.Time) {
	d := a.decoder.Decode(in, received)
	a.AddDecoded(&d)
}

// AddEvent adds one decoded event to the batch.
func (a *Aggregator) AddEvent(e schemas.Event) {
	r := schemas.NewEventRow(&e)
	a.addRow(&r)
}

// addRow adds one valid event, as its row, to the batch.
func (a *Aggregator) addRow(e *schemas.EventRow) {
	if a.events == nil {
		a.events = make([]schemas.EventRow, 0, a.eventsHint)
	}
	a.events = append(a.events, *e)
	a.count(e)
}

// count adds one valid event to the dedup memory and, unless already seen
// within the horizon, to its window.
func (a *Aggregator) count(e *schemas.EventRow) {
	ms := e.Timestamp
	if ms > a.maxEventMS {
		a.maxEventMS = ms
		a.evict()
	}
	id := maphash.String(a.seed, e.RequestID)
	if _, dup := a.seen[id]; dup {
		a.duplicates++
		return
	}
	a.seen[id] = ms
	win := a.cfg.Window.Milliseconds()
	start := ms - ms%win
	if ms < 0 && ms%win != 0 {
		start -= win
	}
	tier := e.PricingTier
	if tier == "" {
		tier = "on_demand" // as Event.Tier
	}
	k := WindowKey{start, e.TeamID, e.CostCenter, e.ModelID, e.Status, tier}
	w := a.windows[k]
	if w == nil {
		w = &schemas.WindowRow{WindowStart: start, WindowEnd: start + win, TeamID: e.TeamID, CostCenter: e.CostCenter,
			ModelID: e.ModelID, Status: e.Status, PricingTier: tier}
		a.windows[k] = w
	}
	w.Requests++
	w.InputTokens += e.InputTokens
	w.OutputTokens += e.OutputTokens
	w.CacheReadInputTokens += e.CacheReadInputTokens
	w.CacheWriteInputTokens += e.CacheWriteInputTokens
	w.ImageCount += e.ImageCount
	w.LatencyMSSum += e.LatencyMS
}

// evict forgets request ids older than the horizon behind the newest event time.
// It walks every remembered id, so it runs only when the newest time has
// advanced by half a horizon since the last walk: ids are kept for between one
// and one and a half horizons, and the walk's cost is spread over that many events.
func (a *Aggregator) evict() {
	horizon := a.cfg.DedupHorizon.Milliseconds()
	if a.maxEventMS-a.lastEvict < horizon/2 {
		return
	}
	a.lastEvict = a.maxEventMS
	cut := a.maxEventMS - horizon
	for id, t := range a.seen {
		if t < cut {
			delete(a.seen, id)
		}
	}
}

// Batch is what a batch produced, grouped by event day (the dt partition).
type Batch struct {
	Days        map[string]*DayBatch
	Quarantined []Quarantined
	Duplicates  int // events dropped from windows as already seen within the horizon
	Events      int // valid events, duplicates included
}

// DayBatch holds one day's raw events and window partials.
type DayBatch struct {
	Events  []schemas.EventRow
	Windows []schemas.WindowRow
}

// Flush returns the batch and starts a new one. Windows are sorted by start,
// team, model, status; raw events keep their stream order.
func (a *Aggregator) Flush() Batch {
	b := Batch{Days: map[string]*DayBatch{}, Quarantined: a.quarantined, Duplicates: a.duplicates, Events: len(a.events)}
	day := func(d string) *DayBatch {
		db := b.Days[d]
		if db == nil {
			db = &DayBatch{}
			b.Days[d] = db
		}
		return db
	}
	// Size each day's rows before filling them: growing slices of wide rows
	// one append at a time copied every row several times.
	// Days are told apart by their number since the epoch; each distinct day
	// is formatted once.
	const msPerDay = 24 * 60 * 60 * 1000
	dayOf := func(ms int64) int64 {
		if ms < 0 && ms%msPerDay != 0 {
			return ms/msPerDay - 1
		}
		return ms / msPerDay
	}
	perDay := map[int64]int{}
	for i := range a.events {
		perDay[dayOf(a.events[i].Timestamp)]++
	}
	if len(perDay) == 1 {
		// One day, the usual case: the batch takes the rows as they are.
		for d := range perDay {
			day(time.UnixMilli(d * msPerDay).UTC().Format(schemas.DayLayout)).Events = a.events
		}
		a.events, a.eventsHint = nil, len(a.events)
	} else {
		byNum := make(map[int64]*DayBatch, len(perDay))
		for d, n := range perDay {
			db := day(time.UnixMilli(d * msPerDay).UTC().Format(schemas.DayLayout))
			db.Events = make([]schemas.EventRow, 0, n)
			byNum[d] = db
		}
		for i := range a.events {
			db := byNum[dayOf(a.events[i].Timestamp)]
			db.Events = append(db.Events, a.events[i])
		}
		clear(a.events) // the batch holds copies of the rows
		a.events = a.events[:0]
	}
	for _, w := range a.windows {
		d := time.UnixMilli(w.WindowStart).UTC().Format(schemas.DayLayout)
		day(d).Windows = append(day(d).Windows, *w)
	}
	for _, db := range b.Days {
		sort.Slice(db.Windows, func(i, j int) bool { return windowLess(&db.Windows[i], &db.Windows[j]) })
	}
	a.quarantined, a.duplicates = nil, 0
	a.windows = map[WindowKey]*schemas.WindowRow{}
	return b
}

// windowLess orders window rows by start, then team, cost center, model,
// status and tier, field by field (the order of the fields joined by NUL,
// without building the joined strings on every comparison).
func windowLess(x, y *schemas.WindowRow) bool {
	if x.WindowStart != y.WindowStart {
		return x.WindowStart < y.WindowStart
	}
	for _, f := range [...][2]string{{x.TeamID, y.TeamID}, {x.CostCenter, y.CostCenter}, {x.ModelID, y.ModelID}, {x.Status, y.Status}, {x.PricingTier, y.PricingTier}} {
		if f[0] != f[1] {
			return f[0] < f[1]
		}
	}
	return false
}
