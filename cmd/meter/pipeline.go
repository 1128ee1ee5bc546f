package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/config"
	"github.com/meter-dev/meter/internal/progress"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/replay"
	"github.com/meter-dev/meter/schemas"
)

// openProducer opens a --stream location for appending.
func openProducer(ctx context.Context, uri string) (stream.Producer, func() error, error) {
	p, closeFn, err := stream.OpenProducer(ctx, uri)
	if errors.Is(err, stream.ErrBadLocation) {
		return nil, nil, usagef("%v", err)
	}
	return p, closeFn, err
}

// openSource opens a --stream location for reading.
func openSource(ctx context.Context, uri string) (stream.Source, func() error, error) {
	s, closeFn, err := stream.OpenSource(ctx, uri)
	if errors.Is(err, stream.ErrBadLocation) {
		return nil, nil, usagef("%v", err)
	}
	return s, closeFn, err
}

// openStore opens a --store location.
func openStore(ctx context.Context, uri string) (store.Store, error) {
	if !strings.HasPrefix(uri, "file://") && !strings.HasPrefix(uri, "s3://") {
		return nil, usagef("store %q: want file://DIR or s3://BUCKET/PREFIX", uri)
	}
	return store.Open(ctx, uri)
}

// quietUsage is --quiet's one meaning across commands.
const quietUsage = "no progress lines and warnings only on stderr (results still go to stdout)"

func logger(stderr io.Writer, quiet bool) *slog.Logger {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

func runPut(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("put", stderr)
	streamURI := fs.String("stream", "", "stream to append to: file://DIR or kinesis://NAME")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if err := need("stream", *streamURI); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("put takes one FILE (or - for stdin), got %d", fs.NArg())
	}
	name := "-"
	if fs.NArg() == 1 {
		name = fs.Arg(0)
	}
	var in io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return usagef("cannot read input: %v", errShort(err))
		}
		defer f.Close()
		in = f
	}
	p, closeStream, err := openProducer(ctx, *streamURI)
	if err != nil {
		return err
	}
	defer closeStream()
	res, err := putLines(ctx, p, in, filepath.Base(name))
	for _, m := range res.malformed {
		fmt.Fprintf(stderr, "meter put: %s line %d: %s (sent on for quarantine)\n", name, m.line, m.reason)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "put %d events to %s; %d malformed lines sent on for quarantine; %d blank lines skipped\n",
		res.events, *streamURI, len(res.malformed), res.blank)
	return nil
}

type putResult struct {
	events, blank int
	malformed     []struct {
		line   int
		reason string
	}
}

// putLines appends every line of in to the stream. A valid event is keyed by its
// request_id; a malformed line is appended too, keyed "malformed/FILE:LINE", so
// the aggregator quarantines it with its origin and nothing is dropped here.
// Lines are read here, checked on every core and appended in order by
// putPipeline (put.go).
func putLines(ctx context.Context, p stream.Producer, in io.Reader, origin string) (putResult, error) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, stream.MaxRecordBytes), stream.MaxRecordBytes) // one read per MiB of input
	pl := newPutPipeline(ctx, p, origin)
	line, blank := 0, 0
	for sc.Scan() {
		line++
		data := bytes.TrimSpace(sc.Bytes())
		if len(data) == 0 {
			blank++
			continue
		}
		if !pl.add(line, data) {
			break
		}
	}
	res, err := pl.close()
	res.blank = blank
	if err == nil && sc.Err() != nil {
		err = fmt.Errorf("reading input at line %d: %w", line+1, sc.Err())
	}
	return res, err
}

