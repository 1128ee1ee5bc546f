package main

// The scheduled compactor choosing its engine by the day's size, and
// recompacting a day that received late events. Servers: versitygw (S3 API;
// testenv, fails without it when METER_REQUIRE_SERVERS=1) and
// internal/athenalocal (Athena's JSON API on 127.0.0.1, DuckDB over
// versitygw's posix directory).

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/athenalocal"
	"github.com/meter-dev/meter/internal/athenaq"
	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/schemas"
)

type bufCloser struct{ *bytes.Buffer }

func (bufCloser) Close() error { return nil }

// putDay generates a day and uploads its events objects through S3.
func putDay(t *testing.T, st store.Store, cfg daygen.Config) *daygen.Truth {
	t.Helper()
	files := map[string]*bytes.Buffer{}
	truth, err := daygen.Generate(cfg, func(name string) (io.WriteCloser, error) {
		files[name] = &bytes.Buffer{}
		return bufCloser{files[name]}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := st.Put(context.Background(), schemas.Partition(schemas.EventsPrefix, cfg.Day)+name, b); err != nil {
			t.Fatal(err)
		}
	}
	return truth
}

func TestLargeDayGoesToAthenaAndLateDaysAreRecompacted(t *testing.T) {
	ctx := context.Background()
	gw := testenv.StartVersityGW(t)
	gw.SetEnv(t)
	srv, err := athenalocal.New(athenalocal.Config{Locations: map[string]string{"s3://" + gw.Bucket() + "/": filepath.Join(gw.Dir(), gw.Bucket())}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	t.Setenv("AWS_ENDPOINT_URL_ATHENA", hs.URL)

	uri := gw.URI("usage")
	st, err := store.Open(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	big := putDay(t, st, daygen.Config{Day: "2026-03-14", Events: 5_000, Files: 2, Seed: 1})
	putDay(t, st, daygen.Config{Day: "2026-03-12", Events: 20, Files: 1, Seed: 2}) // missed by an earlier run
	c, err := athenaq.New(ctx, athenaq.Client{Database: "meter"})
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range athenalocal.MeterTables(uri) {
		if _, err := c.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	prices := filepath.Join(t.TempDir(), "prices.csv")
	os.WriteFile(prices, []byte(daygen.PriceCSV("2026-03-14")), 0o644)
	small, err := compaction.EstimateEvents(ctx, st, "2026-03-12")
	if err != nil {
		t.Fatal(err)
	}
	large, _ := compaction.EstimateEvents(ctx, st, "2026-03-14")
	if small >= 2_000 || large <= 2_000 {
		t.Fatalf("estimates %d and %d do not straddle the threshold", small, large)
	}
	env := map[string]string{"METER_STORE": uri, "METER_PRICES": prices,
		compaction.EnvAthenaAboveEvents: "2000", compaction.EnvAthenaDatabase: "meter", compaction.EnvAthenaWorkgroup: "meter",
		compaction.EnvAthenaOutput: "s3://" + gw.Bucket() + "/athena-results/", compaction.EnvRecompactDays: "3"}
	var emf bytes.Buffer
	h := &Handler{Getenv: func(k string) string { return env[k] }, Now: func() time.Time { return time.Date(2026, 3, 15, 2, 30, 5, 0, time.UTC) },
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Metrics: metrics.NewEMF(&emf)}
	var ev events.EventBridgeEvent
	if err := json.Unmarshal([]byte(scheduled), &ev); err != nil {
		t.Fatal(err)
	}
	out, err := h.Handle(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	tot := big.Total()
	if out.Day != "2026-03-14" || out.Engine != "athena" || out.Invocations != tot.Invocations || out.TotalCost != tot.TotalCost().String() {
		t.Fatalf("large day: %+v; truth %d invocations, %s", out, tot.Invocations, tot.TotalCost())
	}
	if len(out.Recompacted) != 1 || out.Recompacted[0].Day != "2026-03-12" || out.Recompacted[0].Engine != "go" || out.Recompacted[0].Revision != 1 {
		t.Fatalf("the small day missed earlier: %+v", out.Recompacted)
	}

	// A late event lands in the small day: the next run makes revision 2 of
	// it and leaves the large day's revision alone.
	putDay(t, st, daygen.Config{Day: "2026-03-12", Events: 3, Files: 1, Seed: 9, FirstFile: 7})
	ev.Time = ev.Time.Add(time.Hour)
	out, err = h.Handle(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Unchanged || out.Revision != 1 || len(out.Recompacted) != 1 || out.Recompacted[0].Day != "2026-03-12" || out.Recompacted[0].Revision != 2 {
		t.Fatalf("after a late event: %+v", out)
	}
	// An invalid threshold is a clear error, not a silent Go compaction.
	env[compaction.EnvAthenaAboveEvents] = "many"
	if _, err := h.Handle(ctx, ev); err == nil {
		t.Fatal("METER_ATHENA_ABOVE_EVENTS=many accepted")
	}
}
