package reconcile

// Acceptance of the witnesses on a generated day (internal/daygen: five
// teams, twelve models, cache tokens, one cross-region profile), compacted,
// then set against the invocation logs and the CUR 2.0 export AWS would
// deliver for it (daygen.InvocationLogs, daygen.CURLines: built from AWS's
// published record format and CUR 2.0 columns). Stores are the embedded
// file:// ones; no server is needed.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

const witnessDay = "2026-11-20"

type witnessDayFixture struct {
	root  string
	st    *store.FileStore
	daily []schemas.DailyRow
}

func generatedDay(t *testing.T) witnessDayFixture {
	t.Helper()
	root := t.TempDir()
	st, err := store.OpenFile(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(st.Dir(), "events", "dt="+witnessDay)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := daygen.Generate(daygen.Config{Day: witnessDay, Events: 1200, Files: 3, Seed: 22}, func(name string) (io.WriteCloser, error) {
		return os.Create(filepath.Join(dir, name))
	}); err != nil {
		t.Fatal(err)
	}
	book, err := pricing.Parse(strings.NewReader(daygen.PriceCSV(witnessDay)), "gen-prices.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compaction.Compact(context.Background(), compaction.Config{Store: st, Day: witnessDay, Prices: book, Force: true}); err != nil {
		t.Fatal(err)
	}
	daily, err := StoreDaily(st)(context.Background(), witnessDay)
	if err != nil {
		t.Fatal(err)
	}
	var cache, cross bool
	teams := map[string]bool{}
	for _, r := range daily {
		cache = cache || r.CacheReadInputTokens > 0 && r.CacheWriteInputTokens >= 0
		cross = cross || strings.HasPrefix(r.ModelID, "us.")
		teams[r.TeamID] = true
	}
	if !cache || !cross || len(teams) < 3 {
		t.Fatalf("generated day lacks cache tokens (%v), a cross-region profile (%v) or teams (%d)", cache, cross, len(teams))
	}
	return witnessDayFixture{root: root, st: st, daily: daily}
}

func writeBill(t *testing.T, dir string, lines []daygen.CURLine) string {
	t.Helper()
	path := filepath.Join(dir, "meter-cur", "data", "BILLING_PERIOD=2026-11", "meter-cur-00001.snappy.parquet")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := daygen.WriteCUR(&buf, lines); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readCSV(t *testing.T, st store.Store, key string) [][]string {
	t.Helper()
	data, err := store.ReadAll(context.Background(), st, key)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestWitnessesOnAGeneratedDay(t *testing.T) {
	f := generatedDay(t)
	ctx := context.Background()
	now := func() time.Time { return time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC) }

	// Invocation logs: every call of the day, one record altered, one call
	// Bedrock served that meter never metered, and objects that cannot be read.
	recs := daygen.InvocationLogs(f.daily)
	altered := -1
	for i := range recs {
		if *recs[i].Input.CacheReadInputTokenCount > 0 {
			altered = i
			break
		}
	}
	alteredID, meteredIn := recs[altered].RequestID, *recs[altered].Input.InputTokenCount
	loggedIn := meteredIn + 3
	recs[altered].Input.InputTokenCount = &loggedIn
	zero, seven := int64(0), int64(7)
	recs = append(recs, schemas.InvocationLog{SchemaType: schemas.InvocationLogSchemaType, SchemaVersion: "1.0", Timestamp: witnessDay + "T12:00:00Z",
		RequestID: "f00dbabe-0000-4000-8000-000000000001", Operation: "Converse", ModelID: "anthropic.claude-3-5-haiku-20241022-v1:0",
		Input: schemas.InvocationLogIn{InputTokenCount: &seven}, Output: schemas.InvocationLogOut{OutputTokenCount: &zero}})
	logs := filepath.Join(f.root, "logs")
	if _, err := daygen.WriteInvocationLogs(logs, recs, 100); err != nil {
		t.Fatal(err)
	}
	hourDir := filepath.Join(logs, "AWSLogs", daygen.Account, "BedrockModelInvocationLogs", daygen.Region, "2026", "11", "20", "13")
	var junk bytes.Buffer
	zw := gzip.NewWriter(&junk)
	zw.Write([]byte("{not json\n{\"schemaType\":\"ModelInvocationLog\",\"timestamp\":\"2026-11-20T13:00:00Z\"}\n"))
	zw.Close()
	var cut bytes.Buffer
	zw = gzip.NewWriter(&cut)
	for i := 0; i < 50; i++ {
		zw.Write([]byte(`{"schemaType":"ModelInvocationLog","timestamp":"2026-11-20T13:30:00Z","requestId":"cut-` + strings.Repeat("x", i) + `","input":{"inputTokenCount":1},"output":{"outputTokenCount":1}}` + "\n"))
	}
	zw.Close()
	for name, data := range map[string][]byte{"junk.json.gz": junk.Bytes(), "partial.json.gz": cut.Bytes()[:cut.Len()*2/3]} {
		if err := os.MkdirAll(hourDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hourDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The bill: exactly the list price of every call.
	bills := filepath.Join(f.root, "bill")
	writeBill(t, bills, daygen.CURLines(witnessDay, f.daily, nil))

	cfg := Config{Day: witnessDay, Store: f.st, InvocationLogs: "file://" + logs, Bill: "file://" + bills, Now: now}
	res, err := RunAll(ctx, cfg)
	if err != nil {
		t.Fatalf("exact bill: %v", err)
	}
	tok := res.Tokens
	if got, want := tok.Counts[aggregator.TokensMatched], len(recs)-2; got != want {
		t.Errorf("matched %d requests, want %d", got, want)
	}
	cutRead := 0 // the partial object's records before its cut are read (calls nobody metered)
	for _, r := range tok.Rows {
		if strings.HasPrefix(r.RequestID, "cut-") {
			cutRead++
		}
	}
	if tok.Counts[aggregator.TokensMismatched] != 1 || tok.Counts[aggregator.TokensUnmetered] != 1+cutRead || tok.Counts[aggregator.TokensUnconfirmed] != 0 || cutRead == 0 || cutRead >= 50 {
		t.Errorf("counts %v, %d records of the partial object read", tok.Counts, cutRead)
	}
	var unreadable []string
	for _, r := range tok.Rows {
		switch {
		case r.RequestID == alteredID:
			if r.Status != aggregator.TokensMismatched || r.Metered.Input != meteredIn || r.Logged.Input != loggedIn || !strings.Contains(r.Detail, "input tokens differ") {
				t.Errorf("altered record: %+v", r)
			}
		case r.RequestID == "f00dbabe-0000-4000-8000-000000000001":
			if r.Status != aggregator.TokensUnmetered || r.Logged.Input != 7 || r.Metered != nil {
				t.Errorf("unmetered call: %+v", r)
			}
		case r.Status == aggregator.TokensUnreadable:
			unreadable = append(unreadable, filepath.Base(r.LogKey)+":"+itoa(r.LogLine))
		}
	}
	if strings.Join(unreadable, " ") != "junk.json.gz:1 junk.json.gz:2 partial.json.gz:"+itoa(lastLine(tok, "partial.json.gz")) || len(unreadable) != 3 {
		t.Errorf("unreadable parts %v, want junk lines 1 and 2 and where partial.json.gz ends", unreadable)
	}
	csvRows := readCSV(t, f.st, schemas.TokensCSVKey(witnessDay))
	if strings.Join(csvRows[0], ",") != strings.Join(schemas.TokensColumns, ",") || len(csvRows) != len(tok.Rows)+1 {
		t.Errorf("tokens CSV: header %v, %d rows", csvRows[0], len(csvRows)-1)
	}
	for _, r := range res.Bill.Rows {
		if r.Status != aggregator.BillMatched {
			t.Errorf("exact bill: %+v", r)
		}
	}
	checkAllocation(t, res, f.daily)

	// A 10% discount on one model: every token type of it differs, exit 4's
	// error names it, and the allocation still adds up to the bill.
	const sonnet = "anthropic.claude-3-7-sonnet-20250219-v1:0"
	writeBill(t, bills, daygen.CURLines(witnessDay, f.daily, map[string]decimal.Decimal{sonnet: decimal.RequireFromString("0.1")}))
	var emf bytes.Buffer
	cfg.Metrics = metrics.NewEMF(&emf)
	res, err = RunAll(ctx, cfg)
	got := map[string]float64{}
	for _, line := range bytes.Split(bytes.TrimSpace(emf.Bytes()), []byte("\n")) {
		vals, err := metrics.ParseEMF(line)
		if err != nil {
			t.Fatalf("EMF %s: %v", line, err)
		}
		var doc struct{ Status string }
		json.Unmarshal(line, &doc)
		for k, v := range vals {
			got[k+"/"+doc.Status] += v
		}
	}
	if got[metrics.ReconcileBillDiffering+"/"] != 1 || got[metrics.ReconcileBillDifference+"/"] >= 0 || got[metrics.ReconcileTokenRows+"/mismatched"] != 1 {
		t.Errorf("EMF %v", got)
	}
	var de *BillDifferenceError
	if !errors.As(err, &de) || strings.Join(de.Models, ",") != sonnet {
		t.Fatalf("discounted bill: %v, want a difference in %s only", err, sonnet)
	}
	types := map[string]bool{}
	for _, r := range res.Bill.Rows {
		if r.ModelID != sonnet {
			if r.Status != aggregator.BillMatched {
				t.Errorf("undiscounted model: %+v", r)
			}
			continue
		}
		diff := r.BilledCost.Sub(r.MeteredCost)
		if r.Status != aggregator.BillDiffers && !(r.Status == aggregator.BillMatched && diff.Abs().LessThanOrEqual(res.Bill.Tolerance)) ||
			!diff.Equal(r.MeteredCost.Mul(decimal.RequireFromString("-0.1"))) || !r.BilledTokens.Equal(r.MeteredTokens) {
			t.Errorf("discounted %s: %s, billed %s, metered %s", r.TokenType, r.Status, r.BilledCost, r.MeteredCost)
		}
		types[r.TokenType] = true
	}
	if len(types) != 4 {
		t.Errorf("discounted model's token types %v, want input, output, cache read and cache write", types)
	}
	// The manifest names the export object and, per model, the lines its cost came from.
	var man schemas.AllocatedManifest
	data, err := store.ReadAll(ctx, f.st, schemas.AllocatedManifestKey(witnessDay))
	if err != nil || json.Unmarshal(data, &man) != nil {
		t.Fatalf("allocated manifest: %v", err)
	}
	if len(man.BillInputs) != 1 || len(man.BillInputs[0].SHA256) != 64 || !strings.HasSuffix(man.BillInputs[0].Key, ".parquet") {
		t.Errorf("bill inputs %+v", man.BillInputs)
	}
	for _, m := range man.Models {
		sum := decimal.Zero
		for _, l := range m.Lines {
			sum = sum.Add(decimal.RequireFromString(l.Cost))
		}
		if !sum.Equal(decimal.RequireFromString(m.BilledCost)) || len(m.Lines) == 0 {
			t.Errorf("%s: lines add up to %s, billed %s", m.ModelID, sum, m.BilledCost)
		}
		if m.ModelID == sonnet && !containsLineType(m.Lines, "Discount") {
			t.Errorf("%s: the discount lines are not in the manifest", sonnet)
		}
	}
	bill := readCSV(t, f.st, schemas.BillCSVKey(witnessDay))
	if strings.Join(bill[0], ",") != strings.Join(schemas.BillColumns, ",") {
		t.Errorf("bill CSV header %v", bill[0])
	}
	checkAllocation(t, res, f.daily)

	// No bill for the day yet: the export ends the day before.
	early := filepath.Join(f.root, "early")
	writeBill(t, early, daygen.CURLines("2026-11-19", nil, nil))
	_, err = RunAll(ctx, Config{Day: witnessDay, Store: f.st, Bill: "file://" + early, Now: now})
	var nb *NoBillError
	if !errors.As(err, &nb) {
		t.Errorf("export ending the day before: %v, want a NoBillError", err)
	}

	// An export object that is not Parquet (cut short, say) is named.
	path := writeBill(t, filepath.Join(f.root, "broken"), daygen.CURLines(witnessDay, f.daily, nil))
	data, _ = os.ReadFile(path)
	os.WriteFile(path, data[:len(data)/2], 0o644)
	_, err = RunAll(ctx, Config{Day: witnessDay, Store: f.st, Bill: "file://" + filepath.Join(f.root, "broken"), Now: now})
	if err == nil || !strings.Contains(err.Error(), "meter-cur-00001.snappy.parquet") {
		t.Errorf("partial export: %v, want an error naming the object", err)
	}
}

func containsLineType(lines []schemas.AllocatedLine, typ string) bool {
	for _, l := range lines {
		if l.LineItemType == typ {
			return true
		}
	}
	return false
}

func itoa(n int) string { return decimal.NewFromInt(int64(n)).String() }

func lastLine(rep *aggregator.TokenReport, name string) int {
	for _, r := range rep.Rows {
		if r.Status == aggregator.TokensUnreadable && filepath.Base(r.LogKey) == name {
			return r.LogLine
		}
	}
	return -1
}

// checkAllocation: per model, the allocated cents add up to the billed cost
// rounded to the cent, and every row's share is its list-price share of the
// bill to within a cent.
func checkAllocation(t *testing.T, res Result, daily []schemas.DailyRow) {
	t.Helper()
	list := map[string]decimal.Decimal{}
	for _, r := range res.Allocation.Rows {
		list[r.BilledModel] = list[r.BilledModel].Add(r.ListCost)
	}
	sum := map[string]decimal.Decimal{}
	for _, r := range res.Allocation.Rows {
		billed := res.Bill.BilledByModel[r.BilledModel].Round(2)
		exact := billed.Mul(r.ListCost).DivRound(list[r.BilledModel], 12)
		if r.Allocated.Sub(exact).Abs().GreaterThanOrEqual(decimal.New(1, -2)) {
			t.Errorf("%s %s %s: allocated %s, its share of %s is %s", r.TeamID, r.CostCenter, r.ModelID, r.Allocated, billed, exact)
		}
		sum[r.BilledModel] = sum[r.BilledModel].Add(r.Allocated)
	}
	if len(sum) < 5 {
		t.Errorf("allocation covers %d models", len(sum))
	}
	for m, s := range sum {
		if want := res.Bill.BilledByModel[m].Round(2); !s.Equal(want) {
			t.Errorf("%s: allocated %s, billed %s", m, s, want)
		}
	}
	if len(res.Allocation.Unallocated) != 0 {
		t.Errorf("unallocated %v", res.Allocation.Unallocated)
	}
}