func runAggregate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("aggregate", stderr)
	streamURI := fs.String("stream", "", "stream to consume: file://DIR or kinesis://NAME")
	storeURI := fs.String("store", "", "store to write: file://DIR or s3://BUCKET/PREFIX")
	untilIdle := fs.Bool("until-idle", false, "drain the stream, then exit")
	window := fs.Duration("window", 5*time.Minute, "event-time window size")
	horizon := fs.Duration("dedup-horizon", time.Hour, "how long a request_id is remembered for deduplication")
	start := fs.String("start", "trim_horizon", "where a shard without checkpoint starts: trim_horizon, latest or an RFC 3339 time")
	batch := fs.Int("batch", 20000, "records per output batch")
	consumer := fs.String("consumer", "aggregator", "name of this consumer's checkpoints")
	quiet := fs.Bool("quiet", false, quietUsage)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if err := need("stream", *streamURI, "store", *storeURI); err != nil {
		return err
	}
	if *window < time.Second || (24*time.Hour)%*window != 0 {
		return usagef("--window %s: want at least 1s and a whole number of windows per day (e.g. 1m, 5m, 1h)", *window)
	}
	if *horizon <= 0 {
		return usagef("--dedup-horizon %s: want a positive duration", *horizon)
	}
	from, err := parseStart(*start)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *storeURI)
	if err != nil {
		return err
	}
	src, closeStream, err := openSource(ctx, *streamURI)
	if err != nil {
		return err
	}
	defer closeStream()
	prog := progress.New(stderr, "meter aggregate", *quiet)
	defer prog.Done()
	c, err := collector.New(collector.Config{Source: src, Store: st, Consumer: *consumer, Start: from, BatchRecords: *batch,
		Aggregator: aggregator.Config{Window: *window, DedupHorizon: *horizon}, Logger: logger(stderr, *quiet),
		Progress: func(s collector.Stats) {
			prog.Update(int64(s.Records), 0, "records", fmt.Sprintf("%d events, %d quarantined, %d batches", s.Events, s.Quarantined, s.Batches))
		}})
	if err != nil {
		return usagef("%v", err)
	}
	stats, err := c.Run(ctx, *untilIdle)
	fmt.Fprintf(stdout, "aggregated %d records: %d events, %d duplicates within the horizon, %d quarantined (%d malformed, %d invalid); %d objects written in %d batches; %d ms behind the stream's tip\n",
		stats.Records, stats.Events, stats.Duplicates, stats.Quarantined, stats.QuarantinedBy[aggregator.QuarantineMalformed],
		stats.QuarantinedBy[aggregator.QuarantineInvalid], stats.Objects, stats.Batches, stats.BehindMS)
	return err
}

func parseStart(s string) (stream.Start, error) {
	switch strings.ToLower(s) {
	case "trim_horizon", "":
		return stream.Start{Kind: stream.TrimHorizon}, nil
	case "latest":
		return stream.Start{Kind: stream.Latest}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return stream.Start{}, usagef("--start %q: want trim_horizon, latest or an RFC 3339 time", s)
	}
	return stream.Start{Kind: stream.AtTimestamp, Time: t}, nil
}

func loadPrices(ctx context.Context, loc string) (*pricing.Book, error) {
	b, err := config.Prices(ctx, loc)
	if err != nil {
		return nil, usagef("%v", errShort(err))
	}
	return b, nil
}

func parseDay(s string) error {
	if s == "" {
		return usagef("flag --day is required (YYYY-MM-DD)")
	}
	if _, err := time.Parse(schemas.DayLayout, s); err != nil {
		return usagef("--day %q is not a date (want YYYY-MM-DD)", s)
	}
	return nil
}

