package main

// The function's main runs for real: built as a Lambda bootstrap
// (-tags lambda.norpc) and invoked through the Lambda runtime interface
// emulator (aws-lambda-rie, started on 127.0.0.1) with an EventBridge
// scheduled event from testdata/lambda. What it writes is compared, byte for
// byte, with what `meter compact` writes for the same store.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/schemas"
)

func TestMainThroughRuntimeEmulatorWritesWhatTheCLIWrites(t *testing.T) {
	meter := testenv.MeterCLI(t)
	cliStore := testenv.AggregatedFixtureStore(t, meter)
	fnStore := t.TempDir()
	testenv.CopyDir(t, cliStore, fnStore)
	prices := testenv.Testdata("prices", "2026-11.csv")
	day := testenv.FixtureDay

	if _, code := testenv.RunMeter(t, meter, nil, "compact", "--day", day, "--store", "file://"+cliStore, "--prices", prices); code != 0 {
		t.Fatalf("meter compact exited %d", code)
	}
	rie := testenv.StartRIE(t, testenv.BuildBootstrap(t, "."), map[string]string{"METER_STORE": "file://" + fnStore, "METER_PRICES": prices})
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
	if out.Day != day || out.Revision != 1 || out.Unchanged || out.CSVKey != schemas.ChargebackCSVKey(day) || out.Invocations == 0 {
		t.Fatalf("answer %+v", out)
	}
	for _, key := range []string{schemas.ChargebackCSVKey(day), schemas.ManifestKey(day), schemas.DailyKey(day)} {
		want, err := os.ReadFile(filepath.Join(cliStore, key))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(fnStore, key))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the function wrote %d bytes, the CLI %d, and they differ:\n%s\n---\n%s", key, len(got), len(want), got, want)
		}
	}
	// The same schedule firing again leaves the day as it is.
	answer, err = rie.Invoke(context.Background(), payload)
	if err != nil || json.Unmarshal(answer, &out) != nil || !out.Unchanged || out.Revision != 1 {
		t.Fatalf("second run: %s %v", answer, err)
	}
}
