package reconcile

// Servers started by these tests: versitygw on 127.0.0.1 (the S3 variant);
// the rest reads file:// locations.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/schemas"
)

// TestFixtureDayWitnesses sets the shared fixture day (../testdata/events) against
// its invocation log records (../testdata/invocationlogs, shaped like AWS's
// published ModelInvocationLog examples) and the Bedrock lines of its CUR 2.0
// export (../testdata/cur, CUR 2.0 column names, costs worked out by hand from
// ../testdata/prices), laid out as AWS delivers them. The call that bypassed
// meter (req-08) is unmetered in the logs and shows in the bill as billed
// tokens meter did not meter, within the dollar tolerance.
func TestFixtureDayWitnesses(t *testing.T) {
	st, logs, bill := fixtureWitnessDirs(t)
	checkFixtureWitnesses(t, st, "file://"+logs, "file://"+bill)
}

// TestFixtureDayWitnessesOnS3 reads the same invocation logs and export from
// S3 (versitygw on 127.0.0.1), as meter reconcile does in production.
func TestFixtureDayWitnessesOnS3(t *testing.T) {
	gw := testenv.StartVersityGW(t)
	gw.SetEnv(t)
	st, logs, bill := fixtureWitnessDirs(t)
	for local, prefix := range map[string]string{logs: "bedrock-logs/", bill: "billing/cur2/"} {
		err := filepath.WalkDir(local, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(local, path)
			_, err = gw.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(gw.Bucket()),
				Key: aws.String(prefix + filepath.ToSlash(rel)), Body: bytes.NewReader(data)})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	checkFixtureWitnesses(t, st, gw.URI("bedrock-logs/AWSLogs/"+daygen.Account+"/BedrockModelInvocationLogs/"+daygen.Region), gw.URI("billing/cur2"))
}

// fixtureWitnessDirs compacts the fixture day into a file store and lays out
// its invocation logs and CUR export as AWS delivers them, in two folders.
func fixtureWitnessDirs(t *testing.T) (*store.FileStore, string, string) {
	t.Helper()
	ctx := context.Background()
	events := fixtureEvents(t)
	st := openTrailStore(t, t.TempDir())
	putUsage(t, st, events)
	prices, err := os.ReadFile(filepath.Join("..", "testdata", "prices", "2026-11.csv"))
	if err != nil {
		t.Fatal(err)
	}
	book, err := pricing.Parse(bytes.NewReader(prices), "2026-11.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: "2026-11-25", Prices: book, Force: true}); err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	logs, bill := filepath.Join(root, "logs"), filepath.Join(root, "bill")
	lines, err := os.ReadFile(filepath.Join("..", "testdata", "invocationlogs", "2026-11-25.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range bytes.Split(bytes.TrimSpace(lines), []byte("\n")) {
		var rec schemas.InvocationLog
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		at, err := time.Parse(time.RFC3339, rec.Timestamp)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(logs, "AWSLogs", daygen.Account, "BedrockModelInvocationLogs", daygen.Region, at.Format("2006/01/02/15"))
		os.MkdirAll(dir, 0o755)
		writeGzipLines(t, filepath.Join(dir, at.Format("20060102T150405Z")+"_"+string(rune('a'+i))+".json.gz"), line)
	}
	cur := readCURCSV(t, filepath.Join("..", "testdata", "cur", "2026-11-25-bedrock.csv"))
	writeBill(t, bill, cur)
	return st, logs, bill
}

func checkFixtureWitnesses(t *testing.T, st store.Store, logsURI, billURI string) {
	t.Helper()
	res, err := RunAll(context.Background(), Config{Day: "2026-11-25", Store: st, InvocationLogs: logsURI, Bill: billURI,
		Now: func() time.Time { return ctTime("2026-11-27T00:00:00Z") }})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range res.Tokens.Rows {
		got[r.RequestID] = r.Status
	}
	want := map[string]string{"req-01": "matched", "req-02": "matched", "req-03": "matched", "req-04": "matched", "req-08": "unmetered"}
	if len(got) != len(want) {
		t.Errorf("token rows %v, want %v", got, want)
	}
	for id, s := range want {
		if got[id] != s {
			t.Errorf("%s: %s, want %s", id, got[id], s)
		}
	}
	const haiku = "anthropic.claude-3-5-haiku-20241022-v1:0"
	for _, r := range res.Bill.Rows {
		w := aggregator.BillMatched
		if r.ModelID == haiku && !r.CrossRegion && (r.TokenType == "input" || r.TokenType == "output") {
			w = aggregator.BillTokensDiffer // req-08, billed but never metered
		}
		if r.Status != w {
			t.Errorf("%s %s cross=%v: %s (%s), want %s", r.ModelID, r.TokenType, r.CrossRegion, r.Status, r.Detail, w)
		}
	}
	if !res.Bill.BilledTotal.Equal(decimal.RequireFromString("0.01118")) || !res.Bill.MeteredTotal.Equal(decimal.RequireFromString("0.01078")) {
		t.Errorf("billed %s, metered %s; want 0.01118 and 0.01078", res.Bill.BilledTotal, res.Bill.MeteredTotal)
	}
}

func fixtureEvents(t *testing.T) []schemas.Event {
	t.Helper()
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
	return events
}

func writeGzipLines(t *testing.T, path string, lines ...[]byte) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for _, l := range lines {
		zw.Write(append(l, '\n'))
	}
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readCURCSV reads the fixture's export lines (CUR 2.0 column names).
func readCURCSV(t *testing.T, path string) []daygen.CURLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	var out []daygen.CURLine
	for _, r := range recs[1:] {
		get := func(c string) string { return strings.TrimSpace(r[col[c]]) }
		start, _ := time.Parse(time.RFC3339, get("line_item_usage_start_date"))
		end, _ := time.Parse(time.RFC3339, get("line_item_usage_end_date"))
		out = append(out, daygen.CURLine{ID: get("identity_line_item_id"), Start: start, End: end, ProductCode: get("line_item_product_code"),
			UsageType: get("line_item_usage_type"), LineItemType: get("line_item_line_item_type"), Operation: get("line_item_operation"),
			UsageAmount: decimal.RequireFromString(get("line_item_usage_amount")), PricingUnit: get("pricing_unit"),
			Cost: decimal.RequireFromString(get("line_item_unblended_cost"))})
	}
	return out
}
