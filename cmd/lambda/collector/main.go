// Command collector is the collector as an AWS Lambda function (runtime
// provided.al2023, arm64, built as bootstrap with -tags lambda.norpc) on a
// Kinesis event source with tumbling windows: each invocation stages its
// records in the store and the window's final invocation writes the raw
// events, the window aggregates and the quarantine, the same objects
// `meter aggregate` writes for the same records (collector.WindowHandler).
// The event source reports batch item failures, so a batch that could not be
// staged is retried from its first record.
//
// Environment:
//
//	METER_STORE          the store, s3://BUCKET/PREFIX (file://DIR for tests). Required.
//	METER_WINDOW         event-time window size (default 5m; must divide a day)
//	METER_DEDUP_HORIZON  how long a request_id is remembered (default 1h)
//
// Metrics are CloudWatch EMF lines on stdout; logs are JSON on stderr.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/store"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h, err := setup(context.Background(), os.Getenv, metrics.NewEMF(os.Stdout))
	if err != nil {
		log.Error("collector cold start failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

// setup wires the window handler from the environment.
func setup(ctx context.Context, getenv func(string) string, emf *metrics.EMF) (*collector.WindowHandler, error) {
	loc := getenv("METER_STORE")
	if loc == "" {
		return nil, fmt.Errorf("METER_STORE is required: s3://BUCKET/PREFIX")
	}
	st, err := store.Open(ctx, loc)
	if err != nil {
		return nil, fmt.Errorf("METER_STORE %s: %w", loc, err)
	}
	var agg aggregator.Config
	if agg.Window, err = duration(getenv, "METER_WINDOW", 5*time.Minute); err != nil {
		return nil, err
	}
	if agg.Window < time.Second || (24*time.Hour)%agg.Window != 0 {
		return nil, fmt.Errorf("METER_WINDOW %s: want at least 1s and a whole number of windows per day (e.g. 1m, 5m, 1h)", agg.Window)
	}
	if agg.DedupHorizon, err = duration(getenv, "METER_DEDUP_HORIZON", time.Hour); err != nil {
		return nil, err
	}
	h, err := collector.NewWindowHandler(collector.WindowConfig{Store: st, Aggregator: agg, Metrics: emf})
	if err != nil {
		return nil, fmt.Errorf("collector configuration: %w", err)
	}
	return h, nil
}

// duration reads a positive duration variable, def when unset.
func duration(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	s := getenv(name)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive duration such as 5m", name, s)
	}
	return d, nil
}
