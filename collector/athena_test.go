package collector_test

// DuckDB, embedded through cgo (no server), stands in for Athena: the queries
// finance runs (infra/athena/queries.sql) run as written over the store the
// consumer test builds, with the tables declared as Hive-partitioned Parquet
// the way infra/athena/tables.sql declares them (dt a string partition).

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/shopspring/decimal"
)

// athenaQueries splits queries.sql on its "-- name: NAME" lines.
func athenaQueries(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "infra", "athena", "queries.sql"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	parts := strings.Split(string(data), "-- name:")
	for _, p := range parts[1:] {
		name, body, _ := strings.Cut(p, "\n")
		out[strings.TrimSpace(name)] = strings.TrimSuffix(strings.TrimSpace(body), ";")
	}
	return out
}

// queryStrings runs a query and returns its rows with every column as text.
func queryStrings(t *testing.T, db *sql.DB, query string) []map[string]string {
	t.Helper()
	rows, err := db.Query(`SELECT CAST(COLUMNS(*) AS VARCHAR) FROM (` + query + `)`)
	if err != nil {
		t.Fatalf("%v\n%s", err, query)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for i, c := range cols {
			m[c] = vals[i].String
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAthenaQueriesOverTheStore(t *testing.T) {
	r := newFileRun(t, 6000, 700)
	want := r.u.chargeback()
	queries := athenaQueries(t)
	for _, name := range []string{"cost_per_team_per_day", "cost_per_model", "month_to_date", "team_usage_windows"} {
		if queries[name] == "" {
			t.Fatalf("queries.sql has no query %q (has %d)", name, len(queries))
		}
	}

	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one connection: the views and settings below stay in scope
	if _, err := db.Exec(`SET TimeZone = 'UTC'`); err != nil {
		t.Logf("TimeZone: %v", err)
	}
	for _, table := range []string{"events", "usage_windows", "daily"} {
		glob := filepath.Join(r.storeDir, table, "*", "*.parquet")
		if _, err := db.Exec(`CREATE VIEW ` + table + ` AS SELECT * FROM read_parquet('` + glob + `', hive_partitioning = true, hive_types = {'dt': VARCHAR})`); err != nil {
			t.Fatal(err)
		}
	}
	dec := func(s string) decimal.Decimal {
		d, err := decimal.NewFromString(s)
		if err != nil {
			t.Fatalf("not a decimal: %q", s)
		}
		return d
	}

	// cost_per_team_per_day: per day, team and cost center.
	type teamDay struct{ day, team, cc string }
	wantTD := map[teamDay]charge{}
	for k, c := range want {
		key := teamDay{k.day, k.team, k.cc}
		s := wantTD[key]
		s.invocations += c.invocations
		s.in += c.in
		s.out += c.out
		s.total = s.total.Add(c.total)
		wantTD[key] = s
	}
	got := queryStrings(t, db, queries["cost_per_team_per_day"])
	if len(got) != len(wantTD) {
		t.Errorf("cost_per_team_per_day: %d rows, want %d", len(got), len(wantTD))
	}
	for _, row := range got {
		w := wantTD[teamDay{row["dt"], row["team_id"], row["cost_center"]}]
		if row["invocations"] != itoa(w.invocations) || row["input_tokens"] != itoa(w.in) || row["output_tokens"] != itoa(w.out) || !dec(row["total_cost"]).Equal(w.total) {
			t.Errorf("cost_per_team_per_day %v; want %v", row, w)
		}
	}

	// cost_per_model and month_to_date over the month.
	byModel, byTeam := map[string]charge{}, map[string]decimal.Decimal{}
	var month decimal.Decimal
	for k, c := range want {
		s := byModel[k.model]
		s.invocations += c.invocations
		s.in += c.in
		s.out += c.out
		s.total = s.total.Add(c.total)
		byModel[k.model] = s
		byTeam[k.team] = byTeam[k.team].Add(c.total)
		month = month.Add(c.total)
	}
	got = queryStrings(t, db, queries["cost_per_model"])
	if len(got) != len(byModel) {
		t.Errorf("cost_per_model: %d rows, want %d", len(got), len(byModel))
	}
	for _, row := range got {
		w := byModel[row["model_id"]]
		if row["invocations"] != itoa(w.invocations) || row["input_tokens"] != itoa(w.in) || row["output_tokens"] != itoa(w.out) || !dec(row["total_cost"]).Equal(w.total) {
			t.Errorf("cost_per_model %v; want %v", row, w)
		}
	}
	got = queryStrings(t, db, queries["month_to_date"])
	var sum decimal.Decimal
	for _, row := range got {
		if !dec(row["total_cost"]).Equal(byTeam[row["team_id"]]) {
			t.Errorf("month_to_date %v; want %s", row, byTeam[row["team_id"]])
		}
		sum = sum.Add(dec(row["total_cost"]))
	}
	if len(got) != len(byTeam) || !sum.Equal(month) {
		t.Errorf("month_to_date: %d teams, %s USD; want %d, %s", len(got), sum, len(byTeam), month)
	}
	t.Logf("month to date over %d teams: %s USD, equal to the generated usage", len(got), sum)

	// team_usage_windows: team-a's windows of 2026-11-25 from usage_windows.
	type winKey struct {
		start         int64
		model, status string
	}
	wantW := map[winKey]window{}
	for k, w := range r.u.windows(5 * time.Minute) {
		if k.team != "team-a" || time.UnixMilli(k.start).UTC().Format("2006-01-02") != "2026-11-25" {
			continue
		}
		key := winKey{k.start, k.model, k.status}
		s := wantW[key]
		s.requests += w.requests
		s.in += w.in
		s.out += w.out
		wantW[key] = s
	}
	got = queryStrings(t, db, queries["team_usage_windows"])
	if len(got) != len(wantW) {
		t.Errorf("team_usage_windows: %d rows, want %d", len(got), len(wantW))
	}
	for _, row := range got {
		ts := strings.TrimSuffix(strings.TrimSuffix(row["window_start"], "+00"), "Z")
		start, err := time.Parse("2006-01-02 15:04:05", ts)
		if err != nil {
			t.Fatalf("window_start %q: %v", row["window_start"], err)
		}
		w := wantW[winKey{start.UnixMilli(), row["model_id"], row["status"]}]
		if row["requests"] != itoa(w.requests) || row["input_tokens"] != itoa(w.in) || row["output_tokens"] != itoa(w.out) {
			t.Errorf("team_usage_windows %v; want %+v", row, w)
		}
	}
	t.Logf("team_usage_windows: %d rows for team-a on 2026-11-25", len(got))
}

func itoa(v int64) string { return decimal.NewFromInt(v).String() }
