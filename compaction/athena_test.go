package compaction_test

// The Athena query of the daily compaction, run by DuckDB (embedded through
// cgo, no server) over the same store files, must give the Go engine's
// chargeback row for row. DuckDB stands in for Athena with as little
// translation as possible: the events and prices tables become views over the
// same Parquet and CSV files, and Trino's from_iso8601_timestamp a one-line
// macro. The query text itself is run unchanged.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/athenalocal"
	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/schemas"
)

// duckAthena opens DuckDB with the events table over a store directory and the
// prices table over a price file, as infra/athena/tables.sql and prices.sql
// declare them in Athena.
func duckAthena(t testing.TB, storeDir, pricesPath string) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // one session: the settings below hold for every query
	for _, q := range []string{
		`SET TimeZone = 'UTC'`,
		`CREATE MACRO from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)`,
		`CREATE VIEW events AS SELECT * FROM read_parquet('` + filepath.Join(storeDir, "events", "*", "*.parquet") +
			`', hive_partitioning = true, hive_types = {'dt': VARCHAR})`,
		`CREATE VIEW prices AS SELECT * FROM read_csv('` + pricesPath + `', header = false, all_varchar = true, auto_detect = false,
			delim = ',', quote = '"', null_padding = true, strict_mode = false,
			columns = {'model_id': 'VARCHAR', 'effective_from': 'VARCHAR', 'input_per_1k': 'VARCHAR', 'output_per_1k': 'VARCHAR',
			'pricing_tier': 'VARCHAR', 'cache_read_per_1k': 'VARCHAR', 'cache_write_per_1k': 'VARCHAR', 'per_image': 'VARCHAR',
			'image_max_pixels': 'VARCHAR', 'image_quality': 'VARCHAR', 'image_max_steps': 'VARCHAR', 'source': 'VARCHAR'})`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return db
}

// runAthenaSQL runs the Athena query and returns its rows as strings.
func runAthenaSQL(t testing.TB, db *sql.DB, day string) [][]string {
	t.Helper()
	q, err := compaction.AthenaSQL(day)
	if err != nil {
		t.Fatal(err)
	}
	out, err := athenalocal.QueryText(context.Background(), db, q)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAthenaSQLInDuckDBEqualsGo(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := daygen.Config{Day: testDay, Events: 30_000, Files: 3, OtherDay: 5, Seed: 8}
	st, _, book := genStore(t, dir, cfg)
	pricesPath := filepath.Join(t.TempDir(), "prices.csv")
	if err := os.WriteFile(pricesPath, []byte("# generated prices, a comment line as in the shipped file\n"+daygen.PriceCSV(testDay)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: testDay, Prices: book, Force: true}); err != nil {
		t.Fatal(err)
	}
	goRows, err := csv.NewReader(bytes.NewReader(readKey(t, st, schemas.ChargebackCSVKey(testDay)))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	db := duckAthena(t, dir, pricesPath)
	defer db.Close()
	sqlRows := runAthenaSQL(t, db, testDay)
	if len(sqlRows) != len(goRows)-1 || len(sqlRows) == 0 {
		t.Fatalf("SQL gave %d rows, Go %d", len(sqlRows), len(goRows)-1)
	}
	header := goRows[0]
	revCol := len(header) - 1
	for i, s := range sqlRows {
		g := goRows[i+1]
		if s[len(s)-1] != "0" {
			t.Errorf("row %d: %s unpriced calls", i, s[len(s)-1])
		}
		for c := range header {
			if c == revCol {
				continue
			}
			if !sameCell(g[c], s[c]) {
				t.Errorf("row %d (%s/%s/%s) %s: Go %q, SQL %q", i, g[1], g[2], g[3], header[c], g[c], s[c])
			}
		}
	}
	t.Logf("Athena SQL in DuckDB: %d chargeback rows identical to the Go engine's", len(sqlRows))
}

// sameCell compares a Go CSV cell with a SQL value: numbers by value, exactly.
func sameCell(a, b string) bool {
	if a == b {
		return true
	}
	x, err1 := decimal.NewFromString(a)
	y, err2 := decimal.NewFromString(b)
	return err1 == nil && err2 == nil && x.Equal(y)
}

func TestAthenaSQLForADay(t *testing.T) {
	q, err := compaction.AthenaSQL(testDay)
	if err != nil || strings.Contains(q, "dt = '${DAY}'") || !strings.Contains(q, "dt = '"+testDay+"'") {
		t.Fatalf("day not substituted: %v", err)
	}
	if _, err := compaction.AthenaSQL("yesterday"); err == nil {
		t.Fatal("a bad day was accepted")
	}
}
