package parquetio_test

// The files the writer produces match the Athena DDL in infra/athena/tables.sql:
// the same columns in the same order, each Parquet type the one Athena maps to
// the declared type, and every column chunk compressed with a codec Athena
// engine v3 reads (ZSTD by default).

import (
	"bytes"
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/meter-dev/meter/infra/athena"
	"github.com/meter-dev/meter/internal/parquetio"
)

// ddlTypes reads each table's columns and types from the shipped DDL.
func ddlTypes(t *testing.T) map[string][][2]string {
	out := map[string][][2]string{}
	tables := regexp.MustCompile(`(?s)CREATE EXTERNAL TABLE IF NOT EXISTS (\w+) \((.*?)\n\)`).FindAllStringSubmatch(athena.Tables, -1)
	for _, m := range tables {
		for _, line := range strings.Split(strings.TrimSpace(m[2]), "\n") {
			f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), ","))
			out[m[1]] = append(out[m[1]], [2]string{strings.Trim(f[0], "`"), strings.Join(f[1:], " ")})
		}
	}
	if len(out) != 3 {
		t.Fatalf("tables.sql declares %d tables, want events, usage_windows and daily", len(out))
	}
	return out
}

// athenaTypes maps the type DuckDB reads a column as to the Athena DDL type
// that reads the same Parquet column.
var athenaTypes = map[string]string{
	"BIGINT": "bigint", "INTEGER": "int", "VARCHAR": "string",
	"TIMESTAMP WITH TIME ZONE": "timestamp", "DECIMAL(18,10)": "decimal(18,10)",
}

func TestFilesMatchAthenaDDL(t *testing.T) {
	ddl := ddlTypes(t)
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		table string
		write func(*bytes.Buffer) error
	}{
		{"events", func(b *bytes.Buffer) error { return parquetio.Write(b, events(5_000), parquetio.Options{}) }},
		{"usage_windows", func(b *bytes.Buffer) error { return parquetio.Write(b, windows(5_000), parquetio.Options{}) }},
		{"daily", func(b *bytes.Buffer) error { return parquetio.Write(b, daily(5_000), parquetio.Options{}) }},
	} {
		t.Run(tc.table, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tc.write(&buf); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "part-0.parquet")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			rows, err := db.Query(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))`, path)
			if err != nil {
				t.Fatal(err)
			}
			var got [][2]string
			for rows.Next() {
				var name, typ string
				if err := rows.Scan(&name, &typ); err != nil {
					t.Fatal(err)
				}
				got = append(got, [2]string{name, athenaTypes[typ]})
			}
			rows.Close()
			want := ddl[tc.table]
			if len(got) != len(want) {
				t.Fatalf("file has %d columns, the DDL %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("column %d: file %v, DDL %v", i, got[i], want[i])
				}
			}
			var codecs string
			if err := db.QueryRow(`SELECT string_agg(DISTINCT compression, ',') FROM parquet_metadata(?)`, path).Scan(&codecs); err != nil {
				t.Fatal(err)
			}
			if codecs != "ZSTD" {
				t.Errorf("column chunks compressed with %s, want ZSTD", codecs)
			}
		})
	}
}
