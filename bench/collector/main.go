// Command collector benchmarks the collector and aggregator against DuckDB on
// the same input: N usage events as JSON lines (1% redelivered duplicates),
// turned into Hive-partitioned Parquet on local disk.
//
//	go run ./bench/collector -n 1000000 -dir /tmp/meter-bench
//
// Each measurement runs in its own process (GOMAXPROCS=1, DuckDB threads=1),
// so CPU time and peak RSS are its own:
//   - aggregate: decode + dedup + windowing (aggregator.Add, Flush every 20,000)
//   - meter:     encoded records to durable events/ and usage_windows/ Parquet
//     through the collector's Consumer and the file store (fsync'd, checkpointed)
//   - duckdb:    read_json of the same lines, COPY ... TO (FORMAT parquet, PARTITION_BY (dt))
//
// Rates are events per CPU second (user + system), which is the per-core rate
// even on a machine shared with other work.
package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/schemas"
)

type result struct {
	Mode          string  `json:"mode"`
	Events        int     `json:"events"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	WallSeconds   float64 `json:"wall_seconds"`
	EventsPerCPUS float64 `json:"events_per_cpu_second"`
	PeakRSSMB     float64 `json:"peak_rss_mb"`
	ParquetBytes  int64   `json:"parquet_bytes"`
	Files         int     `json:"files"`
}

func main() {
	n := flag.Int("n", 1_000_000, "events (requests plus 1% duplicates)")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "meter-bench-collector"), "work directory")
	mode := flag.String("mode", "all", "all, aggregate, meter or duckdb")
	profile := flag.String("cpuprofile", "", "write a CPU profile of one mode to this file")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/collector:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*mode, *n, *dir); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench/collector:", err)
		os.Exit(1)
	}
}

func run(mode string, n int, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	input := filepath.Join(dir, fmt.Sprintf("events-%d.jsonl", n))
	if mode == "all" {
		if _, err := os.Stat(input); err != nil {
			if err := generate(input, n); err != nil {
				return err
			}
		}
		var rs []result
		for _, m := range []string{"aggregate", "meter", "duckdb"} {
			cmd := exec.Command(os.Args[0], "-mode", m, "-n", fmt.Sprint(n), "-dir", dir)
			cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("%s: %w", m, err)
			}
			var r result
			if err := json.Unmarshal(out, &r); err != nil {
				return fmt.Errorf("%s: %w: %s", m, err, out)
			}
			rs = append(rs, r)
		}
		fmt.Printf("%-10s %10s %12s %14s %12s %14s %10s\n", "mode", "events", "cpu s", "events/cpu-s", "wall s", "peak RSS MB/M", "bytes/event")
		for _, r := range rs {
			perEvent := "-"
			if r.ParquetBytes > 0 {
				perEvent = fmt.Sprintf("%.1f", float64(r.ParquetBytes)/float64(r.Events))
			}
			fmt.Printf("%-10s %10d %12.2f %14.0f %12.2f %14.0f %10s\n", r.Mode, r.Events, r.CPUSeconds, r.EventsPerCPUS, r.WallSeconds,
				r.PeakRSSMB/(float64(r.Events)/1e6), perEvent)
		}
		return nil
	}
	var r result
	var err error
	switch mode {
	case "aggregate":
		r, err = benchAggregate(input)
	case "meter":
		r, err = benchMeter(input, filepath.Join(dir, "meter-store"))
	case "duckdb":
		r, err = benchDuckDB(input, filepath.Join(dir, "duckdb-out"))
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return err
	}
	r.Mode = mode
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	r.PeakRSSMB = float64(ru.Maxrss) / 1024
	r.EventsPerCPUS = float64(r.Events) / r.CPUSeconds
	return json.NewEncoder(os.Stdout).Encode(r)
}

// generate writes n events over one day, time-ordered, 1% sent twice.
func generate(path string, n int) error {
	models := []string{"anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0", "amazon.titan-text-express-v1",
		"meta.llama3-8b-instruct-v1:0", "mistral.mistral-7b-instruct-v0:2", "cohere.command-r-v1:0"}
	teams := []string{"team-a", "team-b", "team-c", "team-d", "team-e", "team-f", "team-g", "team-h"}
	rng := rand.New(rand.NewPCG(1, 2))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	step := 24 * time.Hour / time.Duration(n)
	var dup []byte
	for i := 0; i < n; i++ {
		if dup != nil && i%100 == 50 {
			w.Write(dup)
			dup = nil
			continue
		}
		team := rng.IntN(len(teams))
		e := schemas.Event{SchemaVersion: 1, EventID: fmt.Sprintf("ev-%09d", i), RequestID: fmt.Sprintf("req-%09d", i),
			Timestamp: day.Add(step * time.Duration(i)).Truncate(time.Millisecond), TeamID: teams[team], CostCenter: fmt.Sprintf("cc-%d", team),
			ModelID: models[rng.IntN(len(models))], Operation: "Converse", Status: schemas.StatusSuccess,
			InputTokens: int64(rng.IntN(8000)), OutputTokens: int64(rng.IntN(2000)), LatencyMS: int64(100 + rng.IntN(3000)), Region: "us-east-1"}
		if rng.IntN(20) == 0 {
			e.Status = schemas.StatusThrottled
			e.InputTokens, e.OutputTokens = 0, 0
		}
		line, _ := json.Marshal(e)
		line = append(line, '\n')
		w.Write(line)
		if i%100 == 10 {
			e.EventID += "-again"
			dup, _ = json.Marshal(e)
			dup = append(dup, '\n')
		}
	}
	return w.Flush()
}

// records reads the input as stream records of one shard, keyed by request_id.
func records(path string) ([]stream.Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var recs []stream.Record
	for i, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		key := ""
		if j := bytes.Index(line, []byte(`"request_id":"`)); j >= 0 {
			rest := line[j+14:]
			key = string(rest[:bytes.IndexByte(rest, '"')])
		}
		recs = append(recs, stream.Record{ShardID: stream.ShardName(0), SequenceNumber: stream.FormatFileSeq(int64(i)), PartitionKey: key, Data: line})
	}
	return recs, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchAggregate(input string) (result, error) {
	recs, err := records(input)
	if err != nil {
		return result{}, err
	}
	c0, w0 := cpuTime(), time.Now()
	agg := aggregator.New(aggregator.Config{})
	now := time.Now()
	for i, r := range recs {
		agg.Add(aggregator.Input{Data: r.Data, Source: r.SequenceNumber, PartitionKey: r.PartitionKey}, now)
		if i%20000 == 19999 {
			agg.Flush()
		}
	}
	agg.Flush()
	return result{Events: len(recs), CPUSeconds: (cpuTime() - c0).Seconds(), WallSeconds: time.Since(w0).Seconds()}, nil
}

