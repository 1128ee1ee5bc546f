package main

// The function's main runs for real: built as a Lambda bootstrap
// (-tags lambda.norpc) and invoked through the Lambda runtime interface
// emulator (aws-lambda-rie, started on 127.0.0.1) with an EventBridge
// scheduled event from testdata/lambda. Its report is compared with what
// `meter reconcile` writes for the same store and trail.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/schemas"
)

func TestMainThroughRuntimeEmulatorWritesWhatTheCLIWrites(t *testing.T) {
	meter := testenv.MeterCLI(t)
	cliStore := testenv.AggregatedFixtureStore(t, meter)
	fnStore := t.TempDir()
	testenv.CopyDir(t, cliStore, fnStore)
	trail := testenv.FixtureTrail(t)

	// The CLI: one call bypassed meter, so it exits 3 (unmetered over the threshold).
	if _, code := testenv.RunMeter(t, meter, nil, "reconcile", "--day", testenv.FixtureDay, "--store", "file://"+cliStore,
		"--cloudtrail", "file://"+trail); code != 3 {
		t.Fatalf("meter reconcile exited %d, want 3 (one unmetered call)", code)
	}

	rie := testenv.StartRIE(t, testenv.BuildBootstrap(t, "."), map[string]string{
		"METER_STORE": "file://" + fnStore, "METER_CLOUDTRAIL": "file://" + trail})
	payload, err := os.ReadFile(testenv.Testdata("lambda", "eventbridge-scheduled.json"))
	if err != nil {
		t.Fatal(err)
	}
	answer, err := rie.Invoke(context.Background(), payload)
	if err != nil {
		t.Fatalf("%v\n%s", err, rie.Logs())
	}
	var out Output
	if err := json.Unmarshal(answer, &out); err != nil {
		t.Fatalf("answer %s: %v", answer, err)
	}
	report, summary := schemas.ReconciliationKeys(testenv.FixtureDay)
	if out.Day != testenv.FixtureDay || out.Counts[aggregator.ReconcileMatched] != 4 || out.Counts[aggregator.ReconcileUnmetered] != 1 ||
		out.ReportKey != report || out.SummaryKey != summary {
		t.Fatalf("answer %+v", out)
	}
	for _, key := range []string{report, summary} {
		want, err := os.ReadFile(filepath.Join(cliStore, key))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(fnStore, key))
		if err != nil {
			t.Fatal(err)
		}
		if key == summary { // as_of is when each ran
			got, want = withoutAsOf(t, got), withoutAsOf(t, want)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the function wrote\n%s\nthe CLI wrote\n%s", key, got, want)
		}
	}
	// The unmetered call reaches CloudWatch as an EMF line on stdout.
	unmetered := func(logs string) bool {
		found := false
		for _, line := range strings.Split(logs, "\n") {
			if vals, err := metrics.ParseEMF([]byte(line)); err == nil {
				if v, ok := vals[metrics.ReconcileUnmetered]; ok {
					found = v == 1
				}
			}
		}
		return found
	}
	if !unmetered(rie.LogsOnce(unmetered)) {
		t.Errorf("no %s=1 EMF line in the function's output:\n%s", metrics.ReconcileUnmetered, rie.Logs())
	}

	// A bad day in the event's detail is the function's error, naming it.
	bad := bytes.Replace(payload, []byte(`"detail": {}`), []byte(`"detail": {"day": "2026-13-01"}`), 1)
	if _, err := rie.Invoke(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "detail.day") {
		t.Errorf("a bad detail.day answered %v", err)
	}
}

// withoutAsOf returns a summary.json without its as_of time, re-encoded.
func withoutAsOf(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["as_of"]; !ok {
		t.Fatalf("summary without as_of: %s", b)
	}
	delete(m, "as_of")
	out, _ := json.Marshal(m)
	return out
}
