// Command pipeline times meter against DuckDB doing the same work on the same
// day of usage events, through the CLI as a new user runs it, ZSTD on both
// sides:
//
//   - put:       `meter put` of the day's JSON lines into a file stream
//   - aggregate: `meter aggregate --until-idle` (stream -> durable events/ and
//     usage_windows/ Parquet, deduplicated and windowed on the way)
//   - duck-ingest: DuckDB read_json of the same lines + COPY ... TO
//     (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt))
//   - compact:   `meter compact --force` of the day aggregate wrote (dedup,
//     pricing, the daily Parquet, the chargeback CSV, manifest)
//   - duck-compact: DuckDB over the same events/ files: the day's
//     deduplicated rows as sorted ZSTD Parquet, then the chargeback from them
//     with infra/athena/compact.sql (dedup and pricing per event)
//
// The day: N events (1% redelivered), 10 teams x 6 models (60 groups),
// random UUID v4 request and event ids, near time order (up to 2 s of jitter).
// Each phase runs in its own child process; wall time, CPU time (user +
// system) and peak RSS are the child's (getrusage). DuckDB uses every core
// (2 threads here), as does meter.
//
//	go run ./bench/pipeline -n 1000000 -dir /tmp/meter-pipeline -runs 2
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"log"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/athenalocal"
	"github.com/meter-dev/meter/schemas"
)

const day = "2026-11-25"

func main() {
	n := flag.Int("n", 1_000_000, "events in the day, redeliveries included")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "meter-pipeline"), "work directory (the input is kept and reused)")
	runs := flag.Int("runs", 1, "runs of every phase")
	phases := flag.String("phases", "put,aggregate,duck-ingest,compact,duck-compact", "phases to run, in order")
	mode := flag.String("mode", "", "internal: duck-ingest or duck-compact in this process")
	flag.Parse()
	input := filepath.Join(*dir, fmt.Sprintf("events-%d.jsonl", *n))
	switch *mode {
	case "duck-ingest":
		duckIngest(input, filepath.Join(*dir, "duck-ingest"))
		return
	case "duck-compact":
		duckCompact(*dir)
		return
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	if _, err := os.Stat(input); err != nil {
		if err := generate(input, *n); err != nil {
			log.Fatal(err)
		}
	}
	meter := filepath.Join(*dir, "meter")
	build := exec.Command("go", "build", "-o", meter, "./cmd/meter")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		log.Fatalf("building meter: %v", err)
	}
	fi, _ := os.Stat(input)
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("%d events, %.0f MB of JSON lines; load average before: %s", *n, float64(fi.Size())/1e6, load)
	fmt.Printf("%-13s %8s %8s %10s %12s %s\n", "phase", "wall s", "cpu s", "peak MiB", "bytes/event", "note")
	streamDir, storeDir := filepath.Join(*dir, "stream"), filepath.Join(*dir, "store")
	for r := 0; r < *runs; r++ {
		for _, ph := range strings.Split(*phases, ",") {
			var cmd *exec.Cmd
			note := ""
			switch ph {
			case "put":
				os.RemoveAll(streamDir)
				cmd = exec.Command(meter, "put", "--stream", "file://"+streamDir, input)
			case "aggregate":
				os.RemoveAll(storeDir)
				cmd = exec.Command(meter, "aggregate", "--stream", "file://"+streamDir, "--store", "file://"+storeDir, "--until-idle", "--quiet")
			case "duck-ingest", "duck-compact":
				cmd = exec.Command(os.Args[0], "-mode", ph, "-n", fmt.Sprint(*n), "-dir", *dir)
			case "compact":
				cmd = exec.Command(meter, "compact", "--day", day, "--store", "file://"+storeDir, "--force", "--quiet")
			default:
				log.Fatalf("unknown phase %q", ph)
			}
			cmd.Stderr = os.Stderr
			t0 := time.Now()
			out, err := cmd.Output()
			wall := time.Since(t0)
			if err != nil {
				log.Fatalf("%s: %v\n%s", ph, err, out)
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			perEvent := "-"
			switch ph {
			case "put":
				note = fmt.Sprintf("%.0f MB/s of JSON lines", float64(fi.Size())/1e6/wall.Seconds())
			case "aggregate":
				b := size(filepath.Join(storeDir, "events"))
				perEvent = fmt.Sprintf("%.1f", float64(b)/float64(*n))
				note = fmt.Sprintf("events/ %.1f MB, usage_windows/ %.1f MB", float64(b)/1e6, float64(size(filepath.Join(storeDir, "usage_windows")))/1e6)
			case "duck-ingest":
				b := size(filepath.Join(*dir, "duck-ingest"))
				perEvent = fmt.Sprintf("%.1f", float64(b)/float64(*n))
			case "compact":
				b := size(filepath.Join(storeDir, "daily"))
				note = fmt.Sprintf("daily/ %.1f MB", float64(b)/1e6)
			case "duck-compact":
				note = strings.TrimSpace(string(out))
			}
			fmt.Printf("%-13s %8.2f %8.2f %10.0f %12s %s\n", ph, wall.Seconds(), cpu.Seconds(), float64(ru.Maxrss)/1024, perEvent, note)
		}
	}
	if strings.Contains(*phases, "compact") && strings.Contains(*phases, "duck-compact") {
		if err := compareChargeback(*dir); err != nil {
			log.Fatal(err)
		}
		fmt.Println("chargeback rows: meter and DuckDB agree exactly")
	}
	load, _ = os.ReadFile("/proc/loadavg")
	fmt.Printf("load average after: %s", load)
}

