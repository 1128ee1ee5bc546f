package main

// Late events on a file store (no servers): a day with unpriced usage does
// not hold back the recompaction of other days.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/schemas"
)

func genDay(t *testing.T, dir string, cfg daygen.Config) {
	t.Helper()
	evDir := filepath.Join(dir, "events", "dt="+cfg.Day)
	os.MkdirAll(evDir, 0o755)
	if _, err := daygen.Generate(cfg, func(name string) (io.WriteCloser, error) { return os.Create(filepath.Join(evDir, name)) }); err != nil {
		t.Fatal(err)
	}
}

func TestUnpricedYesterdayDoesNotHoldBackLateDays(t *testing.T) {
	dir := t.TempDir()
	genDay(t, dir, daygen.Config{Day: "2026-03-14", Events: 500, Files: 1, Seed: 1})
	genDay(t, dir, daygen.Config{Day: "2026-03-12", Events: 300, Files: 1, Seed: 2})
	var kept []string
	for _, line := range strings.SplitAfter(daygen.PriceCSV("2026-03-14"), "\n") {
		if !strings.HasPrefix(line, "cohere.command-r-v1:0,") {
			kept = append(kept, line)
		}
	}
	prices := filepath.Join(t.TempDir(), "prices.csv")
	os.WriteFile(prices, []byte(strings.Join(kept, "")), 0o644)
	env := map[string]string{"METER_STORE": "file://" + dir, "METER_PRICES": prices}
	h := &Handler{Getenv: func(k string) string { return env[k] }, Now: func() time.Time { return time.Date(2026, 3, 15, 2, 30, 5, 0, time.UTC) },
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Metrics: metrics.NewEMF(io.Discard)}
	var ev events.EventBridgeEvent
	if err := json.Unmarshal([]byte(scheduled), &ev); err != nil {
		t.Fatal(err)
	}
	revision := func(day string) string {
		data, err := os.ReadFile(filepath.Join(dir, schemas.ManifestKey(day)))
		if err != nil {
			return "none"
		}
		var m schemas.Manifest
		json.Unmarshal(data, &m)
		return strconv.Itoa(m.Revision)
	}
	if _, err := h.Handle(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "cohere.command-r-v1:0") {
		t.Fatalf("unpriced usage not reported: %v", err)
	}
	if revision("2026-03-14") != "1" || revision("2026-03-12") != "1" {
		t.Fatalf("revisions after the first run: %s, %s", revision("2026-03-14"), revision("2026-03-12"))
	}
	// A late event for the 12th; yesterday's price is still missing.
	genDay(t, dir, daygen.Config{Day: "2026-03-12", Events: 5, Files: 1, Seed: 3, FirstFile: 5})
	ev.Time = ev.Time.Add(time.Hour)
	if _, err := h.Handle(context.Background(), ev); err == nil {
		t.Fatal("unpriced usage not reported on the second run")
	}
	if revision("2026-03-12") != "2" || revision("2026-03-14") != "1" {
		t.Errorf("revisions after the late event: 12th %s (want 2), 14th %s (want 1)", revision("2026-03-12"), revision("2026-03-14"))
	}
}
