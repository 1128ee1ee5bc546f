package demo

// The demo test starts the local model server and the invoke API on 127.0.0.1
// (in-process, real HTTP) and the embedded stream and store in a temp folder.

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meter-dev/meter/internal/parquetcheck"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/schemas"
	"github.com/shopspring/decimal"
)

func TestDemoVerifiesItsChargeback(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	res, err := Run(context.Background(), Config{Dir: dir, Out: &out, Log: io.Discard})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Verified:") {
		t.Fatalf("no verification line:\n%s", out.String())
	}
	teams := map[string]bool{}
	var success, denied, throttled int64
	for k, s := range res.Sent {
		teams[k.Team] = true
		success += s.Success
		denied += s.Denied
		throttled += s.Throttled
	}
	if len(teams) < 3 || len(res.Sent) < 3 || success < 200 || denied == 0 || throttled == 0 {
		t.Fatalf("traffic too thin: %d teams, %d team-models, %d ok, %d denied, %d throttled", len(teams), len(res.Sent), success, denied, throttled)
	}
	var billed int64
	for _, r := range res.Chargeback {
		billed += r.Invocations
	}
	if billed != success || res.Reconcile.Matched != int(success) || res.Reconcile.Unmetered != 1 {
		t.Fatalf("billed %d, matched %d, unmetered %d; sent %d", billed, res.Reconcile.Matched, res.Reconcile.Unmetered, success)
	}
	// Every Parquet file the demo wrote has a page index Athena can trust, and
	// the raw events read back through Arrow number exactly the calls made.
	files, _ := filepath.Glob(filepath.Join(res.StoreDir, "*", "dt=*", "*.parquet"))
	kinds := map[string]bool{}
	var raw int
	for _, f := range files {
		if err := parquetcheck.CheckFile(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		kind := filepath.Base(filepath.Dir(filepath.Dir(f)))
		kinds[kind] = true
		if kind == "events" {
			rows, err := parquetio.ReadFile[schemas.EventRow](f)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			raw += len(rows)
		}
	}
	if want := success + denied + throttled; int64(raw) != want {
		t.Errorf("raw events read back: %d, want one per call: %d", raw, want)
	}
	for _, k := range []string{"events", "usage_windows", "daily"} {
		if !kinds[k] {
			t.Errorf("no %s Parquet written (have %v)", k, kinds)
		}
	}
	// The finance page shows the day's chargeback total and its one unmetered call.
	page, err := os.ReadFile(res.ReportPath)
	if err != nil {
		t.Fatal(err)
	}
	total := decimal.Zero
	for _, r := range res.Chargeback {
		total = total.Add(r.Costs.Total())
	}
	for _, want := range []string{`data-testid="total" data-value="` + total.String() + `"`, `data-unmetered="1"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the demo's report lacks %s", want)
		}
	}
}