func size(root string) int64 {
	var total int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// generate writes n events of one day as JSON lines: near time order, every
// 100th line a redelivery of an event some lines before.
func generate(path string, n int) error {
	models := []string{"anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0", "amazon.titan-text-express-v1",
		"meta.llama3-8b-instruct-v1:0", "mistral.mistral-7b-instruct-v0:2", "cohere.command-r-v1:0"}
	ops := []string{"Converse", "InvokeModel", "ConverseStream", "InvokeModelWithResponseStream"}
	rng := mrand.New(mrand.NewPCG(1, 2))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	start, _ := time.Parse(schemas.DayLayout, day)
	step := 24 * time.Hour / time.Duration(n)
	var recent [][]byte
	for i := 0; i < n; i++ {
		if i%100 == 99 && len(recent) > 0 {
			w.Write(recent[rng.IntN(len(recent))])
			continue
		}
		team := rng.IntN(10)
		ts := start.Add(step*time.Duration(i) + time.Duration(rng.IntN(2000))*time.Millisecond)
		if ts.Format(schemas.DayLayout) != day {
			ts = start.Add(step * time.Duration(i))
		}
		e := schemas.Event{SchemaVersion: 1, EventID: uuid(), RequestID: uuid(), Timestamp: ts.Truncate(time.Millisecond),
			TeamID: fmt.Sprintf("team-%02d", team), CostCenter: fmt.Sprintf("cc-%02d", team), ModelID: models[rng.IntN(len(models))],
			Operation: ops[rng.IntN(len(ops))], Status: schemas.StatusSuccess,
			InputTokens: int64(rng.IntN(8000)), OutputTokens: int64(rng.IntN(2000)), LatencyMS: int64(100 + rng.IntN(3000)),
			APIKeyID: fmt.Sprintf("key-%02d", team), Region: "us-east-1"}
		if rng.IntN(20) == 0 {
			e.Status = schemas.StatusThrottled
			e.InputTokens, e.OutputTokens = 0, 0
		}
		line, _ := json.Marshal(e)
		line = append(line, '\n')
		w.Write(line)
		if len(recent) < 64 {
			recent = append(recent, line)
		} else {
			recent[rng.IntN(64)] = line
		}
	}
	return w.Flush()
}

func openDuck() *sql.DB {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`SET TimeZone = 'UTC'`); err != nil {
		log.Fatal(err)
	}
	return db
}

// duckIngest is DuckDB's ingest of the same lines: typed read_json, the
// partition column from the event time, partitioned ZSTD Parquet.
func duckIngest(input, out string) {
	os.RemoveAll(out)
	db := openDuck()
	defer db.Close()
	cols := `{schema_version: 'INTEGER', event_id: 'VARCHAR', request_id: 'VARCHAR', "timestamp": 'TIMESTAMPTZ', team_id: 'VARCHAR',
		cost_center: 'VARCHAR', model_id: 'VARCHAR', operation: 'VARCHAR', status: 'VARCHAR', input_tokens: 'BIGINT',
		output_tokens: 'BIGINT', latency_ms: 'BIGINT', cache_read_input_tokens: 'BIGINT', cache_write_input_tokens: 'BIGINT',
		image_count: 'BIGINT', image_height: 'BIGINT', image_width: 'BIGINT', image_steps: 'BIGINT', image_quality: 'VARCHAR',
		api_key_id: 'VARCHAR', region: 'VARCHAR', pricing_tier: 'VARCHAR'}`
	q := fmt.Sprintf(`COPY (SELECT *, strftime("timestamp", '%%Y-%%m-%%d') AS dt
		FROM read_json('%s', format = 'newline_delimited', columns = %s))
		TO '%s' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt))`, input, cols, out)
	if _, err := db.Exec(q); err != nil {
		log.Fatal(err)
	}
}

