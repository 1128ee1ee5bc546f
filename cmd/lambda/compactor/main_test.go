package main

// The handler is invoked directly with the JSON of an EventBridge scheduled
// event, over a file store holding a generated day (no servers).

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/schemas"
)

const scheduled = `{
  "version": "0",
  "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
  "detail-type": "Scheduled Event",
  "source": "aws.events",
  "account": "123456789012",
  "time": "2026-03-15T02:30:00Z",
  "region": "us-east-1",
  "resources": ["arn:aws:events:us-east-1:123456789012:rule/meter-daily-compaction"],
  "detail": {}
}`

func TestScheduledEventCompactsYesterday(t *testing.T) {
	dir := t.TempDir()
	day := "2026-03-14"
	evDir := filepath.Join(dir, "events", "dt="+day)
	os.MkdirAll(evDir, 0o755)
	truth, err := daygen.Generate(daygen.Config{Day: day, Events: 3_000, Files: 2, Seed: 11},
		func(name string) (io.WriteCloser, error) { return os.Create(filepath.Join(evDir, name)) })
	if err != nil {
		t.Fatal(err)
	}
	prices := filepath.Join(t.TempDir(), "prices.csv")
	os.WriteFile(prices, []byte(daygen.PriceCSV(day)), 0o644)
	env := map[string]string{"METER_STORE": "file://" + dir, "METER_PRICES": prices}
	var stdout bytes.Buffer
	h := &Handler{Getenv: func(k string) string { return env[k] }, Now: func() time.Time { return time.Date(2026, 3, 15, 2, 30, 5, 0, time.UTC) },
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Metrics: metrics.NewEMF(&stdout)}

	var ev events.EventBridgeEvent
	if err := json.Unmarshal([]byte(scheduled), &ev); err != nil {
		t.Fatal(err)
	}
	out, err := h.Handle(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	tot := truth.Total()
	if out.Day != day || out.Revision != 1 || out.RowsRead != truth.RowsRead || out.Duplicates != truth.Duplicates ||
		out.Invocations != tot.Invocations || out.TotalCost != tot.TotalCost().String() || out.CSVKey != schemas.ChargebackCSVKey(day) {
		t.Fatalf("output %+v; truth %d rows, %d duplicates, %d invocations, %s", out, truth.RowsRead, truth.Duplicates, tot.Invocations, tot.TotalCost())
	}
	if _, err := os.Stat(filepath.Join(dir, schemas.ManifestKey(day))); err != nil {
		t.Fatal(err)
	}
	// The handler's stdout holds one valid EMF line with what it compacted.
	lines := bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("%d EMF lines: %s", len(lines), stdout.String())
	}
	vals, err := metrics.ParseEMF(lines[0])
	if err != nil {
		t.Fatalf("EMF line %s: %v", lines[0], err)
	}
	cost, _ := tot.TotalCost().Float64()
	if vals[metrics.CompactionRowsRead] != float64(truth.RowsRead) || vals[metrics.CompactionDuplicates] != float64(truth.Duplicates) ||
		vals[metrics.CompactionCostUSD] != cost || vals[metrics.CompactionFailures] != 0 || vals[metrics.CompactionSeconds] <= 0 {
		t.Errorf("EMF values %v; compacted %d rows, %d duplicates, %v USD", vals, truth.RowsRead, truth.Duplicates, cost)
	}
	stdout.Reset()
	// The same schedule firing again changes nothing.
	again, err := h.Handle(context.Background(), ev)
	if err != nil || !again.Unchanged || again.Revision != 1 {
		t.Fatalf("second run %+v %v", again, err)
	}
	// Before the grace period ends the day is refused, not half-billed.
	ev.Time = time.Date(2026, 3, 15, 0, 30, 0, 0, time.UTC)
	h.Now = func() time.Time { return ev.Time }
	if _, err := h.Handle(context.Background(), ev); err == nil {
		t.Fatal("compacted a day still open for late events")
	}
	if vals, err := metrics.ParseEMF(bytes.TrimSpace(stdout.Bytes()[bytes.LastIndexByte(bytes.TrimSpace(stdout.Bytes()), '\n')+1:])); err != nil || vals[metrics.CompactionFailures] != 1 {
		t.Errorf("a failed compaction's EMF: %v %v", vals, err)
	}
	// A missing store setting is a clear error.
	delete(env, "METER_STORE")
	if _, err := h.Handle(context.Background(), ev); err == nil {
		t.Fatal("ran without METER_STORE")
	}
}
