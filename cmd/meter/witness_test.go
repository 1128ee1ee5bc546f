package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/schemas"
)

// TestReconcileBillExitStatus: meter reconcile --bill exits 0 on a bill equal
// to the metered list price, 4 with a discount beyond --bill-tolerance (its
// rows written), 5 when the export does not reach the day yet, and 2 on bad
// flags; --cloudtrail is not needed with --bill.
func TestReconcileBillExitStatus(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i := 0; i < 30; i++ {
		lines = append(lines, eventLine(fmt.Sprintf("req-%03d", i), fmt.Sprintf("ev-%03d", i), fmt.Sprintf("2026-11-20T%02d:15:00Z", i%24), 100_000+i, 20_000))
	}
	in := filepath.Join(dir, "usage.jsonl")
	os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	streamURI, storeURI := "file://"+filepath.Join(dir, "stream"), "file://"+filepath.Join(dir, "store")
	for _, args := range [][]string{
		{"put", "--stream", streamURI, in},
		{"aggregate", "--stream", streamURI, "--store", storeURI, "--until-idle", "--quiet"},
		{"compact", "--day", "2026-11-20", "--store", storeURI},
	} {
		if code, out, errs := meter(t, args...); code != 0 {
			t.Fatalf("%v: %d %q %q", args, code, out, errs)
		}
	}
	daily, err := parquetio.ReadFile[schemas.DailyRow](filepath.Join(dir, "store", filepath.FromSlash(schemas.DailyKey("2026-11-20"))))
	if err != nil {
		t.Fatal(err)
	}
	bill := func(name, day string, discount map[string]decimal.Decimal) string {
		path := filepath.Join(dir, name, "cur", "data", "BILLING_PERIOD=2026-11", "cur-00001.snappy.parquet")
		os.MkdirAll(filepath.Dir(path), 0o755)
		rows := daily
		if day != "2026-11-20" {
			rows = nil
		}
		var buf bytes.Buffer
		if err := daygen.WriteCUR(&buf, daygen.CURLines(day, rows, discount)); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(path, buf.Bytes(), 0o644)
		return "file://" + filepath.Join(dir, name)
	}
	haiku := "anthropic.claude-3-haiku-20240307-v1:0"
	exact, discounted, early := bill("exact", "2026-11-20", nil), bill("discounted", "2026-11-20", map[string]decimal.Decimal{haiku: decimal.RequireFromString("0.1")}), bill("early", "2026-11-19", nil)

	code, out, errs := meter(t, "reconcile", "--day", "2026-11-20", "--store", storeURI, "--bill", exact)
	if code != 0 || !strings.Contains(out, "allocated chargeback") {
		t.Fatalf("exact bill: %d %q %q", code, out, errs)
	}
	code, out, errs = meter(t, "reconcile", "--day", "2026-11-20", "--store", storeURI, "--bill", discounted)
	if code != 4 || !strings.Contains(errs, haiku) || !strings.Contains(out, "differs "+haiku+" input") {
		t.Fatalf("discounted bill: %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "store", filepath.FromSlash(schemas.AllocatedCSVKey("2026-11-20")))); err != nil {
		t.Errorf("allocated chargeback not written: %v", err)
	}
	// A tolerance wider than the discount passes.
	if code, out, errs = meter(t, "reconcile", "--day", "2026-11-20", "--store", storeURI, "--bill", discounted, "--bill-tolerance", "1000"); code != 0 {
		t.Errorf("wide tolerance: %d %q %q", code, out, errs)
	}
	if code, out, errs = meter(t, "reconcile", "--day", "2026-11-20", "--store", storeURI, "--bill", early); code != 5 || !strings.Contains(errs, "no bill for the day yet") {
		t.Errorf("early bill: %d %q %q", code, out, errs)
	}
	for _, args := range [][]string{
		{"reconcile", "--day", "2026-11-20", "--store", storeURI},
		{"reconcile", "--day", "2026-11-20", "--store", storeURI, "--bill", exact, "--bill-tolerance", "-1"},
		{"reconcile", "--day", "2026-11-20", "--store", storeURI, "--bill", "ftp://x"},
	} {
		if code, out, errs := meter(t, args...); code != 2 && code != 1 || !strings.Contains(errs, "--") {
			t.Errorf("%v: %d %q %q", args, code, out, errs)
		}
	}
}
