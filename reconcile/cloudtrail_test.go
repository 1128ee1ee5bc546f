package reconcile

// Servers started by these tests: a CloudTrail LookupEvents endpoint (awsJson1_1)
// on 127.0.0.1, written below, serving the same records the trail files hold.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// openTrailStore opens the embedded file store at dir.
func openTrailStore(t *testing.T, dir string) *store.FileStore {
	t.Helper()
	s, err := store.OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// putUsage writes events as the aggregator does: Parquet under events/dt=DAY/,
// here two files a day.
func putUsage(t *testing.T, st store.Store, events []schemas.Event) {
	t.Helper()
	byDay := map[string][]schemas.EventRow{}
	for i := range events {
		byDay[events[i].Day()] = append(byDay[events[i].Day()], schemas.NewEventRow(&events[i]))
	}
	for day, rows := range byDay {
		half := len(rows) / 2
		for i, part := range [][]schemas.EventRow{rows[:half], rows[half:]} {
			var buf bytes.Buffer
			if err := parquetio.Write(&buf, part, parquetio.Options{}); err != nil {
				t.Fatal(err)
			}
			key := fmt.Sprintf("%spart-%d.parquet", schemas.Partition(schemas.EventsPrefix, day), i)
			if err := st.Put(context.Background(), key, &buf); err != nil {
				t.Fatal(err)
			}
		}
	}
}

const (
	ctAccount = "111122223333"
	ctInvoker = "arn:aws:sts::111122223333:assumed-role/meter-invoker/i-0abc"
	ctAlice   = "arn:aws:iam::111122223333:user/alice"
	ctHaiku   = "anthropic.claude-3-haiku-20240307-v1:0"
	ctSonnet  = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"
)

func ctTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// ctRecord is a CloudTrail record shaped like the ones Bedrock writes.
func ctRecord(eventID, requestID, at, source, name, model, arn string) map[string]any {
	r := map[string]any{
		"eventVersion": "1.09",
		"userIdentity": map[string]any{
			"type": "AssumedRole", "principalId": "AROAEXAMPLE:i-0abc", "arn": arn, "accountId": ctAccount,
			"accessKeyId": "ASIAEXAMPLE",
		},
		"eventTime": at, "eventSource": source, "eventName": name, "awsRegion": "us-east-1",
		"sourceIPAddress": "10.0.4.17", "userAgent": "aws-sdk-go-v2/1.48.0",
		"requestParameters": nil, "responseElements": nil,
		"requestID": requestID, "eventID": eventID, "readOnly": true, "eventType": "AwsApiCall",
		"managementEvent": true, "recipientAccountId": ctAccount, "eventCategory": "Management",
	}
	if model != "" {
		r["requestParameters"] = map[string]any{"modelId": model}
	}
	return r
}

func bedrockCall(eventID, requestID, at, name, model, arn string) map[string]any {
	return ctRecord(eventID, requestID, at, "bedrock.amazonaws.com", name, model, arn)
}

// ctScenario is one day of calls around 2026-11-25, keyed by the delivery time
// of the trail file that holds them.
type ctFile struct {
	delivered string
	records   []map[string]any
}

func ctScenario() []ctFile {
	failed := bedrockCall("ct-7", "r-0007", "2026-11-25T19:00:00Z", "Converse", ctHaiku, ctInvoker)
	failed["errorCode"] = "ValidationException"
	crossRegion := bedrockCall("ct-2", "r-0002", "2026-11-25T14:30:00Z", "Converse", ctSonnet, ctInvoker)
	crossRegion["additionalEventData"] = map[string]any{"inferenceRegion": "us-west-2"}
	return []ctFile{
		// The day before: a stream that started before midnight and was metered after it.
		{"2026-11-24T23:55:00Z", []map[string]any{
			bedrockCall("ct-4", "r-0004", "2026-11-24T23:50:00Z", "ConverseStream", ctHaiku, ctInvoker),
			bedrockCall("ct-old", "r-old", "2026-11-24T21:00:00Z", "InvokeModel", ctHaiku, ctInvoker),
		}},
		{"2026-11-25T10:05:00Z", []map[string]any{
			bedrockCall("ct-1", "r-0001", "2026-11-25T10:00:00Z", "InvokeModel", ctHaiku, ctInvoker),
			ctRecord("ct-s3", "s3-req", "2026-11-25T10:01:00Z", "s3.amazonaws.com", "GetObject", "", ctInvoker),
			ctRecord("ct-sts", "sts-req", "2026-11-25T10:02:00Z", "sts.amazonaws.com", "AssumeRole", "", ctInvoker),
			ctRecord("ct-list", "list-req", "2026-11-25T10:03:00Z", "bedrock.amazonaws.com", "ListFoundationModels", "", ctInvoker),
		}},
		// CloudTrail delivered ct-1 a second time.
		{"2026-11-25T10:20:00Z", []map[string]any{
			bedrockCall("ct-1", "r-0001", "2026-11-25T10:00:00Z", "InvokeModel", ctHaiku, ctInvoker),
			crossRegion,
		}},
		{"2026-11-25T16:10:00Z", []map[string]any{
			bedrockCall("ct-5", "r-0005", "2026-11-25T16:00:00Z", "InvokeModel", ctHaiku, ctAlice),
		}},
		{"2026-11-25T19:05:00Z", []map[string]any{failed}},
		// Spill: the last calls of the day arrive in the next day's folder.
		{"2026-11-26T00:07:00Z", []map[string]any{
			bedrockCall("ct-3", "r-0003", "2026-11-25T23:58:30Z", "InvokeModel", ctHaiku, ctInvoker),
		}},
		// Beyond the read window.
		{"2026-11-26T02:05:00Z", []map[string]any{
			bedrockCall("ct-99", "r-0099", "2026-11-26T02:00:00Z", "InvokeModel", ctHaiku, ctInvoker),
		}},
	}
}

// ctUsage is what the invoker metered for the same calls.
func ctUsage() []schemas.Event {
	ev := func(requestID, at, op, status, model string, latency int64) schemas.Event {
		return schemas.Event{
			SchemaVersion: 1, EventID: "ev-" + requestID, RequestID: requestID, Timestamp: ctTime(at), TeamID: "team-search",
			CostCenter: "cc-100", ModelID: model, Operation: op, Status: status, InputTokens: 200, OutputTokens: 50, LatencyMS: latency,
		}
	}
	return []schemas.Event{
		ev("r-0001", "2026-11-25T10:00:01.200Z", "InvokeModel", "success", ctHaiku, 1200),
		ev("r-0001", "2026-11-25T10:00:01.200Z", "InvokeModel", "success", ctHaiku, 1200), // redelivered by the stream
		ev("r-0002", "2026-11-25T14:30:03Z", "Converse", "success", ctSonnet, 3000),
		ev("r-0003", "2026-11-25T23:58:31Z", "InvokeModel", "success", ctHaiku, 900),
		ev("r-0004", "2026-11-25T00:00:30Z", "ConverseStream", "success", ctHaiku, 630000),
		ev("r-0006", "2026-11-25T18:00:00Z", "InvokeModel", "success", ctHaiku, 700),
		ev("r-0007", "2026-11-25T19:00:00.100Z", "Converse", "client_error", ctHaiku, 100),
		ev("r-0008", "2026-11-25T20:00:00Z", "InvokeModel", "denied", ctHaiku, 0),
	}
}

// writeTrail writes the scenario as CloudTrail writes trail files, under
// root/AWSLogs/ACCOUNT/CloudTrail/us-east-1/YYYY/MM/DD/, plus a digest file.
func writeTrail(t *testing.T, root string, files []ctFile) {
	t.Helper()
	for i, f := range files {
		at := ctTime(f.delivered)
		dir := filepath.Join(root, "AWSLogs", ctAccount, "CloudTrail", "us-east-1", at.Format("2006/01/02"))
		name := fmt.Sprintf("%s_CloudTrail_us-east-1_%s_%04d.json.gz", ctAccount, at.Format("20060102T1504Z"), i)
		writeGzipJSON(t, filepath.Join(dir, name), map[string]any{"Records": f.records})
	}
	digest := filepath.Join(root, "AWSLogs", ctAccount, "CloudTrail-Digest", "us-east-1", "2026", "11", "25",
		ctAccount+"_CloudTrail-Digest_us-east-1_trail_us-east-1_20261125T110000Z.json.gz")
	writeGzipJSON(t, digest, map[string]any{"digestStartTime": "2026-11-25T10:00:00Z", "logFiles": []any{}})
}

func writeGzipJSON(t *testing.T, path string, v any) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

var (
	ctFrom = ctTime("2026-11-24T23:00:00Z")
	ctTo   = ctTime("2026-11-26T01:00:00Z")
)

func requestIDs(evs []TrailEvent) []string {
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.RequestID)
	}
	return ids
}