func runCompact(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("compact", stderr)
	day := fs.String("day", "", "day to compact, YYYY-MM-DD (UTC)")
	storeURI := fs.String("store", "", "store: file://DIR or s3://BUCKET/PREFIX")
	prices := fs.String("prices", "", "price CSV (default: the shipped Bedrock price file)")
	scale := fs.Int("scale", -1, "round costs half-up to N decimal places in the CSV (default: exact)")
	force := fs.Bool("force", false, "compact even if the day's grace period for late events has not ended")
	grace := fs.Duration("grace", compaction.DefaultGrace, "how long after midnight UTC a day stays open for late events")
	engine := fs.String("engine", "go", "go: compact here; athena: run the compaction in Athena (s3:// store, see --athena-*); both write the same outputs")
	ath := athenaFlags(fs)
	changed := fs.Int("changed-since-days", 0, "instead of --day: compact again each closed day of the last N whose events changed since its compaction (late events)")
	quiet := fs.Bool("quiet", false, quietUsage)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if *changed < 0 || *changed > 400 || (*changed > 0 && *day != "") {
		return usagef("--changed-since-days %d: want 1 to 400, without --day", *changed)
	}
	if *changed == 0 {
		if err := parseDay(*day); err != nil {
			return err
		}
	}
	switch *engine {
	case "go":
	case "athena":
		if *ath.printSQL {
			return printAthenaSQL(*day, stdout, stderr)
		}
	default:
		return usagef("--engine %q: want go or athena", *engine)
	}
	if err := need("store", *storeURI); err != nil {
		return err
	}
	if *scale > 12 {
		return usagef("--scale %d: at most 12 places", *scale)
	}
	book, compact, err := compactorFor(ctx, *engine, ath, *storeURI, *prices, infoWriter(stderr, *quiet))
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *storeURI)
	if err != nil {
		return err
	}
	prog := progress.New(stderr, "meter compact", *quiet)
	cfg := compaction.Config{Store: st, Day: *day, Prices: book, Scale: compaction.Places(*scale), Force: *force, Grace: *grace,
		Progress: func(read, total int) { prog.Update(int64(read), int64(total), "events objects read", "") }}
	if *changed > 0 {
		err := recompactChanged(ctx, cfg, *changed, compact, stdout)
		prog.Done()
		return err
	}
	res, err := compact(ctx, cfg)
	prog.Done()
	var open *compaction.OpenDayError
	if errors.As(err, &open) {
		return fmt.Errorf("%w; use --force to compact it now", err)
	}
	var unpriced *compaction.UnpricedError
	if err != nil && !errors.As(err, &unpriced) {
		return err
	}
	m := res.Manifest
	state := "new revision"
	if res.Unchanged {
		state = "inputs unchanged, same revision"
	}
	fmt.Fprintf(stdout, "compacted %s (revision %d, %s): %d rows read, %d duplicates dropped, %d of other days ignored, %d quarantine objects for the day\n",
		m.Day, m.Revision, state, m.RowsRead, m.DuplicatesDropped, m.OtherDayRows, m.QuarantineObjects)
	fmt.Fprintf(stdout, "%d invocations, %d input tokens, %d output tokens, total cost %s USD\n",
		m.Totals.Invocations, m.Totals.InputTokens, m.Totals.OutputTokens, m.Totals.TotalCost)
	fmt.Fprintf(stdout, "chargeback: %s\n", res.CSVKey)
	if unpriced != nil {
		return unpriced // named on stderr; the exit status tells a scheduler
	}
	return nil
}

// errShort drops the "open " prefix os errors carry so messages stay one clear line.
func errShort(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay", stderr)
	day := fs.String("day", "", "day to rebuild, YYYY-MM-DD (UTC)")
	streamURI := fs.String("stream", "", "stream to read: file://DIR or kinesis://NAME")
	storeURI := fs.String("store", "", "store: file://DIR or s3://BUCKET/PREFIX")
	margin := fs.Duration("margin", replay.DefaultMargin, "read this long before and after the day, by arrival time, for late and early events")
	apply := fs.Bool("apply", false, "swap the rebuilt day in (the current chargeback is kept as a revision); without it nothing live changes")
	prices := fs.String("prices", "", "price CSV (default: the shipped Bedrock price file)")
	scale := fs.Int("scale", -1, "round costs half-up to N decimal places (default: as the day's current manifest, else exact)")
	keep := fs.Bool("keep-staging", false, "keep the rebuilt day under _replay/DAY/RUN/ in the store")
	run := fs.String("run", "", "name of the staging folder (default: the start time)")
	parallel := fs.Int("parallel", 4, "shards read at once")
	batch := fs.Int("batch", 20000, "records per output batch")
	window := fs.Duration("window", 5*time.Minute, "event-time window size")
	quiet := fs.Bool("quiet", false, quietUsage)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if err := parseDay(*day); err != nil {
		return err
	}
	if err := need("stream", *streamURI, "store", *storeURI); err != nil {
		return err
	}
	if *margin < 0 {
		return usagef("--margin %s: must not be negative", *margin)
	}
	if *parallel < 1 || *batch < 1 {
		return usagef("--parallel and --batch must be at least 1")
	}
	var scaleOpt *int
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "scale" {
			scaleOpt = scale
		}
	})
	if *scale > 12 {
		return usagef("--scale %d: at most 12 places", *scale)
	}
	book, err := loadPrices(ctx, *prices)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *storeURI)
	if err != nil {
		return err
	}
	src, closeStream, err := openSource(ctx, *streamURI)
	if err != nil {
		return err
	}
	defer closeStream()
	m := *margin
	if m == 0 {
		m = -1 // no margin; the collector's zero means its default
	}
	start := time.Now()
	until, _ := time.Parse(schemas.DayLayout, *day)
	until = until.Add(24*time.Hour + *margin)
	if start.Before(until) {
		fmt.Fprintf(stderr, "meter replay: %s plus the margin ends at %s: a shard that is caught up now is read only to now\n", *day, until.Format(time.RFC3339))
	}
	prog := progress.New(stderr, "meter replay", *quiet)
	defer prog.Done()
	onProgress := func(p replay.Progress) {
		// Progress through the arrival range, in thousandths, gives the rate and ETA.
		prog.Update(int64(1000*p.Covered), 1000, "thousandths of the arrival range",
			fmt.Sprintf("%d/%d shards done, %d records", p.ShardsDone, p.Shards, p.Records))
	}
	res, err := replay.Run(ctx, replay.Config{Source: src, Store: st, Day: *day, Margin: m, Prices: book, Scale: scaleOpt,
		Apply: *apply, KeepStaging: *keep, Run: *run, Parallel: *parallel, BatchRecords: *batch,
		Aggregator: aggregator.Config{Window: *window}, Progress: onProgress})
	if res != nil {
		printReplay(stdout, *streamURI, res)
	}
	return err
}