// memSource is one shard of records already read.
type memSource struct{ recs []stream.Record }

func (s *memSource) Shards(context.Context) ([]stream.Shard, error) {
	return []stream.Shard{{ID: stream.ShardName(0)}}, nil
}
func (s *memSource) Open(context.Context, string, stream.Start) (stream.Iterator, error) {
	return &memIterator{recs: s.recs}, nil
}

type memIterator struct{ recs []stream.Record }

func (it *memIterator) Next(_ context.Context, max int) ([]stream.Record, error) {
	n := min(max, len(it.recs))
	out := it.recs[:n]
	it.recs = it.recs[n:]
	return out, nil
}
func (it *memIterator) Close() error { return nil }

func benchMeter(input, out string) (result, error) {
	recs, err := records(input)
	if err != nil {
		return result{}, err
	}
	os.RemoveAll(out)
	st, err := store.OpenFile(out)
	if err != nil {
		return result{}, err
	}
	c0, w0 := cpuTime(), time.Now()
	c, err := collector.New(collector.Config{Source: &memSource{recs: recs}, Store: st, BatchRecords: 20000})
	if err != nil {
		return result{}, err
	}
	if _, err := c.Run(context.Background(), true); err != nil {
		return result{}, err
	}
	r := result{Events: len(recs), CPUSeconds: (cpuTime() - c0).Seconds(), WallSeconds: time.Since(w0).Seconds()}
	r.ParquetBytes, r.Files = parquetSize(out, "events", "usage_windows")
	return r, nil
}

func benchDuckDB(input, out string) (result, error) {
	os.RemoveAll(out)
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return result{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`SET threads = 1`); err != nil {
		return result{}, err
	}
	c0, w0 := cpuTime(), time.Now()
	cols := `{schema_version: 'INTEGER', event_id: 'VARCHAR', request_id: 'VARCHAR', "timestamp": 'TIMESTAMPTZ', team_id: 'VARCHAR',
		cost_center: 'VARCHAR', model_id: 'VARCHAR', operation: 'VARCHAR', status: 'VARCHAR', input_tokens: 'BIGINT',
		output_tokens: 'BIGINT', latency_ms: 'BIGINT', region: 'VARCHAR'}`
	q := fmt.Sprintf(`COPY (SELECT *, strftime("timestamp" AT TIME ZONE 'UTC', '%%Y-%%m-%%d') AS dt
		FROM read_json('%s', format = 'newline_delimited', columns = %s))
		TO '%s' (FORMAT parquet, PARTITION_BY (dt))`, input, cols, out)
	if _, err := db.Exec(q); err != nil {
		return result{}, err
	}
	var events int
	if err := db.QueryRow(fmt.Sprintf(`SELECT count(*) FROM read_parquet('%s/*/*.parquet')`, out)).Scan(&events); err != nil {
		return result{}, err
	}
	r := result{Events: events, CPUSeconds: (cpuTime() - c0).Seconds(), WallSeconds: time.Since(w0).Seconds()}
	r.ParquetBytes, r.Files = parquetSize(out, "")
	return r, nil
}

func parquetSize(root string, tables ...string) (int64, int) {
	var total int64
	files := 0
	for _, t := range tables {
		filepath.WalkDir(filepath.Join(root, t), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
				if fi, err := d.Info(); err == nil {
					total += fi.Size()
					files++
				}
			}
			return nil
		})
	}
	return total, files
}
