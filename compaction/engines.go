package compaction

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/meter-dev/meter/internal/athenaq"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// Environment of the scheduled compactor (cmd/lambda/compactor), beside
// METER_STORE, METER_PRICES and METER_SCALE. The deployment in infra/ sets
// them; SCALE.md says when Athena takes over.
const (
	// EnvAthenaAboveEvents: a day of more (estimated) events than this is
	// compacted in Athena; unset or 0: always in the Lambda (Go engine).
	EnvAthenaAboveEvents = "METER_ATHENA_ABOVE_EVENTS"
	// EnvAthenaWorkgroup: the Athena workgroup (its scan limit and results
	// location apply); unset: primary.
	EnvAthenaWorkgroup = "METER_ATHENA_WORKGROUP"
	// EnvAthenaDatabase: the Glue database holding the events and prices
	// tables (infra/athena/tables.sql, prices.sql); required with Athena.
	EnvAthenaDatabase = "METER_ATHENA_DATABASE"
	// EnvAthenaOutput: s3://BUCKET/PREFIX/ for query results; unset: the
	// workgroup's results location.
	EnvAthenaOutput = "METER_ATHENA_OUTPUT"
	// EnvRecompactDays: how many closed days back each scheduled run looks
	// for late events (RecompactChanged); unset: DefaultLookbackDays; 0: off.
	EnvRecompactDays = "METER_RECOMPACT_DAYS"
)

// EventBytes is the Parquet size of one raw event the collector writes,
// measured at 32.4 bytes (BENCHMARKS.md, collector): EstimateEvents divides
// a day's object sizes by it.
const EventBytes = 32

// EstimateEvents estimates a day's raw events from the sizes of its events
// objects (a listing, no reads): enough to choose an engine.
func EstimateEvents(ctx context.Context, st store.Store, day string) (int64, error) {
	objs, err := st.List(ctx, schemas.Partition(schemas.EventsPrefix, day))
	if err != nil {
		return 0, fmt.Errorf("listing events of %s: %w", day, err)
	}
	var n int64
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".parquet") {
			n += o.Size
		}
	}
	return n / EventBytes, nil
}

// Engines compacts a day in the process (Compact) or, when the day is
// larger than AboveEvents estimated events, in Athena (CompactAthena).
type Engines struct {
	Athena      *Athena // nil: always the Go engine
	AboveEvents int64   // 0: always the Go engine
}

// Compact compacts cfg.Day with the engine its size calls for; the
// manifest's engine says which ran. Either way, daily objects of an earlier
// revision are pruned once the new one is committed (PruneDaily).
func (e *Engines) Compact(ctx context.Context, cfg Config) (*Result, error) {
	if e.Athena != nil && e.AboveEvents > 0 {
		n, err := EstimateEvents(ctx, cfg.Store, cfg.Day)
		if err != nil {
			return nil, err
		}
		if n > e.AboveEvents {
			res, err := CompactAthena(ctx, cfg, *e.Athena)
			if res == nil {
				return nil, err
			}
			return res.Result, err
		}
	}
	res, err := Compact(ctx, cfg)
	var unpriced *UnpricedError
	if err == nil || errors.As(err, &unpriced) {
		// An earlier revision compacted in Athena left its own daily objects.
		if perr := PruneDaily(ctx, cfg.Store, cfg.Day); perr != nil {
			return res, errors.Join(err, perr)
		}
	}
	return res, err
}

// EnginesFromEnv reads the Env* variables above. storeURI is the store's
// location (Athena needs s3://) and priceCSV the bytes of the price file the
// compaction's book was read from.
func EnginesFromEnv(ctx context.Context, getenv func(string) string, storeURI string, priceCSV []byte) (*Engines, error) {
	e := &Engines{}
	v := getenv(EnvAthenaAboveEvents)
	if v == "" {
		return e, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%s %q: want a number of events (0: never use Athena)", EnvAthenaAboveEvents, v)
	}
	if n == 0 {
		return e, nil
	}
	if !strings.HasPrefix(storeURI, "s3://") {
		return nil, fmt.Errorf("%s is set but the store %s is not in S3: Athena reads only s3:// stores", EnvAthenaAboveEvents, storeURI)
	}
	db := getenv(EnvAthenaDatabase)
	if db == "" {
		return nil, fmt.Errorf("%s is set: %s must name the Glue database of the events and prices tables", EnvAthenaAboveEvents, EnvAthenaDatabase)
	}
	out := getenv(EnvAthenaOutput)
	if out != "" && !strings.HasPrefix(out, "s3://") {
		return nil, fmt.Errorf("%s %q: want s3://BUCKET/PREFIX/", EnvAthenaOutput, out)
	}
	c, err := athenaq.New(ctx, athenaq.Client{Workgroup: getenv(EnvAthenaWorkgroup), Database: db, OutputLocation: out})
	if err != nil {
		return nil, err
	}
	e.AboveEvents = n
	e.Athena = &Athena{Client: c, Location: storeURI, PriceCSV: priceCSV}
	return e, nil
}

// LookbackFromEnv returns EnvRecompactDays' value: DefaultLookbackDays when
// unset, 0 (off) or a number of days up to 400.
func LookbackFromEnv(getenv func(string) string) (int, error) {
	v := getenv(EnvRecompactDays)
	if v == "" {
		return DefaultLookbackDays, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 400 {
		return 0, fmt.Errorf("%s %q: want 0 (off) to 400 days", EnvRecompactDays, v)
	}
	return n, nil
}
