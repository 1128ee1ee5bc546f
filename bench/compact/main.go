// Command compact benchmarks the daily compaction against DuckDB over the
// same store files: a generated day (1% duplicates, 5 teams, 12 models, cache
// tokens, images, a price change at noon), compacted by the Go engine (meter
// compact: dedup, pricing, chargeback CSV, daily Parquet, manifest) and by
// DuckDB doing the same work: the day's deduplicated rows as sorted ZSTD
// Parquet, then infra/athena/compact.sql over them (pricing, aggregation).
// Each engine runs in its own child process so its wall time and peak RSS
// (getrusage maxrss) are its own; the chargeback rows of the two must agree.
//
//	go run ./bench/compact -events 1000000 -dir /tmp/meter-bench-1m
package main

import (
	"context"
	"database/sql"
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/athenalocal"
	"github.com/meter-dev/meter/internal/config"
	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

const day = "2026-03-14"

func main() {
	events := flag.Int("events", 1_000_000, "distinct requests in the day")
	perFile := flag.Int("per-file", 250_000, "events per events object")
	dir := flag.String("dir", "", "working directory (the store and price file); reused when it exists")
	mode := flag.String("mode", "", "internal: go or duckdb (run one engine in this process)")
	runs := flag.Int("runs", 1, "runs of each engine")
	cpuprofile := flag.String("cpuprofile", "", "with -mode go: write a CPU profile here")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-dir is required")
	}
	storeDir, prices := filepath.Join(*dir, "store"), filepath.Join(*dir, "prices.csv")
	switch *mode {
	case "go":
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				log.Fatal(err)
			}
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
		runGo(storeDir, prices)
		return
	case "duckdb":
		runDuck(storeDir, prices)
		return
	}
	if _, err := os.Stat(filepath.Join(*dir, "generated")); err != nil {
		t0 := time.Now()
		if err := generate(storeDir, prices, *events, *perFile); err != nil {
			log.Fatal(err)
		}
		os.WriteFile(filepath.Join(*dir, "generated"), nil, 0o644)
		fmt.Fprintf(os.Stderr, "generated %d events in %s\n", *events, time.Since(t0).Round(time.Millisecond))
	}
	var inBytes int64
	filepath.Walk(filepath.Join(storeDir, "events"), func(_ string, fi os.FileInfo, _ error) error {
		if fi != nil && !fi.IsDir() {
			inBytes += fi.Size()
		}
		return nil
	})
	fmt.Printf("day %s: %d requests (+1%% duplicates), %.1f MiB of events Parquet\n", day, *events, float64(inBytes)/(1<<20))
	for i := 0; i < *runs; i++ {
		for _, m := range []string{"go", "duckdb"} {
			cmd := exec.Command(os.Args[0], "-mode", m, "-dir", *dir)
			cmd.Stderr = os.Stderr
			t0 := time.Now()
			out, err := cmd.Output()
			wall := time.Since(t0)
			if err != nil {
				log.Fatalf("%s: %v", m, err)
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			fmt.Printf("%-7s wall %7.2f s  cpu %7.2f s  peak RSS %7.1f MiB  %s", m, wall.Seconds(), cpu.Seconds(), float64(ru.Maxrss)/1024, out)
		}
	}
	if err := compareOutputs(storeDir, prices); err != nil {
		log.Fatal(err)
	}
	fmt.Println("chargeback rows: Go engine and DuckDB agree exactly")
}