func TestTrailFilesReadsDayFoldersWithSpill(t *testing.T) {
	root := t.TempDir()
	writeTrail(t, root, ctScenario())
	ctx := context.Background()

	res, err := (&TrailFiles{Store: openTrailStore(t, root)}).ReadTrail(ctx, ctFrom, ctTo)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := []string{"r-0004", "r-0001", "r-0002", "r-0005", "r-0007", "r-0003"}
	if got := requestIDs(res.Events); !reflect.DeepEqual(got, wantIDs) {
		t.Errorf("request ids = %v, want %v", got, wantIDs)
	}
	wantSkipped := map[string]int{
		TrailSkipNotBedrock: 2, TrailSkipNotInvocation: 1, TrailSkipDuplicate: 1,
		// r-old (21:00 the day before) and r-0099 (02:00 the day after): their
		// folders are read, their times are outside the window.
		TrailSkipOutsideWindow: 2,
	}
	if !reflect.DeepEqual(res.Skipped, wantSkipped) {
		t.Errorf("skipped = %v, want %v", res.Skipped, wantSkipped)
	}
	if res.Reads != 7 {
		t.Errorf("read %d files, want 7 (24th, 25th and 26th folders; no digest)", res.Reads)
	}
	byID := map[string]TrailEvent{}
	for _, e := range res.Events {
		byID[e.RequestID] = e
	}
	want2 := TrailEvent{
		EventID: "ct-2", RequestID: "r-0002", EventName: "Converse", EventSource: "bedrock.amazonaws.com", ModelID: ctSonnet,
		Region: "us-east-1", InferenceRegion: "us-west-2", EventTime: ctTime("2026-11-25T14:30:00Z"), Caller: ctInvoker,
	}
	if byID["r-0002"] != want2 {
		t.Errorf("r-0002 = %+v\nwant %+v", byID["r-0002"], want2)
	}
	if byID["r-0005"].Caller != ctAlice || byID["r-0007"].ErrorCode != "ValidationException" {
		t.Errorf("caller/errorCode not carried: %+v %+v", byID["r-0005"], byID["r-0007"])
	}

	// The same trail read from a deeper prefix: a store rooted at the region's
	// folder, and a Prefix inside the root store.
	deeper, err := (&TrailFiles{Store: openTrailStore(t, filepath.Join(root, "AWSLogs", ctAccount, "CloudTrail", "us-east-1"))}).ReadTrail(ctx, ctFrom, ctTo)
	if err != nil {
		t.Fatal(err)
	}
	prefixed, err := (&TrailFiles{Store: openTrailStore(t, root), Prefix: "AWSLogs/" + ctAccount + "/CloudTrail"}).ReadTrail(ctx, ctFrom, ctTo)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]TrailResult{"region root": deeper, "prefix": prefixed} {
		if !reflect.DeepEqual(r.Events, res.Events) {
			t.Errorf("%s: events = %v, want %v", name, requestIDs(r.Events), wantIDs)
		}
	}

	// Without the next day's folder the last call of the day would be missing.
	narrow, err := (&TrailFiles{Store: openTrailStore(t, root)}).ReadTrail(ctx, ctTime("2026-11-25T00:00:00Z"), ctTime("2026-11-26T00:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	if got := requestIDs(narrow.Events); !reflect.DeepEqual(got, []string{"r-0001", "r-0002", "r-0005", "r-0007", "r-0003"}) {
		t.Errorf("day window: request ids = %v", got)
	}
}