func prepareCompact(db *sql.DB, dir string) {
	prices := filepath.Join(dir, "prices.csv")
	// The shipped price file, the one `meter compact` prices with by default.
	data, err := os.ReadFile(filepath.Join("aggregator", "pricing", "default_prices.csv"))
	if err != nil {
		log.Fatalf("run from the repository root: %v", err)
	}
	if err := os.WriteFile(prices, data, 0o644); err != nil {
		log.Fatal(err)
	}
	for _, q := range []string{
		`CREATE MACRO from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)`,
		`CREATE VIEW prices AS SELECT * FROM read_csv('` + prices + `', header = false, all_varchar = true, auto_detect = false,
			delim = ',', quote = '"', null_padding = true, strict_mode = false,
			columns = {'model_id': 'VARCHAR', 'effective_from': 'VARCHAR', 'input_per_1k': 'VARCHAR', 'output_per_1k': 'VARCHAR',
			'pricing_tier': 'VARCHAR', 'cache_read_per_1k': 'VARCHAR', 'cache_write_per_1k': 'VARCHAR', 'per_image': 'VARCHAR',
			'image_max_pixels': 'VARCHAR', 'image_quality': 'VARCHAR', 'image_max_steps': 'VARCHAR', 'source': 'VARCHAR'})`,
	} {
		if _, err := db.Exec(q); err != nil {
			log.Fatalf("%s: %v", q, err)
		}
	}
}

// duckCompact: the day's deduplicated rows (the earliest delivery of each
// request_id) as ZSTD Parquet sorted like meter's daily file, then the
// chargeback from that file with infra/athena/compact.sql.
func duckCompact(dir string) {
	db := openDuck()
	defer db.Close()
	prepareCompact(db, dir)
	daily := filepath.Join(dir, "duck-daily.parquet")
	events := filepath.Join(dir, "store", "events", "dt="+day, "*.parquet")
	q := `COPY (SELECT * EXCLUDE (rn) FROM (
			SELECT *, row_number() OVER (PARTITION BY request_id ORDER BY "timestamp", event_id) AS rn
			FROM read_parquet('` + events + `')
			WHERE "timestamp" >= TIMESTAMPTZ '` + day + ` 00:00:00+00' AND "timestamp" < TIMESTAMPTZ '` + day + ` 00:00:00+00' + INTERVAL 1 DAY)
		WHERE rn = 1 ORDER BY team_id, model_id, "timestamp", request_id)
		TO '` + daily + `' (FORMAT parquet, COMPRESSION zstd)`
	if _, err := db.Exec(q); err != nil {
		log.Fatalf("%s: %v", q, err)
	}
	rows := chargeback(db, daily)
	total := decimal.Zero
	for _, r := range rows {
		d, _ := decimal.NewFromString(r[9])
		total = total.Add(d)
	}
	fmt.Printf("%d chargeback rows, total %s USD\n", len(rows), total)
}

func chargeback(db *sql.DB, daily string) [][]string {
	if _, err := db.Exec(`CREATE OR REPLACE VIEW events AS SELECT *, '` + day + `' AS dt FROM read_parquet('` + daily + `')`); err != nil {
		log.Fatal(err)
	}
	q, _ := compaction.AthenaSQL(day)
	out, err := athenalocal.QueryText(context.Background(), db, q)
	if err != nil {
		log.Fatal(err)
	}
	return out
}

func compareChargeback(dir string) error {
	f, err := os.ReadFile(filepath.Join(dir, "store", schemas.ChargebackCSVKey(day)))
	if err != nil {
		return err
	}
	goRows, err := csv.NewReader(strings.NewReader(string(f))).ReadAll()
	if err != nil {
		return err
	}
	db := openDuck()
	defer db.Close()
	prepareCompact(db, dir)
	sqlRows := chargeback(db, filepath.Join(dir, "duck-daily.parquet"))
	if len(sqlRows) != len(goRows)-1 {
		return fmt.Errorf("meter %d rows, DuckDB %d", len(goRows)-1, len(sqlRows))
	}
	for i, s := range sqlRows {
		g := goRows[i+1]
		for c := 0; c < len(g)-1; c++ { // all but revision
			if g[c] == s[c] {
				continue
			}
			x, e1 := decimal.NewFromString(g[c])
			y, e2 := decimal.NewFromString(s[c])
			if e1 != nil || e2 != nil || !x.Equal(y) {
				return fmt.Errorf("row %d column %s: meter %q, DuckDB %q", i, goRows[0][c], g[c], s[c])
			}
		}
	}
	return nil
}
