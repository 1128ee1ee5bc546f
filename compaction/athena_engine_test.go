package compaction_test

// The Athena engine against a real Athena-API server: internal/athenalocal,
// started here on 127.0.0.1, speaks Athena's JSON protocol to the real
// aws-sdk-go-v2 client and runs the SQL in DuckDB over the store's files (its
// s3:// table locations mapped to the file store's directory). The Go
// engine's CSV on the same day is the expected answer, byte for byte.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/athena"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/athenalocal"
	"github.com/meter-dev/meter/internal/athenaq"
	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

const athenaLocation = "s3://meter-bucket/usage"

// startAthena starts the local Athena API over dir (the store at
// athenaLocation) with the meter tables declared through the API.
func startAthena(t *testing.T, dir string) *athenaq.Client {
	t.Helper()
	srv, err := athenalocal.New(athenalocal.Config{Locations: map[string]string{athenaLocation + "/": dir}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv) // 127.0.0.1
	t.Cleanup(func() { hs.Close(); srv.Close() })
	api := athena.New(athena.Options{Region: "us-east-1", BaseEndpoint: aws.String(hs.URL),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})
	c := &athenaq.Client{API: api, Workgroup: "meter", Database: "meter", OutputLocation: athenaLocation + "/_athena-results/",
		Poll: 5 * time.Millisecond, MaxPoll: 50 * time.Millisecond}
	for _, stmt := range athenalocal.MeterTables(athenaLocation) {
		if _, err := c.Exec(context.Background(), stmt); err != nil {
			t.Fatalf("%.60s: %v", stmt, err)
		}
	}
	return c
}

// copyEvents copies the events of src's store into a new store.
func copyEvents(t *testing.T, src string) (string, *store.FileStore) {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(filepath.Join(src, "events"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o755)
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return dst, st
}

func TestAthenaEngineEqualsGoEngine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		unpriced string // a model left out of the price file
		scale    int
	}{
		{name: "exact", scale: -1},
		{name: "scale 4 with unpriced usage", unpriced: "meta.llama3-8b-instruct-v1:0", scale: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			goDir := t.TempDir()
			goStore, _, _ := genStore(t, goDir, daygen.Config{Day: testDay, Events: 20_000, Files: 3, OtherDay: 5, Seed: 11})
			athDir, athStore := copyEvents(t, goDir)

			var prices []string
			for _, line := range strings.SplitAfter(daygen.PriceCSV(testDay), "\n") {
				if tc.unpriced == "" || !strings.HasPrefix(line, tc.unpriced+",") {
					prices = append(prices, line)
				}
			}
			priceCSV := []byte("# generated prices\n" + strings.Join(prices, ""))
			book, err := pricing.Parse(bytes.NewReader(priceCSV), "gen-prices.csv")
			if err != nil {
				t.Fatal(err)
			}
			cfg := compaction.Config{Store: goStore, Day: testDay, Prices: book, Force: true, Scale: compaction.Places(tc.scale)}
			goRes, goErr := compaction.Compact(ctx, cfg)

			cfg.Store = athStore
			ath := compaction.Athena{Client: startAthena(t, athDir), Location: athenaLocation, PriceCSV: priceCSV}
			athRes, athErr := compaction.CompactAthena(ctx, cfg, ath)
			if tc.unpriced == "" && (goErr != nil || athErr != nil) {
				t.Fatalf("go: %v; athena: %v", goErr, athErr)
			}
			if tc.unpriced != "" {
				if goErr == nil || athErr == nil {
					t.Fatalf("unpriced usage not reported: go %v, athena %v", goErr, athErr)
				}
			}

			goCSV := readKey(t, goStore, schemas.ChargebackCSVKey(testDay))
			athCSV := readKey(t, athStore, schemas.ChargebackCSVKey(testDay))
			if !bytes.Equal(goCSV, athCSV) {
				t.Fatalf("Athena engine's CSV differs from the Go engine's:\n--- go\n%s\n--- athena\n%s", goCSV, athCSV)
			}
			if n := bytes.Count(goCSV, []byte("\n")); n < 20 {
				t.Fatalf("only %d chargeback lines: the day was not generated", n)
			}
			g, a := goRes.Manifest, athRes.Manifest
			if a.Engine != "athena" || a.Revision != 1 {
				t.Errorf("athena manifest: engine %q revision %d", a.Engine, a.Revision)
			}
			if g.RowsRead != a.RowsRead || g.DuplicatesDropped != a.DuplicatesDropped || g.OtherDayRows != a.OtherDayRows ||
				g.RequestIDs != a.RequestIDs || g.Totals != a.Totals {
				t.Errorf("manifests differ:\ngo     %d %d %d %d %+v\nathena %d %d %d %d %+v", g.RowsRead, g.DuplicatesDropped, g.OtherDayRows, g.RequestIDs, g.Totals,
					a.RowsRead, a.DuplicatesDropped, a.OtherDayRows, a.RequestIDs, a.Totals)
			}
			if len(g.Inputs) != len(a.Inputs) {
				t.Fatalf("inputs: go %d, athena %d", len(g.Inputs), len(a.Inputs))
			}
			for i := range g.Inputs {
				if g.Inputs[i].Key != a.Inputs[i].Key || g.Inputs[i].Rows != a.Inputs[i].Rows || g.Inputs[i].Size != a.Inputs[i].Size {
					t.Errorf("input %d: go %+v, athena %+v", i, g.Inputs[i], a.Inputs[i])
				}
			}
			if len(g.Unpriced) != len(a.Unpriced) {
				t.Fatalf("unpriced: go %+v, athena %+v", g.Unpriced, a.Unpriced)
			}
			for i := range g.Unpriced {
				gu, au := g.Unpriced[i], a.Unpriced[i]
				gu.Reason, au.Reason = "", ""
				if gu != au {
					t.Errorf("unpriced %d: go %+v, athena %+v", i, gu, au)
				}
			}
			// The daily table: Athena's UNLOAD objects hold the Go engine's daily rows.
			goDaily, err := parquetio.ReadDaily(bytes.NewReader(readKey(t, goStore, schemas.DailyKey(testDay))), int64(len(readKey(t, goStore, schemas.DailyKey(testDay)))))
			if err != nil {
				t.Fatal(err)
			}
			var athDaily []schemas.DailyRow
			outputs := 0
			for _, o := range a.Outputs {
				if !strings.HasPrefix(o.Key, schemas.Partition(schemas.DailyPrefix, testDay)) {
					continue
				}
				outputs++
				data := readKey(t, athStore, o.Key)
				rows, err := parquetio.ReadDaily(bytes.NewReader(data), int64(len(data)))
				if err != nil {
					t.Fatalf("%s: %v", o.Key, err)
				}
				if len(rows) != o.Rows || int64(len(data)) != o.Size {
					t.Errorf("%s: manifest says %d rows %d bytes, has %d rows %d bytes", o.Key, o.Rows, o.Size, len(rows), len(data))
				}
				athDaily = append(athDaily, rows...)
			}
			byID := func(rows []schemas.DailyRow) {
				slices.SortFunc(rows, func(x, y schemas.DailyRow) int { return strings.Compare(x.RequestID, y.RequestID) })
			}
			byID(goDaily)
			byID(athDaily)
			if outputs == 0 || len(goDaily) != len(athDaily) {
				t.Fatalf("daily rows: go %d, athena %d in %d objects", len(goDaily), len(athDaily), outputs)
			}
			for i := range goDaily {
				if goDaily[i] != athDaily[i] {
					t.Fatalf("daily row %d:\ngo     %+v\nathena %+v", i, goDaily[i], athDaily[i])
				}
			}
			if athRes.ScannedBytes <= 0 || len(athRes.QueryIDs) < 2 {
				t.Errorf("scanned %d bytes in %d queries", athRes.ScannedBytes, len(athRes.QueryIDs))
			}

			// The same inputs again: the same revision, nothing rewritten differently.
			again, err := compaction.CompactAthena(ctx, cfg, ath)
			if (err != nil) != (athErr != nil) || !again.Unchanged || again.Manifest.Revision != 1 {
				t.Errorf("rerun: unchanged %v revision %d err %v", again != nil && again.Unchanged, again.Manifest.Revision, err)
			}
			t.Logf("%d chargeback lines byte-equal, %d daily rows equal (%d objects); Athena scanned %d bytes in %d queries", bytes.Count(goCSV, []byte("\n")), len(goDaily), outputs, athRes.ScannedBytes, len(athRes.QueryIDs))
		})
	}
}

