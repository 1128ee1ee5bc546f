package parquetio_test

// Every value written with the encodings the schemas choose (DELTA_BYTE_ARRAY
// ids, DELTA_BINARY_PACKED times, counters and money, dictionaries) reads
// back equal through DuckDB and through Arrow, including the extremes where a
// delta encoder could overflow.

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/meter-dev/meter/internal/parquetcheck"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/schemas"
)

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// hostileEvents are events with random ids and counters that jump between
// the int64 extremes, so every delta overflows somewhere.
func hostileEvents(n int) []schemas.EventRow {
	rows := events(n)
	extremes := []int64{0, math.MaxInt64, math.MinInt64, -1, 1, math.MaxInt64 - 1, math.MinInt64 + 1}
	for i := range rows {
		rows[i].EventID, rows[i].RequestID = randomID(), randomID()
		if i%3 == 0 {
			rows[i].RequestID = rows[i].RequestID[:i%31] // ids of different lengths, some empty
		}
		if i%5 == 0 {
			v := extremes[i%len(extremes)]
			rows[i].InputTokens, rows[i].LatencyMS, rows[i].ImageWidth = v, -v, v
			// Times within what readers convert to microseconds: year 1 to 9999.
			rows[i].Timestamp = []int64{-62135596800000, 253402300799999, 0, -1}[(i/5)%4]
		}
	}
	return rows
}

// duckRows reads every column of a file as text, in file order.
func duckRows(t *testing.T, db *sql.DB, path string, cols []string) [][]string {
	t.Helper()
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = fmt.Sprintf(`CAST("%s" AS VARCHAR)`, c)
		if c == "timestamp" || c == "window_start" || c == "window_end" {
			sel[i] = fmt.Sprintf(`CAST(epoch_ms("%s") AS VARCHAR)`, c)
		}
	}
	res, err := db.Query(`SELECT `+strings.Join(sel, ", ")+` FROM read_parquet(?) ORDER BY file_row_number`, path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	var out [][]string
	for res.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := res.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		rec := make([]string, len(cols))
		for i, v := range vals {
			rec[i] = v.String
		}
		out = append(out, rec)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// goRows formats rows the way duckRows reads them: integers in decimal,
// decimals with their scale, strings as they are.
func goRows[T any](rows []T) ([]string, [][]string) {
	t := reflect.TypeFor[T]()
	var cols []string
	var scale []int
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("parquet")
		name := strings.TrimPrefix(strings.Split(tag, ",")[0], "name=")
		cols = append(cols, name)
		s := -1
		if strings.Contains(tag, "DECIMAL") {
			s = schemas.MoneyScale
		}
		scale = append(scale, s)
	}
	out := make([][]string, len(rows))
	for r := range rows {
		v := reflect.ValueOf(rows[r])
		rec := make([]string, len(cols))
		for i := range cols {
			f := v.Field(i)
			switch {
			case f.Kind() == reflect.String:
				rec[i] = f.String()
			case scale[i] >= 0:
				d := fmt.Sprintf("%0*d", scale[i]+1, abs(f.Int()))
				rec[i] = d[:len(d)-scale[i]] + "." + d[len(d)-scale[i]:]
				if f.Int() < 0 {
					rec[i] = "-" + rec[i]
				}
			default:
				rec[i] = fmt.Sprint(f.Int())
			}
		}
		out[r] = rec
	}
	return cols, out
}

func abs(v int64) uint64 {
	if v < 0 {
		return uint64(-v)
	}
	return uint64(v)
}

func checkReadBack[T any](t *testing.T, db *sql.DB, rows []T, opts parquetio.Options) {
	t.Helper()
	path := writeFile(t, rows, opts)
	if err := parquetcheck.CheckFile(path); err != nil {
		t.Fatal(err)
	}
	cols, want := goRows(rows)
	got := duckRows(t, db, path, cols)
	if len(got) != len(want) {
		t.Fatalf("DuckDB read %d rows, %d written", len(got), len(want))
	}
	bad := 0
	for i := range want {
		for c := range cols {
			if got[i][c] != want[i][c] && bad < 5 {
				bad++
				t.Errorf("row %d %s: DuckDB %q, written %q", i, cols[c], got[i][c], want[i][c])
			}
		}
	}
	back, err := parquetio.ReadFile[T](path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, rows) {
		t.Errorf("Arrow read back different rows")
	}
}

func TestEveryValueReadsBackEqual(t *testing.T) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`SET threads = 1`); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []parquetio.Options{{}, smallPages, {Compression: parquetio.Snappy, PageBytes: 8 << 10, RowGroupBytes: 256 << 10}} {
		name := fmt.Sprintf("%s pages %d row groups %d", opts.Compression, opts.PageBytes, opts.RowGroupBytes)
		t.Run(name, func(t *testing.T) {
			t.Run("events", func(t *testing.T) { checkReadBack(t, db, hostileEvents(30_000), opts) })
			t.Run("daily", func(t *testing.T) {
				rows := daily(20_000)
				for i := range rows {
					rows[i].RequestID = randomID()
					if i%7 == 0 {
						rows[i].TotalCost, rows[i].InputCost = 999_999_999_999_999_999, -999_999_999_999_999_999
					}
				}
				checkReadBack(t, db, rows, opts)
			})
			t.Run("windows", func(t *testing.T) { checkReadBack(t, db, windows(20_000), opts) })
		})
	}
}
