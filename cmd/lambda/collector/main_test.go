package main

// The function's main runs for real: built as a Lambda bootstrap
// (-tags lambda.norpc) and invoked through the Lambda runtime interface
// emulator (aws-lambda-rie, started on 127.0.0.1) with the Kinesis events of
// one tumbling window from testdata/lambda, each carrying the state the
// previous invocation answered. What it writes is compared with what
// `meter put` and `meter aggregate` write for the same records, through the
// bill both give (`meter compact` over each store).

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/schemas"
)

var window = []string{"window-1.json", "window-2.json", "window-3-final.json"}

func TestMainThroughRuntimeEmulatorWritesWhatTheCLIWrites(t *testing.T) {
	fnStore := t.TempDir()
	rie := testenv.StartRIE(t, testenv.BuildBootstrap(t, "."), map[string]string{"METER_STORE": "file://" + fnStore})

	var lines bytes.Buffer // the same records as JSON lines, for meter put
	state := map[string]string{}
	for i, name := range window {
		payload, err := os.ReadFile(testenv.Testdata("lambda", name))
		if err != nil {
			t.Fatal(err)
		}
		var ev map[string]any
		if err := json.Unmarshal(payload, &ev); err != nil {
			t.Fatal(err)
		}
		ev["state"] = state // what the previous invocation answered, as Lambda hands it on
		payload, _ = json.Marshal(ev)
		var typed events.KinesisTimeWindowEvent
		if err := json.Unmarshal(payload, &typed); err != nil {
			t.Fatal(err)
		}
		for _, r := range typed.Records {
			lines.Write(append(r.Kinesis.Data, '\n'))
		}
		answer, err := rie.Invoke(context.Background(), payload)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, rie.Logs())
		}
		var resp events.KinesisTimeWindowEventResponse
		if err := json.Unmarshal(answer, &resp); err != nil {
			t.Fatalf("%s: answer %s: %v", name, answer, err)
		}
		if len(resp.BatchItemFailures) != 0 {
			t.Fatalf("%s: batch item failures %v", name, resp.BatchItemFailures)
		}
		if final := i == len(window)-1; final != (len(resp.State) == 0) {
			t.Fatalf("%s: state %v after invocation %d of %d", name, resp.State, i+1, len(window))
		}
		state = resp.State
	}
	for _, prefix := range []string{schemas.EventsPrefix, schemas.WindowsPrefix, schemas.QuarantinePrefix} {
		if m, _ := filepath.Glob(filepath.Join(fnStore, prefix, "dt=*", "*")); len(m) == 0 {
			t.Errorf("the function wrote nothing under %s", prefix)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(fnStore, "_staging", "*", "*")); len(m) != 0 {
		t.Errorf("staged records left after the window's end: %v", m)
	}
	// Its EMF lines count the window's records.
	want := float64(bytes.Count(lines.Bytes(), []byte("\n")))
	recordsRead := func(logs string) float64 {
		var read float64
		for _, line := range strings.Split(logs, "\n") {
			if vals, err := metrics.ParseEMF([]byte(line)); err == nil {
				read += vals[metrics.CollectorRecords]
			}
		}
		return read
	}
	if read := recordsRead(rie.LogsOnce(func(l string) bool { return recordsRead(l) >= want })); read != want {
		t.Errorf("EMF %s = %v, want %v\n%s", metrics.CollectorRecords, read, want, rie.Logs())
	}

	// The CLI over the same records.
	meter := testenv.MeterCLI(t)
	stream, cliStore := t.TempDir(), t.TempDir()
	if _, code := testenv.RunMeter(t, meter, &lines, "put", "--stream", "file://"+stream, "-"); code != 0 {
		t.Fatalf("meter put exited %d", code)
	}
	if _, code := testenv.RunMeter(t, meter, nil, "aggregate", "--stream", "file://"+stream, "--store", "file://"+cliStore, "--until-idle", "--quiet"); code != 0 {
		t.Fatalf("meter aggregate exited %d", code)
	}
	day := "2026-11-25"
	prices := filepath.Join(t.TempDir(), "prices.csv")
	os.WriteFile(prices, []byte(daygen.PriceCSV(day)), 0o644)
	var manifests [2]schemas.Manifest
	var csvs [2][]byte
	for i, st := range []string{fnStore, cliStore} {
		testenv.RunMeter(t, meter, nil, "compact", "--day", day, "--store", "file://"+st, "--prices", prices)
		b, err := os.ReadFile(filepath.Join(st, schemas.ManifestKey(day)))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &manifests[i]); err != nil {
			t.Fatal(err)
		}
		if csvs[i], err = os.ReadFile(filepath.Join(st, schemas.ChargebackCSVKey(day))); err != nil {
			t.Fatal(err)
		}
	}
	fn, cli := manifests[0], manifests[1]
	if fn.RowsRead == 0 || fn.RowsRead != cli.RowsRead || fn.DuplicatesDropped != cli.DuplicatesDropped ||
		fn.QuarantineRecords != cli.QuarantineRecords || fn.Totals != cli.Totals {
		t.Errorf("compacted from the function's output: %d rows, %d duplicates, %d quarantined, %+v\nfrom the CLI's: %d rows, %d duplicates, %d quarantined, %+v",
			fn.RowsRead, fn.DuplicatesDropped, fn.QuarantineRecords, fn.Totals, cli.RowsRead, cli.DuplicatesDropped, cli.QuarantineRecords, cli.Totals)
	}
	if !bytes.Equal(csvs[0], csvs[1]) {
		t.Errorf("chargeback from the function's output:\n%s\nfrom the CLI's:\n%s", csvs[0], csvs[1])
	}
}

func TestSetupNamesWhatIsWrong(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if _, err := setup(context.Background(), getenv, nil); err == nil || !strings.Contains(err.Error(), "METER_STORE") {
		t.Errorf("no store: %v", err)
	}
	env["METER_STORE"] = "file://" + t.TempDir()
	for name, bad := range map[string]string{"METER_WINDOW": "7m", "METER_DEDUP_HORIZON": "-1h"} {
		env[name] = bad
		if _, err := setup(context.Background(), getenv, nil); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(name, "METER_")) && !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: %v", name, bad, err)
		}
		delete(env, name)
	}
	if _, err := setup(context.Background(), getenv, nil); err != nil {
		t.Errorf("a valid setup: %v", err)
	}
}