func TestAthenaEngineRefusesWhatAthenaWouldMisread(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, _, book := genStore(t, dir, daygen.Config{Day: testDay, Events: 100, Files: 1, Seed: 3})
	c := &athenaq.Client{API: nil}
	cfg := compaction.Config{Store: st, Day: testDay, Prices: book, Force: true}
	if _, err := compaction.CompactAthena(ctx, cfg, compaction.Athena{Client: c, Location: "file:///tmp"}); err == nil || !strings.Contains(err.Error(), "s3://") {
		t.Errorf("a file:// location: %v", err)
	}
	// Columns in another order than the prices table's.
	swapped := "effective_from,model_id,input_per_1k,output_per_1k\n2024-01-01,m,1,1\n"
	b, err := pricing.Parse(strings.NewReader(swapped), "swapped.csv")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Prices = b
	_, err = compaction.CompactAthena(ctx, cfg, compaction.Athena{Client: c, Location: athenaLocation, PriceCSV: []byte(swapped)})
	if err == nil || !strings.Contains(err.Error(), "column 1") {
		t.Errorf("swapped price columns: %v", err)
	}
	// A price file that is not the book's.
	_, err = compaction.CompactAthena(ctx, cfg, compaction.Athena{Client: c, Location: athenaLocation, PriceCSV: []byte("other")})
	if err == nil {
		t.Error("a price file other than the book's was accepted")
	}
}

