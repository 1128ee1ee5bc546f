package reconcile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/schemas"
)

// TestFixtureDayReconciles reconciles the shared fixture day (usage events and
// CloudTrail records under ../testdata) from trail files laid out as CloudTrail
// delivers them: every successful metered call matches its CloudTrail record,
// and the one call that bypassed meter is unmetered, with its caller.
func TestFixtureDayReconciles(t *testing.T) {
	ctx := context.Background()
	f, err := os.Open(filepath.Join("..", "testdata", "events", "2026-11-25.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []schemas.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		e, err := schemas.ParseEvent(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	st := openTrailStore(t, t.TempDir())
	putUsage(t, st, events)

	data, err := os.ReadFile(filepath.Join("..", "testdata", "cloudtrail", "2026-11-25.json"))
	if err != nil {
		t.Fatal(err)
	}
	var trail map[string]any
	if err := json.Unmarshal(data, &trail); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	writeGzipJSON(t, filepath.Join(root, "AWSLogs", ctAccount, "CloudTrail", "us-east-1", "2026", "11", "25",
		ctAccount+"_CloudTrail_us-east-1_20261125T1305Z_fixture.json.gz"), trail)

	var stdout bytes.Buffer
	rep, err := Run(ctx, Config{Day: "2026-11-25", Store: st, CloudTrail: "file://" + root, Threshold: -1,
		Now: func() time.Time { return ctTime("2026-11-27T00:00:00Z") }, Metrics: metrics.NewEMF(&stdout)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{aggregator.ReconcileMatched: 4, aggregator.ReconcileUnmetered: 1, aggregator.ReconcileUnconfirmed: 0, aggregator.ReconcileMismatched: 0}
	for status, n := range want {
		if rep.Counts[status] != n {
			t.Errorf("%s = %d, want %d (counts %v)", status, rep.Counts[status], n, rep.Counts)
		}
	}
	// The counts go out as EMF lines too, for the unmetered-calls alarm.
	emf := map[string]float64{}
	for _, line := range bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n")) {
		vals, err := metrics.ParseEMF(line)
		if err != nil {
			t.Fatalf("EMF %s: %v", line, err)
		}
		var doc struct{ Status string }
		json.Unmarshal(line, &doc)
		for k, v := range vals {
			emf[k+"/"+doc.Status] += v
		}
	}
	if emf[metrics.ReconcileUnmetered+"/"] != 1 || emf[metrics.ReconcileRows+"/matched"] != 4 || emf[metrics.ReconcileRows+"/unmetered"] != 1 {
		t.Errorf("EMF %v", emf)
	}
	for _, r := range rep.Rows {
		want := aggregator.ReconcileMatched
		if r.RequestID == "req-08" {
			want = aggregator.ReconcileUnmetered
		}
		if r.Status != want {
			t.Errorf("%s: %s, want %s", r.RequestID, r.Status, want)
		}
	}
}
