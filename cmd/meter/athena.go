package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/athenaq"
	"github.com/meter-dev/meter/internal/config"
)

// athenaOptions are meter compact's flags for --engine athena.
type athenaOptions struct {
	workgroup, database, output *string
	printSQL                    *bool
	poll                        *time.Duration
}

func athenaFlags(fs *flag.FlagSet) *athenaOptions {
	return &athenaOptions{
		workgroup: fs.String("athena-workgroup", "", "with --engine athena: the workgroup (default primary)"),
		database:  fs.String("athena-database", "meter", "with --engine athena: the Glue database of the events and prices tables"),
		output:    fs.String("athena-output", "", "with --engine athena: s3:// location for query results (default: the workgroup's)"),
		printSQL:  fs.Bool("print-sql", false, "with --engine athena: print the compaction's SQL and submit nothing"),
		poll:      fs.Duration("athena-poll", athenaq.DefaultPoll, "with --engine athena: first wait between status checks"),
	}
}

// compactorFor returns the price book and the function that compacts one
// day with the engine asked for.
func compactorFor(ctx context.Context, engine string, o *athenaOptions, storeURI, prices string, stderr io.Writer) (*pricing.Book, func(context.Context, compaction.Config) (*compaction.Result, error), error) {
	if engine != "athena" {
		book, err := loadPrices(ctx, prices)
		return book, (&compaction.Engines{}).Compact, err
	}
	if !strings.HasPrefix(storeURI, "s3://") {
		return nil, nil, usagef("--engine athena needs an s3:// store (Athena reads only S3), not %s", storeURI)
	}
	if o.output != nil && *o.output != "" && !strings.HasPrefix(*o.output, "s3://") {
		return nil, nil, usagef("--athena-output %q: want s3://BUCKET/PREFIX/", *o.output)
	}
	book, priceCSV, err := config.PriceFile(ctx, prices)
	if err != nil {
		return nil, nil, usagef("%v", errShort(err))
	}
	c, err := athenaq.New(ctx, athenaq.Client{Workgroup: *o.workgroup, Database: *o.database, OutputLocation: *o.output, Poll: *o.poll})
	if err != nil {
		return nil, nil, err
	}
	ath := compaction.Athena{Client: c, Location: storeURI, PriceCSV: priceCSV}
	return book, func(ctx context.Context, cfg compaction.Config) (*compaction.Result, error) {
		res, err := compaction.CompactAthena(ctx, cfg, ath)
		if res == nil {
			return nil, err
		}
		if len(res.QueryIDs) > 0 {
			fmt.Fprintf(stderr, "meter compact: %s in Athena: %d queries (%s), %d bytes scanned\n",
				cfg.Day, len(res.QueryIDs), strings.Join(res.QueryIDs, ", "), res.ScannedBytes)
		}
		return res.Result, err
	}, nil
}

// printAthenaSQL is --engine athena --print-sql: the query, for running by hand.
func printAthenaSQL(day string, stdout, stderr io.Writer) error {
	q, err := compaction.AthenaSQL(day)
	if err != nil {
		return usagef("%v", err)
	}
	fmt.Fprintf(stderr, "the SQL below (infra/athena/compact.sql for %s) runs in Athena engine v3 over the events and prices tables (infra/athena/tables.sql, prices.sql); printed only: it writes no CSV, manifest or revision\n", day)
	fmt.Fprintln(stdout, q)
	return nil
}

// recompactChanged is --changed-since-days N: the scheduled compactor's
// late-event pass, by hand.
func recompactChanged(ctx context.Context, cfg compaction.Config, days int, compact func(context.Context, compaction.Config) (*compaction.Result, error), stdout io.Writer) error {
	done, err := compaction.RecompactChanged(ctx, cfg, time.Now(), days, compact)
	for _, d := range done {
		if d.Result != nil {
			fmt.Fprintf(stdout, "compacted %s again (revision %d, engine %s): %s\n", d.Day, d.Result.Manifest.Revision, d.Result.Manifest.Engine, d.Reason)
		}
	}
	if len(done) == 0 && err == nil {
		fmt.Fprintf(stdout, "no closed day of the last %d changed since its compaction\n", days)
	}
	return err
}

// infoWriter is stderr, or nothing with --quiet.
func infoWriter(stderr io.Writer, quiet bool) io.Writer {
	if quiet {
		return io.Discard
	}
	return stderr
}