// countingAPI counts the queries submitted through it.
type countingAPI struct {
	athenaq.API
	starts int
}

func (c *countingAPI) StartQueryExecution(ctx context.Context, in *athena.StartQueryExecutionInput, opts ...func(*athena.Options)) (*athena.StartQueryExecutionOutput, error) {
	c.starts++
	return c.API.StartQueryExecution(ctx, in, opts...)
}

// stopAfterPending cancels the run once it has recorded its queries: a
// Lambda reaching its timeout while Athena works.
type stopAfterPending struct {
	*store.FileStore
	cancel context.CancelFunc
}

func (s *stopAfterPending) Put(ctx context.Context, key string, body io.Reader) error {
	err := s.FileStore.Put(ctx, key, body)
	if key == compaction.PendingKey(testDay) && s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	return err
}

func TestAthenaRunResumesQueriesAnEarlierRunStarted(t *testing.T) {
	dir := t.TempDir()
	goStore, _, book := genStore(t, dir, daygen.Config{Day: testDay, Events: 3_000, Files: 2, Seed: 13})
	athDir, athStore := copyEvents(t, dir)
	if _, err := compaction.Compact(context.Background(), compaction.Config{Store: goStore, Day: testDay, Prices: book, Force: true}); err != nil {
		t.Fatal(err)
	}
	client := startAthena(t, athDir)
	api := &countingAPI{API: client.API}
	client.API = api
	ath := compaction.Athena{Client: client, Location: athenaLocation, PriceCSV: []byte(daygen.PriceCSV(testDay))}

	ctx, cancel := context.WithCancel(context.Background())
	st := &stopAfterPending{FileStore: athStore, cancel: cancel}
	cfg := compaction.Config{Store: st, Day: testDay, Prices: book, Force: true}
	if _, err := compaction.CompactAthena(ctx, cfg, ath); !errors.Is(err, context.Canceled) {
		t.Fatalf("the first run was not stopped while waiting: %v", err)
	}
	if api.starts != 3 {
		t.Fatalf("first run started %d queries, want 3", api.starts)
	}
	if _, err := athStore.Get(context.Background(), schemas.ManifestKey(testDay)); err == nil {
		t.Fatal("a stopped run committed a manifest")
	}
	res, err := compaction.CompactAthena(context.Background(), cfg, ath)
	if err != nil {
		t.Fatal(err)
	}
	if api.starts != 4 { // only the daily table's row count is new
		t.Errorf("the second run started %d more queries, want 1: it did not resume", api.starts-3)
	}
	if !bytes.Equal(readKey(t, goStore, schemas.ChargebackCSVKey(testDay)), readKey(t, athStore, schemas.ChargebackCSVKey(testDay))) || res.Manifest.Revision != 1 {
		t.Error("the resumed run's chargeback differs from the Go engine's")
	}
	if _, err := athStore.Get(context.Background(), compaction.PendingKey(testDay)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pending record left after the commit: %v", err)
	}
}

