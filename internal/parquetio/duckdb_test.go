package parquetio_test

// DuckDB (embedded through cgo, no server) reads the written files; equality
// filters must select exactly the rows a full scan filtered in Go selects.
// DuckDB ignores the page index, so this proves the data, not the index:
// parquetcheck proves the index.

import (
	"database/sql"
	"slices"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/meter-dev/meter/schemas"
)

func TestDuckDBEqualityFilters(t *testing.T) {
	rows := events(120_000)
	path := writeFile(t, rows, smallPages)

	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	query := func(sqlText string, args ...any) []string {
		t.Helper()
		res, err := db.Query(sqlText, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Close()
		var ids []string
		for res.Next() {
			var id string
			if err := res.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		return ids
	}
	scan := func(keep func(*schemas.EventRow) bool) []string {
		var ids []string
		for i := range rows {
			if keep(&rows[i]) {
				ids = append(ids, rows[i].EventID)
			}
		}
		slices.Sort(ids)
		return ids
	}

	for _, team := range append(teams, "team-unknown") {
		got := query(`SELECT event_id FROM read_parquet(?) WHERE team_id = ?`, path, team)
		want := scan(func(r *schemas.EventRow) bool { return r.TeamID == team })
		if !slices.Equal(got, want) {
			t.Errorf("team_id = %q: DuckDB %d rows, scan %d", team, len(got), len(want))
		}
	}
	for _, model := range models {
		got := query(`SELECT event_id FROM read_parquet(?) WHERE model_id = ?`, path, model)
		want := scan(func(r *schemas.EventRow) bool { return r.ModelID == model })
		if !slices.Equal(got, want) {
			t.Errorf("model_id = %q: DuckDB %d rows, scan %d", model, len(got), len(want))
		}
	}
	got := query(`SELECT event_id FROM read_parquet(?) WHERE team_id = ? AND model_id = ?`, path, teams[2], models[0])
	want := scan(func(r *schemas.EventRow) bool { return r.TeamID == teams[2] && r.ModelID == models[0] })
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("team_id and model_id: DuckDB %d rows, scan %d", len(got), len(want))
	}

	// Timestamps read as UTC instants.
	var first string
	if err := db.QueryRow(`SELECT strftime(min("timestamp"), '%Y-%m-%dT%H:%M:%S.%g') FROM read_parquet(?)`, path).Scan(&first); err != nil {
		t.Fatal(err)
	}
	if first != "2025-03-14T00:00:00.000" {
		t.Errorf("min(timestamp) = %s", first)
	}
}

func TestDuckDBDecimals(t *testing.T) {
	rows := daily(5_000)
	path := writeFile(t, rows, smallPages)
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	var typ, maxCost, minCost string
	err = db.QueryRow(`SELECT typeof(max(total_cost)), CAST(max(total_cost) AS VARCHAR), CAST(min(total_cost) AS VARCHAR) FROM read_parquet(?)`, path).
		Scan(&typ, &maxCost, &minCost)
	if err != nil {
		t.Fatal(err)
	}
	if typ != "DECIMAL(18,10)" || maxCost != "99999999.9999999999" || minCost != "0.0000000001" {
		t.Errorf("total_cost: type %s, max %s, min %s", typ, maxCost, minCost)
	}
}
