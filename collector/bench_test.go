package collector_test

// Benchmarks of the collector's hot path; bench/collector compares the whole
// pipeline with DuckDB. Run on one core:
//
//	GOMAXPROCS=1 taskset -c 1 go test ./collector -run '^$' -bench 'AggregateAdd|Pipeline' -benchmem -benchtime 3x
//
// Rates are events per CPU second of the process (one core, GC included).

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
)

const benchRequests = 200_000

func benchRecords(b *testing.B) []stream.Record {
	b.Helper()
	u := generate(b, genOptions{requests: benchRequests, days: usageDays, dupRate: 0.01, dupSpan: 1000, seed: 1})
	recs := make([]stream.Record, len(u.records))
	for i, e := range u.records {
		recs[i] = stream.Record{ShardID: stream.ShardName(0), SequenceNumber: stream.FormatFileSeq(int64(i)), PartitionKey: e.PartitionKey, Data: e.Data}
	}
	return recs
}

// BenchmarkAggregateAdd is decode + dedup + windowing: aggregator.Add over
// pre-encoded JSON records, flushed every 20,000 as the consumer does.
func BenchmarkAggregateAdd(b *testing.B) {
	recs := benchRecords(b)
	now := time.Now()
	b.ReportAllocs()
	n := 0
	var spent time.Duration
	for b.Loop() {
		t0 := cpuTime()
		agg := aggregator.New(aggregator.Config{})
		for i, r := range recs {
			agg.Add(aggregator.Input{Data: r.Data, Source: r.SequenceNumber, PartitionKey: r.PartitionKey}, now)
			if i%20000 == 19999 {
				agg.Flush()
			}
		}
		agg.Flush()
		n += len(recs)
		spent += cpuTime() - t0
	}
	b.ReportMetric(float64(n)/spent.Seconds(), "events/cpu-s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkPipeline is encoded records to durable Parquet files on disk: the
// consumer over records already read, writing events and usage_windows
// Parquet to the file store (fsync'd) and checkpointing each batch.
func BenchmarkPipeline(b *testing.B) {
	recs := benchRecords(b)
	b.ReportAllocs()
	n := 0
	var bytes int64
	var spent time.Duration
	for b.Loop() {
		dir := b.TempDir()
		t0 := cpuTime()
		st, err := store.OpenFile(dir)
		if err != nil {
			b.Fatal(err)
		}
		c := mustConsumer(b, collector.Config{Source: &recordSource{shard: stream.ShardName(0), recs: recs}, Store: st, BatchRecords: 20000})
		if _, err := c.Run(context.Background(), true); err != nil {
			b.Fatal(err)
		}
		n += len(recs)
		spent += cpuTime() - t0
		b.StopTimer()
		bytes = 0
		for _, table := range []string{"events", "usage_windows"} {
			files, _ := filepath.Glob(filepath.Join(dir, table, "*", "*.parquet"))
			for _, f := range files {
				if fi, err := os.Stat(f); err == nil {
					bytes += fi.Size()
				}
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n)/spent.Seconds(), "events/cpu-s")
	b.ReportMetric(float64(bytes)/float64(len(recs)), "parquet-bytes/event")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the CPU time (user and system) this process has used: on a
// shared machine events per CPU second is the per-core rate, where wall time
// would count the time other processes held the core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