func generate(storeDir, prices string, events, perFile int) error {
	evDir := filepath.Join(storeDir, "events", "dt="+day)
	if err := os.MkdirAll(evDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(prices, []byte(daygen.PriceCSV(day)), 0o644); err != nil {
		return err
	}
	files := (events + perFile - 1) / perFile
	_, err := daygen.Generate(daygen.Config{Day: day, Events: events, Files: files, OtherDay: 100, Seed: 42},
		func(name string) (io.WriteCloser, error) { return os.Create(filepath.Join(evDir, name)) })
	return err
}

func runGo(storeDir, prices string) {
	book, err := config.Prices(context.Background(), prices)
	if err != nil {
		log.Fatal(err)
	}
	st, err := store.OpenFile(storeDir)
	if err != nil {
		log.Fatal(err)
	}
	res, err := compaction.Compact(context.Background(), compaction.Config{Store: st, Day: day, Prices: book, Force: true, TempDir: filepath.Dir(storeDir)})
	if err != nil {
		log.Fatal(err)
	}
	m := res.Manifest
	fmt.Printf("%d rows read, %d duplicates, %d chargeback rows, total %s USD, %d buckets, daily Parquet written\n",
		m.RowsRead, m.DuplicatesDropped, len(res.Day.Chargeback), m.Totals.TotalCost, res.Buckets)
}

func openDuck(storeDir, prices string) *sql.DB {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`SET TimeZone = 'UTC'`,
		`CREATE MACRO from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)`,
		`CREATE VIEW events AS SELECT * FROM read_parquet('` + filepath.Join(storeDir, "events", "*", "*.parquet") +
			`', hive_partitioning = true, hive_types = {'dt': VARCHAR})`,
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
	return db
}

func duckRows(db *sql.DB) [][]string {
	q, _ := compaction.AthenaSQL(day)
	out, err := athenalocal.QueryText(context.Background(), db, q)
	if err != nil {
		log.Fatal(err)
	}
	return out
}

// runDuck does the Go engine's work in DuckDB: the day's deduplicated rows
// (the earliest delivery of each request_id) written as ZSTD Parquet sorted
// like the daily file, then the chargeback from that file with
// infra/athena/compact.sql (pricing per event, the group-by).
func runDuck(storeDir, prices string) {
	db := openDuck(storeDir, prices)
	defer db.Close()
	daily := filepath.Join(filepath.Dir(storeDir), "duck-daily.parquet")
	q := `COPY (SELECT * EXCLUDE (rn) FROM (
			SELECT *, row_number() OVER (PARTITION BY request_id ORDER BY "timestamp", event_id) AS rn
			FROM events
			WHERE dt = '` + day + `' AND "timestamp" >= TIMESTAMPTZ '` + day + ` 00:00:00+00'
				AND "timestamp" < TIMESTAMPTZ '` + day + ` 00:00:00+00' + INTERVAL 1 DAY)
		WHERE rn = 1 ORDER BY team_id, model_id, "timestamp", request_id)
		TO '` + daily + `' (FORMAT parquet, COMPRESSION zstd)`
	if _, err := db.Exec(q); err != nil {
		log.Fatalf("%s: %v", q, err)
	}
	if _, err := db.Exec(`CREATE OR REPLACE VIEW events AS SELECT *, '` + day + `' AS dt FROM read_parquet('` + daily + `')`); err != nil {
		log.Fatal(err)
	}
	rows := duckRows(db)
	total := decimal.Zero
	for _, r := range rows {
		d, _ := decimal.NewFromString(r[9])
		total = total.Add(d)
	}
	fmt.Printf("%d chargeback rows, total %s USD (daily ZSTD Parquet, then infra/athena/compact.sql over it)\n", len(rows), total)
}

func compareOutputs(storeDir, prices string) error {
	f, err := os.ReadFile(filepath.Join(storeDir, schemas.ChargebackCSVKey(day)))
	if err != nil {
		return err
	}
	goRows, err := csv.NewReader(strings.NewReader(string(f))).ReadAll()
	if err != nil {
		return err
	}
	db := openDuck(storeDir, prices)
	defer db.Close()
	sqlRows := duckRows(db)
	if len(sqlRows) != len(goRows)-1 {
		return fmt.Errorf("Go %d rows, DuckDB %d", len(goRows)-1, len(sqlRows))
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
				return fmt.Errorf("row %d column %s: Go %q, DuckDB %q", i, goRows[0][c], g[c], s[c])
			}
		}
	}
	return nil
}
