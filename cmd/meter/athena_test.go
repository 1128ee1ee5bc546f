package main

// meter compact --engine athena end to end over real protocols: the store is
// versitygw (S3 API, started by testenv, fails without it when
// METER_REQUIRE_SERVERS=1) and Athena is internal/athenalocal (Athena's JSON
// API on 127.0.0.1, DuckDB reading versitygw's posix directory for the
// tables' s3:// locations). The Go engine's CSV of the same day, in another
// prefix of the same bucket, is the expected answer, byte for byte.

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/internal/athenalocal"
	"github.com/meter-dev/meter/internal/athenaq"
	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/schemas"
)

func TestCompactEngineAthenaEqualsGo(t *testing.T) {
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

	const day = "2026-03-14"
	goURI, athURI := gw.URI("go"), gw.URI("athena")
	goStore, err := store.Open(ctx, goURI)
	if err != nil {
		t.Fatal(err)
	}
	athStore, err := store.Open(ctx, athURI)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*bytes.Buffer{}
	if _, err := daygen.Generate(daygen.Config{Day: day, Events: 8_000, Files: 2, OtherDay: 3, Seed: 21}, func(name string) (io.WriteCloser, error) {
		b := &bytes.Buffer{}
		files[name] = b
		return nopCloser{b}, nil
	}); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		for _, st := range []store.Store{goStore, athStore} {
			if err := st.Put(ctx, schemas.Partition(schemas.EventsPrefix, day)+name, bytes.NewReader(b.Bytes())); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The operator's one-time setup: the tables, through the Athena API.
	c, err := athenaq.New(ctx, athenaq.Client{Database: "meter"})
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range athenalocal.MeterTables(athURI) {
		if _, err := c.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	prices := filepath.Join(t.TempDir(), "prices.csv")
	os.WriteFile(prices, []byte(daygen.PriceCSV(day)), 0o644)

	code, out, errs := meter(t, "compact", "--day", day, "--store", goURI, "--prices", prices, "--quiet")
	if code != 0 {
		t.Fatalf("go engine: %d %s %s", code, out, errs)
	}
	code, out, errs = meter(t, "compact", "--engine", "athena", "--day", day, "--store", athURI, "--prices", prices,
		"--athena-database", "meter", "--athena-workgroup", "meter", "--athena-output", "s3://"+gw.Bucket()+"/results/", "--athena-poll", "5ms")
	if code != 0 || !strings.Contains(out, "revision 1") || !strings.Contains(errs, "bytes scanned") {
		t.Fatalf("athena engine: %d %s %s", code, out, errs)
	}
	goCSV, err := store.ReadAll(ctx, goStore, schemas.ChargebackCSVKey(day))
	if err != nil {
		t.Fatal(err)
	}
	athCSV, err := store.ReadAll(ctx, athStore, schemas.ChargebackCSVKey(day))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(goCSV, athCSV) || bytes.Count(goCSV, []byte("\n")) < 20 {
		t.Fatalf("chargebacks differ (or the day is empty):\n--- go\n%s\n--- athena\n%s", goCSV, athCSV)
	}
	man, err := store.ReadAll(ctx, athStore, schemas.ManifestKey(day))
	if err != nil || !bytes.Contains(man, []byte(`"engine": "athena"`)) {
		t.Fatalf("manifest: %v\n%s", err, man)
	}
	// Athena wrote its result files where it was told.
	if res, err := os.ReadDir(filepath.Join(gw.Dir(), gw.Bucket(), "results")); err != nil || len(res) < 2 {
		t.Errorf("query results location: %v, %d files", err, len(res))
	}

	// A late event: the scheduled pass compacts the day again, in Athena.
	late := schemas.Event{SchemaVersion: 1, EventID: "late-1", RequestID: "late-request-1", TeamID: "team-core", CostCenter: "cc-core",
		ModelID: "meta.llama3-8b-instruct-v1:0", Operation: "Converse", Status: "success", InputTokens: 10, OutputTokens: 10}
	late.Timestamp = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	if err := parquetio.Write(&buf, []schemas.EventRow{schemas.NewEventRow(&late)}, parquetio.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := athStore.Put(ctx, schemas.Partition(schemas.EventsPrefix, day)+"late.parquet", bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	code, out, errs = meter(t, "compact", "--engine", "athena", "--changed-since-days", "400", "--store", athURI, "--prices", prices, "--quiet",
		"--athena-database", "meter", "--athena-poll", "5ms")
	if code != 0 || !strings.Contains(out, "compacted "+day+" again (revision 2, engine athena)") {
		t.Fatalf("late pass: %d %s %s", code, out, errs)
	}
	code, out, _ = meter(t, "compact", "--engine", "athena", "--changed-since-days", "400", "--store", athURI, "--prices", prices, "--quiet",
		"--athena-database", "meter", "--athena-poll", "5ms")
	if code != 0 || !strings.Contains(out, "no closed day") {
		t.Fatalf("second late pass: %d %s", code, out)
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func TestCompactEngineAthenaFlags(t *testing.T) {
	code, out, _ := meter(t, "compact", "--engine", "athena", "--print-sql", "--day", "2026-03-14")
	if code != 0 || !strings.Contains(out, "dt = '2026-03-14'") {
		t.Errorf("--print-sql: %d %.200s", code, out)
	}
	if code, _, errs := meter(t, "compact", "--engine", "athena", "--day", "2026-03-14", "--store", "file://"+t.TempDir()); code != 2 || !strings.Contains(errs, "s3://") {
		t.Errorf("a file store with Athena: %d %s", code, errs)
	}
	if code, _, errs := meter(t, "compact", "--changed-since-days", "3", "--day", "2026-03-14", "--store", "file://"+t.TempDir()); code != 2 || !strings.Contains(errs, "without --day") {
		t.Errorf("--changed-since-days with --day: %d %s", code, errs)
	}
}