func TestAthenaRunForgetsQueriesAthenaNoLongerKnows(t *testing.T) {
	dir := t.TempDir()
	st, _, book := genStore(t, dir, daygen.Config{Day: testDay, Events: 500, Files: 1, Seed: 14})
	price := []byte(daygen.PriceCSV(testDay))
	ctx, cancel := context.WithCancel(context.Background())
	stop := &stopAfterPending{FileStore: st, cancel: cancel}
	cfg := compaction.Config{Store: stop, Day: testDay, Prices: book, Force: true}
	if _, err := compaction.CompactAthena(ctx, cfg, compaction.Athena{Client: startAthena(t, dir), Location: athenaLocation, PriceCSV: price}); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v", err)
	}
	// Another Athena (a restarted local server) has never heard of those queries.
	other := compaction.Athena{Client: startAthena(t, dir), Location: athenaLocation, PriceCSV: price}
	var qe *athenaq.QueryError
	if _, err := compaction.CompactAthena(context.Background(), cfg, other); !errors.As(err, &qe) || qe.State != "UNKNOWN" {
		t.Fatalf("second run: %v", err)
	}
	res, err := compaction.CompactAthena(context.Background(), cfg, other)
	if err != nil || res.Manifest.Revision != 1 || len(res.QueryIDs) < 3 {
		t.Fatalf("third run (fresh queries): %v", err)
	}
}

func TestAthenaEngineOnADayWithoutEvents(t *testing.T) {
	ctx := context.Background()
	goStore, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	athDir := t.TempDir()
	athStore, err := store.OpenFile(athDir)
	if err != nil {
		t.Fatal(err)
	}
	book, err := pricing.Parse(strings.NewReader(daygen.PriceCSV(testDay)), "gen-prices.csv")
	if err != nil {
		t.Fatal(err)
	}
	cfg := compaction.Config{Store: goStore, Day: testDay, Prices: book, Force: true}
	if _, err := compaction.Compact(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Store = athStore
	res, err := compaction.CompactAthena(ctx, cfg, compaction.Athena{Client: startAthena(t, athDir), Location: athenaLocation, PriceCSV: []byte(daygen.PriceCSV(testDay))})
	if err != nil {
		t.Fatal(err)
	}
	g, a := readKey(t, goStore, schemas.ChargebackCSVKey(testDay)), readKey(t, athStore, schemas.ChargebackCSVKey(testDay))
	if !bytes.Equal(g, a) || res.Manifest.RowsRead != 0 || len(res.Manifest.Inputs) != 0 {
		t.Fatalf("empty day: go %q, athena %q, manifest %+v", g, a, res.Manifest)
	}
}