func TestTrailFilesCorruptFileIsAnError(t *testing.T) {
	root := t.TempDir()
	writeTrail(t, root, ctScenario())
	key := "AWSLogs/" + ctAccount + "/CloudTrail/us-east-1/2026/11/25/" + ctAccount + "_CloudTrail_us-east-1_20261125T2300Z_bad.json.gz"
	if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(key)), []byte("not gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := (&TrailFiles{Store: openTrailStore(t, root)}).ReadTrail(context.Background(), ctFrom, ctTo)
	if err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("err = %v, want one naming %s", err, key)
	}
}

func TestParseCloudTrailURI(t *testing.T) {
	for uri, want := range map[string]string{
		"lookup": TrailKindLookup, "s3://trail-bucket": TrailKindS3, "s3://trail-bucket/org/AWSLogs/": TrailKindS3,
		"file:///var/trail": TrailKindFile, "file://trail": TrailKindFile,
		"": "", "s3://": "", "file://": "", "/var/trail": "", "https://example.com": "", "LOOKUP": "",
	} {
		got, err := ParseCloudTrailURI(uri)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("ParseCloudTrailURI(%q) = %q, %v; want %q", uri, got, err, want)
		}
	}
}

// lookupServer answers CloudTrail's LookupEvents (awsJson1_1) from a list of
// records, newest first, pageSize events a page.
type lookupServer struct {
	records  []map[string]any
	pageSize int

	mu       sync.Mutex
	requests []lookupRequest
}

