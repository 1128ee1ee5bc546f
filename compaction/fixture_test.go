package compaction_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// readFixtureEvents reads the shared day of usage events in ../testdata.
func readFixtureEvents(t *testing.T) []schemas.Event {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "events", "2026-11-25.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []schemas.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		e, err := schemas.ParseEvent(sc.Bytes())
		if err != nil {
			t.Fatalf("fixture line %d: %v", len(out)+1, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFixtureDayChargeback compacts the shared fixture day with the fixture
// price file and checks every chargeback cell against figures worked out by
// hand from testdata/prices/2026-11.csv (see the comments).
func TestFixtureDayChargeback(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	putFixtureEvents(t, st)
	pf, err := os.Open(filepath.Join("..", "testdata", "prices", "2026-11.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	book, err := pricing.Parse(pf, "testdata/prices/2026-11.csv")
	if err != nil {
		t.Fatal(err)
	}
	res, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: "2026-11-25", Prices: book, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if m := res.Manifest; m.RowsRead != 7 || m.DuplicatesDropped != 1 || m.RequestIDs != 6 {
		t.Errorf("manifest: rows read %d, duplicates %d, request ids %d; want 7, 1, 6", m.RowsRead, m.DuplicatesDropped, m.RequestIDs)
	}
	data, err := store.ReadAll(ctx, st, schemas.ChargebackCSVKey("2026-11-25"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := aggregator.ReadChargebackCSV(data)
	if err != nil {
		t.Fatal(err)
	}
	const haiku, profile, titan = "anthropic.claude-3-5-haiku-20241022-v1:0", "us.anthropic.claude-3-5-haiku-20241022-v1:0", "amazon.titan-embed-text-v2:0"
	want := map[aggregator.ChargebackKey]map[string]string{
		// req-01 (delivered twice, counted once) and req-02: input 1000+2000
		// at 0.0008/1k, output 500+100 at 0.004/1k, cache read and write 1000
		// each at 0.00008/1k and 0.001/1k.
		{"search", "CC-1001", haiku}: {"invocations": "2", "input_tokens": "3000", "output_tokens": "600",
			"cache_read_input_tokens": "1000", "cache_write_input_tokens": "1000",
			"input_cost": "0.0024", "output_cost": "0.0024", "cache_read_cost": "0.00008", "cache_write_cost": "0.001", "total_cost": "0.00588"},
		// req-03 through the cross-region profile, billed at the base model's price.
		{"search", "CC-1001", profile}: {"invocations": "1", "input_tokens": "1000", "output_tokens": "1000",
			"input_cost": "0.0008", "output_cost": "0.004", "total_cost": "0.0048"},
		// req-04: 5000 input tokens at 0.00002/1k.
		{"ads", "CC-2002", titan}: {"invocations": "1", "input_tokens": "5000", "output_tokens": "0", "input_cost": "0.0001", "total_cost": "0.0001"},
		// A denied and a throttled call: counted, not billed.
		{"ads", "CC-2002", haiku}: {"invocations": "0", "denied": "1", "throttled": "1", "input_tokens": "0", "total_cost": "0"},
	}
	if len(got) != len(want) {
		t.Errorf("chargeback has %d rows, want %d:\n%s", len(got), len(want), data)
	}
	for k, cells := range want {
		row, ok := got[k]
		if !ok {
			t.Errorf("no chargeback row for %v", k)
			continue
		}
		for col, w := range cells {
			g := row.Cells[col]
			gd, err1 := decimal.NewFromString(g)
			wd, err2 := decimal.NewFromString(w)
			if err1 != nil || err2 != nil || !gd.Equal(wd) {
				t.Errorf("%v %s = %q, want %s", k, col, g, w)
			}
		}
	}
}

// putFixtureEvents writes the fixture day's events as the collector does:
// Parquet under events/dt=DAY/.
func putFixtureEvents(t *testing.T, st store.Store) {
	t.Helper()
	byDay := map[string][]schemas.EventRow{}
	for _, e := range readFixtureEvents(t) {
		byDay[e.Day()] = append(byDay[e.Day()], schemas.NewEventRow(&e))
	}
	for day, rows := range byDay {
		var buf bytes.Buffer
		if err := parquetio.Write(&buf, rows, parquetio.Options{}); err != nil {
			t.Fatal(err)
		}
		if err := st.Put(context.Background(), schemas.Partition(schemas.EventsPrefix, day)+"fixture.parquet", &buf); err != nil {
			t.Fatal(err)
		}
	}
}