// printReplay writes what a replay read and the difference it makes.
func printReplay(w io.Writer, streamURI string, res *replay.Result) {
	fmt.Fprintf(w, "replayed %s from %s: %d shards, records that arrived %s to %s\n", res.Day, streamURI, res.Shards,
		res.From.Format(time.RFC3339), res.Until.Format(time.RFC3339))
	fmt.Fprintf(w, "read %d records: %d events of the day (%d duplicates), %d events of other days ignored, %d quarantined\n",
		res.Records, res.DayEvents, res.Duplicates, res.OtherDays, res.Quarantined)
	if len(res.CaughtUp) > 0 {
		fmt.Fprintf(w, "caught up before the range ended (nothing newer in the stream): %s\n", strings.Join(res.CaughtUp, ", "))
	}
	if res.Rebuilt == nil {
		return
	}
	d := res.Diff
	fmt.Fprintf(w, "rebuilt: %d chargeback rows, %d invocations, total cost %s USD\n", d.RowsAfter, res.Rebuilt.Day.Totals.Invocations, d.TotalAfter)
	if d.RowsBefore == 0 && len(d.Removed) == 0 {
		fmt.Fprintf(w, "the day has no chargeback in the store yet\n")
	} else {
		fmt.Fprintf(w, "against the day as it stands (%d rows, total cost %s USD): rows added %d, removed %d, changed %d, unchanged %d\n",
			d.RowsBefore, d.TotalBefore, len(d.Added), len(d.Removed), len(d.Changed), d.Unchanged)
	}
	fmt.Fprintf(w, "money that moves: %s USD\n", signed(d.Moved()))
	if !d.Same() {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\tteam_id\tcost_center\tmodel_id\tinvocations\ttotal_cost\tmoves")
		rows := func(kind string, cs []aggregator.RowChange) {
			for _, c := range cs {
				cc := c.CostCenter
				if cc == "" {
					cc = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d -> %d\t%s -> %s\t%s\n", kind, c.TeamID, cc, c.ModelID,
					c.InvocationsBefore, c.InvocationsAfter, c.CostBefore, c.CostAfter, signed(c.CostDiff()))
			}
		}
		rows("added", d.Added)
		rows("removed", d.Removed)
		rows("changed", d.Changed)
		tw.Flush()
	}
	switch {
	case res.Applied != nil:
		state := "a new revision"
		if res.Applied.Unchanged {
			state = "inputs unchanged, same revision"
		}
		fmt.Fprintf(w, "applied: revision %d (%s); %d objects written, %d stale objects deleted; chargeback: %s\n",
			res.Applied.Manifest.Revision, state, len(res.Written), len(res.Deleted), res.Applied.CSVKey)
	default:
		fmt.Fprintf(w, "dry run: nothing live changed (--apply swaps the rebuilt day in)\n")
	}
	if n := len(res.KeptLive); n > 0 {
		fmt.Fprintf(w, "%d live events objects kept (the rebuilt day lacks some of their request ids; the chargeback counts each request id once):\n", n)
		for _, k := range res.KeptLive {
			fmt.Fprintf(w, "  %s: %s\n", k.Key, k.Reason)
		}
	}
	if res.Kept {
		fmt.Fprintf(w, "staging kept: %s\n", res.Staging)
	}
}

func signed(d decimal.Decimal) string {
	if d.IsPositive() {
		return "+" + d.String()
	}
	return d.String()
}