type lookupRequest struct {
	LookupAttributes []struct{ AttributeKey, AttributeValue string }
	StartTime        float64
	EndTime          float64
	MaxResults       int
	NextToken        string
}

func (s *lookupServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, typ, msg string) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
	}
	// aws-sdk-go-v2 sends the short target, botocore and older SDKs the long
	// one; CloudTrail accepts both.
	target := r.Header.Get("X-Amz-Target")
	if r.Method != http.MethodPost || (target != "CloudTrail_20131101.LookupEvents" &&
		target != "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents") {
		fail(400, "UnknownOperationException", "unknown operation "+r.Header.Get("X-Amz-Target"))
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		fail(403, "UnrecognizedClientException", "request not signed")
		return
	}
	var req lookupRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(400, "InvalidParameterException", err.Error())
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	if req.MaxResults < 1 || req.MaxResults > 50 {
		fail(400, "InvalidMaxResultsException", "MaxResults must be 1 to 50")
		return
	}
	start := time.Unix(0, int64(req.StartTime*1e9)).UTC()
	end := time.Unix(0, int64(req.EndTime*1e9)).UTC()
	var match []map[string]any
	for _, rec := range s.records {
		at := ctTime(rec["eventTime"].(string))
		ok := !at.Before(start) && !at.After(end)
		for _, a := range req.LookupAttributes {
			if a.AttributeKey == "EventSource" && rec["eventSource"] != a.AttributeValue {
				ok = false
			}
		}
		if ok {
			match = append(match, rec)
		}
	}
	sort.SliceStable(match, func(i, j int) bool { return match[i]["eventTime"].(string) > match[j]["eventTime"].(string) })
	offset := 0
	if req.NextToken != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(req.NextToken, "page-after-"))
		if err != nil {
			fail(400, "InvalidNextTokenException", "bad token")
			return
		}
		offset = n
	}
	size := min(req.MaxResults, s.pageSize)
	endIdx := min(offset+size, len(match))
	out := map[string]any{"Events": []any{}}
	var events []any
	for _, rec := range match[offset:endIdx] {
		raw, _ := json.Marshal(rec)
		events = append(events, map[string]any{
			"EventId": rec["eventID"], "EventName": rec["eventName"], "EventSource": rec["eventSource"], "ReadOnly": "true",
			"EventTime": float64(ctTime(rec["eventTime"].(string)).Unix()), "Username": "i-0abc",
			"CloudTrailEvent": string(raw),
		})
	}
	if events != nil {
		out["Events"] = events
	}
	if endIdx < len(match) {
		out["NextToken"] = "page-after-" + strconv.Itoa(endIdx)
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

// allRecords flattens the scenario as CloudTrail's event history holds it:
// each event once, whatever files delivered it.
func allRecords(files []ctFile) []map[string]any {
	seen := map[string]bool{}
	var out []map[string]any
	for _, f := range files {
		for _, r := range f.records {
			if id := r["eventID"].(string); !seen[id] {
				seen[id] = true
				out = append(out, r)
			}
		}
	}
	return out
}

func startLookupServer(t *testing.T, pageSize int) (*lookupServer, *cloudtrail.Client) {
	t.Helper()
	srv := &lookupServer{records: allRecords(ctScenario()), pageSize: pageSize}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	client := cloudtrail.New(cloudtrail.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(hs.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
	})
	return srv, client
}

// timedLookup records when each call leaves the reader.
type timedLookup struct {
	LookupEventsAPI
	times []time.Time
}

func (l *timedLookup) LookupEvents(ctx context.Context, in *cloudtrail.LookupEventsInput, optFns ...func(*cloudtrail.Options)) (*cloudtrail.LookupEventsOutput, error) {
	l.times = append(l.times, time.Now())
	return l.LookupEventsAPI.LookupEvents(ctx, in, optFns...)
}

func TestTrailLookupPaginatesAndPaces(t *testing.T) {
	srv, client := startLookupServer(t, 2)
	timed := &timedLookup{LookupEventsAPI: client}
	res, err := (&TrailLookup{Client: timed, CallsPerSecond: 20}).ReadTrail(context.Background(), ctFrom, ctTo)
	if err != nil {
		t.Fatal(err)
	}
	// Sorted by time, like the file reader.
	wantIDs := []string{"r-0004", "r-0001", "r-0002", "r-0005", "r-0007", "r-0003"}
	if got := requestIDs(res.Events); !reflect.DeepEqual(got, wantIDs) {
		t.Errorf("request ids = %v, want %v", got, wantIDs)
	}
	// The server filtered on the event source; ListFoundationModels is left.
	if want := map[string]int{TrailSkipNotInvocation: 1}; !reflect.DeepEqual(res.Skipped, want) {
		t.Errorf("skipped = %v, want %v", res.Skipped, want)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.requests) != 4 || res.Reads != 4 { // 7 events in the window, 2 a page
		t.Fatalf("%d requests (%d reads), want 4", len(srv.requests), res.Reads)
	}
	for i, req := range srv.requests {
		if len(req.LookupAttributes) != 1 || req.LookupAttributes[0].AttributeKey != "EventSource" ||
			req.LookupAttributes[0].AttributeValue != "bedrock.amazonaws.com" || req.MaxResults != 50 ||
			req.StartTime != float64(ctFrom.Unix()) || req.EndTime != float64(ctTo.Unix()) {
			t.Errorf("request %d = %+v", i, req)
		}
		if wantToken := map[bool]string{true: "", false: "page-after-" + strconv.Itoa(2*i)}[i == 0]; req.NextToken != wantToken {
			t.Errorf("request %d NextToken = %q, want %q", i, req.NextToken, wantToken)
		}
		if i > 0 {
			if gap := timed.times[i].Sub(timed.times[i-1]); gap < 50*time.Millisecond {
				t.Errorf("calls %d and %d only %s apart at 20 calls/s", i-1, i, gap)
			}
		}
	}
}

func TestPacerDefaultStaysUnderTwoCallsPerSecond(t *testing.T) {
	rate := DefaultLookupCallsPerSecond
	p := newPacer(time.Duration(float64(time.Second) / rate))
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < 3; i++ {
		if err := p.wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("3 calls took %s; at under 2 calls/s they take at least 1s", d)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.wait(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("wait on a cancelled context = %v", err)
	}
}

func readKey(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReconcileSourcesAgree reconciles the same calls, metered as Parquet in the
// store, once from trail files and once through LookupEvents (the SDK pointed at the local server by environment
// variable, as the CLI does it) and expects the same report.
func TestReconcileSourcesAgree(t *testing.T) {
	trailRoot := t.TempDir()
	writeTrail(t, trailRoot, ctScenario())
	_, client := startLookupServer(t, 3)
	ctx := context.Background()
	now := ctTime("2026-11-27T08:00:00Z")

	files := openTrailStore(t, t.TempDir())
	putUsage(t, files, ctUsage())
	repFiles, err := Run(ctx, Config{
		Day: "2026-11-25", Store: files, CloudTrail: "file://" + trailRoot,
		Now: func() time.Time { return now },
	})
	var unmetered *UnmeteredError
	if !errors.As(err, &unmetered) || unmetered.Unmetered != 1 || unmetered.Threshold != 0 {
		t.Fatalf("err = %v, want an UnmeteredError for 1 call over threshold 0", err)
	}

	lookup := openTrailStore(t, t.TempDir())
	putUsage(t, lookup, ctUsage())
	repLookup, err := Run(ctx, Config{
		Day: "2026-11-25", Store: lookup, CloudTrail: "lookup", Lookup: client, LookupCallsPerSecond: 100,
		Now: func() time.Time { return now }, Threshold: 1,
	})
	if err != nil {
		t.Fatalf("threshold 1: %v", err)
	}

	want := map[string]string{
		"r-0001": "matched", "r-0002": "matched", "r-0003": "matched", "r-0004": "matched",
		"r-0005": "unmetered", "r-0006": "unconfirmed", "r-0007": "matched",
	}
	for name, rep := range map[string]aggregator.Report{"files": repFiles, "lookup": repLookup} {
		got := map[string]string{}
		for _, r := range rep.Rows {
			got[r.RequestID] = r.Status
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: statuses = %v, want %v", name, got, want)
		}
	}
	csvKey, summaryKey := schemas.ReconciliationKeys("2026-11-25")
	if csvKey != "reconciliation/dt=2026-11-25/reconciliation-2026-11-25.csv" || summaryKey != "reconciliation/dt=2026-11-25/summary.json" {
		t.Fatalf("keys %s %s", csvKey, summaryKey)
	}
	a, b := readKey(t, files, csvKey), readKey(t, lookup, csvKey)
	if !bytes.Equal(a, b) {
		t.Errorf("reports differ:\nfiles:\n%s\nlookup:\n%s", a, b)
	}
	if !bytes.Contains(a, []byte("r-0005,unmetered,,"+ctHaiku)) || !bytes.Contains(a, []byte(ctAlice)) {
		t.Errorf("unmetered row lacks the call or its caller:\n%s", a)
	}
	var sum struct{ Matched, Unmetered, Unconfirmed, Mismatched int }
	if err := json.Unmarshal(readKey(t, files, summaryKey), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Matched != 5 || sum.Unmetered != 1 || sum.Unconfirmed != 1 || sum.Mismatched != 0 {
		t.Errorf("summary.json = %+v", sum)
	}
	if repFiles.Skipped[TrailSkipNotBedrock] != 2 || repFiles.Skipped[aggregator.SkipUsageDenied] != 1 || repFiles.Skipped[aggregator.SkipUsageDuplicate] != 1 {
		t.Errorf("skipped = %v", repFiles.Skipped)
	}

	// The default client: the SDK finds the local server through the environment.
	t.Setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", *client.Options().BaseEndpoint)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	env := openTrailStore(t, t.TempDir())
	putUsage(t, env, ctUsage())
	if _, err := Run(ctx, Config{
		Day: "2026-11-25", Store: env, CloudTrail: "lookup", LookupCallsPerSecond: 100,
		Now: func() time.Time { return now }, Threshold: -1,
	}); err != nil {
		t.Fatal(err)
	}
	if c := readKey(t, env, csvKey); !bytes.Equal(c, a) {
		t.Errorf("report through the environment's client differs:\n%s", c)
	}
}

func TestRunReconcileBadInput(t *testing.T) {
	ctx := context.Background()
	s := openTrailStore(t, t.TempDir())
	missing := filepath.Join(t.TempDir(), "no-such-trail")
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Day: "2026-13-01", Store: s, CloudTrail: "lookup"}, `day "2026-13-01": want YYYY-MM-DD`},
		{Config{Day: "2026-11-25", Store: s, CloudTrail: "ftp://x"}, `want lookup, s3://BUCKET/PREFIX or file://DIR`},
		{Config{Day: "2026-11-25", Store: s, CloudTrail: "file://" + missing}, "is not a directory"},
		{Config{Day: "2026-11-25", Store: s, CloudTrail: "file://" + t.TempDir()}, "no trail files for 2026-11-24 to 2026-11-26"},
		{Config{Day: "2026-11-25", CloudTrail: "lookup"}, "no store"},
		{Config{Day: "2026-08-01", Store: s, CloudTrail: "lookup", Now: func() time.Time { return ctTime("2026-11-25T00:00:00Z") }}, "only the last 90 days"},
	} {
		_, err := Run(ctx, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want one saying %q", tc.cfg, err, tc.want)
		}
	}
	if objs, _ := s.List(ctx, ""); len(objs) != 0 {
		t.Errorf("bad input wrote %v", objs)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing trail directory was created: %v", err)
	}
	_, err := (&TrailFiles{Store: openTrailStore(t, t.TempDir())}).ReadTrail(ctx, ctFrom, ctTo)
	if !errors.Is(err, ErrNoTrailFiles) {
		t.Errorf("empty trail: err = %v, want ErrNoTrailFiles", err)
	}
}
