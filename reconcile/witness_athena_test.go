package reconcile

// The bill query of infra/athena/witnesses.sql, run by DuckDB (embedded, no
// server) over the same CUR 2.0 Parquet the Go reader reads, must give the
// Go comparison's billed tokens and dollars per model and token type. The
// query text is run unchanged; only the cur2 table becomes a view (with the
// export's optional net-cost column as null, as Athena reads a missing column).

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duckdb/duckdb-go/v2"
	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/infra/athena"
	"github.com/meter-dev/meter/internal/daygen"
)

// namedQuery returns the query after "-- name: NAME" in sql, up to the next name.
func namedQuery(t *testing.T, text, name string) string {
	t.Helper()
	_, rest, ok := strings.Cut(text, "-- name: "+name+"\n")
	if !ok {
		t.Fatalf("no query %s", name)
	}
	q, _, _ := strings.Cut(rest, "-- name: ")
	return strings.TrimSuffix(strings.TrimSpace(q), ";")
}

func TestAthenaBillQueryInDuckDBEqualsGo(t *testing.T) {
	f := generatedDay(t)
	bills := filepath.Join(f.root, "bill")
	writeBill(t, bills, daygen.CURLines(witnessDay, f.daily, map[string]decimal.Decimal{"meta.llama3-8b-instruct-v1:0": decimal.RequireFromString("0.05")}))
	res, err := RunAll(t.Context(), Config{Day: witnessDay, Store: f.st, Bill: "file://" + bills,
		Now: func() time.Time { return time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC) }})
	var de *BillDifferenceError
	if err != nil && !errors.As(err, &de) {
		t.Fatal(err)
	}

	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`SET TimeZone = 'UTC'`,
		`CREATE VIEW cur2 AS SELECT *, CAST(NULL AS DOUBLE) AS line_item_net_unblended_cost FROM read_parquet('` +
			filepath.Join(bills, "meter-cur", "data", "*", "*.parquet") + `', hive_partitioning = true, hive_types = {'BILLING_PERIOD': VARCHAR})`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rows, err := db.Query(namedQuery(t, athena.Witnesses, "bill_by_usage_type"))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type sums struct{ tokens, cost decimal.Decimal }
	sqlByKey := map[aggregator.BillKey]sums{}
	models := aggregator.DefaultUsageTypeModels()
	n := 0
	for rows.Next() {
		var ut, typ string
		var cross bool
		var tokens float64
		var cost duckdb.Decimal
		if err := rows.Scan(&ut, &typ, &cross, &tokens, &cost); err != nil {
			t.Fatal(err)
		}
		u, ok := aggregator.ParseUsageType(ut, models)
		if !ok || u.TokenType != typ || u.CrossRegion != cross {
			t.Errorf("%s: SQL says %s cross=%v, Go %+v", ut, typ, cross, u)
		}
		k := aggregator.BillKey{ModelID: u.ModelID, TokenType: u.TokenType, Tier: u.Tier, CrossRegion: u.CrossRegion}
		s := sqlByKey[k]
		s.tokens = s.tokens.Add(decimal.NewFromFloat(tokens))
		s.cost = s.cost.Add(decimal.NewFromBigInt(cost.Value, -int32(cost.Scale)))
		sqlByKey[k] = s
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 || len(sqlByKey) != len(res.Bill.Rows) {
		t.Fatalf("SQL gave %d keys (%d usage types), Go %d rows", len(sqlByKey), n, len(res.Bill.Rows))
	}
	for _, r := range res.Bill.Rows {
		s := sqlByKey[r.BillKey]
		if !s.tokens.Equal(r.BilledTokens) || !s.cost.Equal(r.BilledCost) {
			t.Errorf("%+v: SQL %s tokens %s USD, Go %s tokens %s USD", r.BillKey, s.tokens, s.cost, r.BilledTokens, r.BilledCost)
		}
	}
	t.Logf("Athena bill query in DuckDB: %d usage types, the same billed tokens and dollars as Go for %d model and token types", n, len(sqlByKey))
}
