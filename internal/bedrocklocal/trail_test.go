package bedrocklocal

// Integration tests: the server on 127.0.0.1 (httptest) called with the real
// bedrockruntime client; its CloudTrail side read back as gzip trail files
// from disk and through the real cloudtrail client's LookupEvents.

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	cttypes "github.com/aws/aws-sdk-go-v2/service/cloudtrail/types"
	"github.com/aws/smithy-go/middleware"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// record is the part of a CloudTrail record the tests read.
type record struct {
	EventVersion string `json:"eventVersion"`
	UserIdentity struct {
		Type        string `json:"type"`
		PrincipalID string `json:"principalId"`
		ARN         string `json:"arn"`
		AccountID   string `json:"accountId"`
		AccessKeyID string `json:"accessKeyId"`
	} `json:"userIdentity"`
	EventTime         string            `json:"eventTime"`
	EventSource       string            `json:"eventSource"`
	EventName         string            `json:"eventName"`
	AWSRegion         string            `json:"awsRegion"`
	SourceIPAddress   string            `json:"sourceIPAddress"`
	UserAgent         string            `json:"userAgent"`
	ErrorCode         string            `json:"errorCode"`
	RequestParameters map[string]string `json:"requestParameters"`
	ResponseElements  json.RawMessage   `json:"responseElements"`
	RequestID         string            `json:"requestID"`
	EventID           string            `json:"eventID"`
	ReadOnly          bool              `json:"readOnly"`
	EventType         string            `json:"eventType"`
	ManagementEvent   bool              `json:"managementEvent"`
	RecipientAccount  string            `json:"recipientAccountId"`
	EventCategory     string            `json:"eventCategory"`
	Additional        map[string]string `json:"additionalEventData"`
}

// traffic makes one call of each operation plus a throttled and an unknown
// model call, and returns the request ids the server answered, by operation.
func traffic(t *testing.T, url string) map[string]string {
	t.Helper()
	c := runtimeClient(url)
	ids := map[string]string{}
	ids["InvokeModel"] = invoke(t, c, "us.anthropic.claude-3-haiku-20240307-v1:0", familyCases[1].body).requestID

	out, err := c.InvokeModelWithResponseStream(context.Background(), &bedrockruntime.InvokeModelWithResponseStreamInput{
		ModelId: aws.String("amazon.titan-text-express-v1"), Body: []byte(titanBody),
	})
	if err != nil {
		t.Fatal(err)
	}
	for range out.GetStream().Events() {
	}
	ids["InvokeModelWithResponseStream"] = requestID(out.ResultMetadata)

	conv, err := c.Converse(context.Background(), converseInput("meta.llama3-8b-instruct-v1:0"))
	if err != nil {
		t.Fatal(err)
	}
	ids["Converse"] = requestID(conv.ResultMetadata)

	cs, err := c.ConverseStream(context.Background(), &bedrockruntime.ConverseStreamInput{
		ModelId: aws.String("eu.amazon.nova-pro-v1:0"), Messages: converseInput("").Messages,
	})
	if err != nil {
		t.Fatal(err)
	}
	for range cs.GetStream().Events() {
	}
	ids["ConverseStream"] = requestID(cs.ResultMetadata)

	err = invokeErr(runtimeClient(url, withHeader(HeaderInjectError, "ThrottlingException")), "amazon.titan-text-express-v1", titanBody)
	ids["throttled"] = errRequestID(t, err)
	err = invokeErr(c, "acme.unknown-v1", titanBody)
	ids["unknown model"] = errRequestID(t, err)

	// Answered, but CloudTrail "loses" it.
	invoke(t, runtimeClient(url, withHeader(HeaderOmitTrail, "true")), "amazon.titan-text-express-v1", titanBody)
	return ids
}

func errRequestID(t *testing.T, err error) string {
	t.Helper()
	var re interface{ ServiceRequestID() string }
	if !errors.As(err, &re) {
		t.Fatalf("error %v carries no request id", err)
	}
	return re.ServiceRequestID()
}

func readTrailFiles(t *testing.T, dir string) (map[string][]record, []string) {
	t.Helper()
	files := map[string][]record{}
	var others []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if !strings.HasSuffix(path, ".json.gz") {
			others = append(others, rel)
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		var doc struct{ Records []record }
		if err := json.NewDecoder(zr).Decode(&doc); err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = doc.Records
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, others
}

func TestTrailFiles(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2025, 3, 31, 23, 59, 30, 0, time.UTC)}
	s, url := start(t, Config{TrailDir: dir, TrailBatch: 4, AccountID: "111122223333", Region: "us-east-1", Now: clk.now})
	ids := traffic(t, url) // 6 recorded calls: one file of 4 now, 2 left
	files, _ := readTrailFiles(t, dir)
	eq(t, "files after 6 records with batch 4", len(files), 1)

	// The rest are delivered after midnight: into the next day's folder.
	clk.set(time.Date(2025, 4, 1, 0, 5, 0, 0, time.UTC))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files, others := readTrailFiles(t, dir)
	if len(others) > 0 {
		t.Errorf("files left beside the trail files: %v", others)
	}
	eq(t, "files", len(files), 2)

	byRequest := map[string]record{}
	var folders []string
	for path, recs := range files {
		folder, name := filepath.Split(path)
		folders = append(folders, folder)
		prefix := "111122223333_CloudTrail_us-east-1_"
		if !strings.HasPrefix(name, prefix) || len(strings.TrimSuffix(strings.TrimPrefix(name, prefix), ".json.gz")) != len("20250401T0005Z_")+16 {
			t.Errorf("file name %s", name)
		}
		for _, r := range recs {
			byRequest[r.RequestID] = r
		}
	}
	slices.Sort(folders)
	eq(t, "folders", strings.Join(folders, " "),
		"AWSLogs/111122223333/CloudTrail/us-east-1/2025/03/31/ AWSLogs/111122223333/CloudTrail/us-east-1/2025/04/01/")
	eq(t, "records", len(byRequest), 6)

	for op, id := range ids {
		r, ok := byRequest[id]
		if !ok {
			t.Errorf("%s: no record with requestID %s", op, id)
			continue
		}
		eq(t, op+" eventSource", r.EventSource, "bedrock.amazonaws.com")
		eq(t, op+" eventTime", r.EventTime, "2025-03-31T23:59:30Z")
		eq(t, op+" eventType", r.EventType, "AwsApiCall")
		eq(t, op+" eventCategory", r.EventCategory, "Management")
		eq(t, op+" eventVersion", r.EventVersion, "1.09")
		eq(t, op+" accessKeyId", r.UserIdentity.AccessKeyID, testAccessKey)
		eq(t, op+" identity type", r.UserIdentity.Type, "IAMUser")
		eq(t, op+" identity arn", r.UserIdentity.ARN, "arn:aws:iam::111122223333:user/bedrock-local")
		eq(t, op+" recipientAccountId", r.RecipientAccount, "111122223333")
		eq(t, op+" sourceIPAddress", r.SourceIPAddress, "127.0.0.1")
		eq(t, op+" responseElements", string(r.ResponseElements), "null")
		if !strings.HasPrefix(r.UserAgent, "aws-sdk-go-v2") {
			t.Errorf("%s userAgent %q", op, r.UserAgent)
		}
		if len(r.EventID) != 36 || r.EventID == r.RequestID {
			t.Errorf("%s eventID %q", op, r.EventID)
		}
		if strings.HasPrefix(op, "InvokeModel") || strings.HasPrefix(op, "Converse") {
			eq(t, op+" eventName", r.EventName, op)
			eq(t, op+" errorCode", r.ErrorCode, "")
		}
	}
	eq(t, "throttled errorCode", byRequest[ids["throttled"]].ErrorCode, "ThrottlingException")
	eq(t, "unknown model errorCode", byRequest[ids["unknown model"]].ErrorCode, "ResourceNotFoundException")
	eq(t, "modelId as invoked", byRequest[ids["InvokeModel"]].RequestParameters["modelId"], "us.anthropic.claude-3-haiku-20240307-v1:0")
	if reg := byRequest[ids["ConverseStream"]].Additional["inferenceRegion"]; !slices.Contains(geoRegions["eu"], reg) {
		t.Errorf("eu. profile ran in %q", reg)
	}
	eq(t, "inferenceRegion of a base model", byRequest[ids["Converse"]].Additional["inferenceRegion"], "us-east-1")
}

func TestTrailInterval(t *testing.T) {
	dir := t.TempDir()
	_, url := start(t, Config{TrailDir: dir, TrailInterval: 20 * time.Millisecond})
	id := invoke(t, runtimeClient(url), "amazon.titan-text-express-v1", titanBody).requestID
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := readTrailFiles(t, dir)
		for _, recs := range files {
			if len(recs) == 1 && recs[0].RequestID == id {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no trail file delivered by the interval")
}

func cloudtrailClient(url string) *cloudtrail.Client {
	return cloudtrail.NewFromConfig(awsConfig(), func(o *cloudtrail.Options) { o.BaseEndpoint = aws.String(url) })
}

func TestLookupEventsPaginates(t *testing.T) {
	_, url := start(t, Config{})
	ids := traffic(t, url)
	ct := cloudtrailClient(url) // the same listener, routed by X-Amz-Target

	in := &cloudtrail.LookupEventsInput{
		LookupAttributes: []cttypes.LookupAttribute{{AttributeKey: cttypes.LookupAttributeKeyEventSource, AttributeValue: aws.String("bedrock.amazonaws.com")}},
		StartTime:        aws.Time(time.Now().Add(-time.Hour)),
		EndTime:          aws.Time(time.Now().Add(time.Hour)),
		MaxResults:       aws.Int32(4),
	}
	var pages []int
	var got []string
	var lastTime time.Time
	p := cloudtrail.NewLookupEventsPaginator(ct, in)
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(page.Events))
		for _, ev := range page.Events {
			var r record
			if err := json.Unmarshal([]byte(aws.ToString(ev.CloudTrailEvent)), &r); err != nil {
				t.Fatal(err)
			}
			got = append(got, r.RequestID)
			eq(t, "EventId", aws.ToString(ev.EventId), r.EventID)
			eq(t, "EventName", aws.ToString(ev.EventName), r.EventName)
			eq(t, "EventSource", aws.ToString(ev.EventSource), "bedrock.amazonaws.com")
			eq(t, "Username", aws.ToString(ev.Username), "bedrock-local")
			eq(t, "AccessKeyId", aws.ToString(ev.AccessKeyId), testAccessKey)
			if len(ev.Resources) != 1 || !strings.HasPrefix(aws.ToString(ev.Resources[0].ResourceName), "arn:aws:bedrock:") {
				t.Errorf("Resources %+v", ev.Resources)
			}
			if !lastTime.IsZero() && ev.EventTime.After(lastTime) {
				t.Error("events not newest first")
			}
			lastTime = *ev.EventTime
			if time.Since(*ev.EventTime) > time.Minute {
				t.Errorf("EventTime %v", ev.EventTime)
			}
		}
	}
	eq(t, "page sizes", fmt.Sprint(pages), "[4 2]")
	var want []string
	for _, id := range ids {
		want = append(want, id)
	}
	slices.Sort(want)
	slices.Sort(got)
	eq(t, "request ids", strings.Join(got, " "), strings.Join(want, " "))

	// The newest event comes first.
	first, err := ct.LookupEvents(context.Background(), &cloudtrail.LookupEventsInput{MaxResults: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	var r record
	json.Unmarshal([]byte(aws.ToString(first.Events[0].CloudTrailEvent)), &r)
	eq(t, "newest event", r.RequestID, ids["unknown model"])

	count := func(in *cloudtrail.LookupEventsInput) int {
		t.Helper()
		n := 0
		for p := cloudtrail.NewLookupEventsPaginator(ct, in); p.HasMorePages(); {
			page, err := p.NextPage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			n += len(page.Events)
		}
		return n
	}
	attr := func(k cttypes.LookupAttributeKey, v string) []cttypes.LookupAttribute {
		return []cttypes.LookupAttribute{{AttributeKey: k, AttributeValue: aws.String(v)}}
	}
	eq(t, "other event source", count(&cloudtrail.LookupEventsInput{LookupAttributes: attr(cttypes.LookupAttributeKeyEventSource, "s3.amazonaws.com")}), 0)
	eq(t, "EventName InvokeModel", count(&cloudtrail.LookupEventsInput{LookupAttributes: attr(cttypes.LookupAttributeKeyEventName, "InvokeModel")}), 3)
	eq(t, "events before the calls", count(&cloudtrail.LookupEventsInput{EndTime: aws.Time(time.Now().Add(-time.Hour))}), 0)
	eq(t, "events after the calls", count(&cloudtrail.LookupEventsInput{StartTime: aws.Time(time.Now().Add(time.Hour)), EndTime: aws.Time(time.Now().Add(2 * time.Hour))}), 0)
	var tr *cttypes.InvalidTimeRangeException
	if _, err := ct.LookupEvents(context.Background(), &cloudtrail.LookupEventsInput{StartTime: aws.Time(time.Now().Add(time.Hour))}); !errors.As(err, &tr) {
		t.Errorf("StartTime after EndTime: %v, want InvalidTimeRangeException", err)
	}

	var mr *cttypes.InvalidMaxResultsException
	if _, err := ct.LookupEvents(context.Background(), &cloudtrail.LookupEventsInput{MaxResults: aws.Int32(51)}); !errors.As(err, &mr) {
		t.Errorf("MaxResults 51: %v, want InvalidMaxResultsException", err)
	}
	var nt *cttypes.InvalidNextTokenException
	if _, err := ct.LookupEvents(context.Background(), &cloudtrail.LookupEventsInput{NextToken: aws.String("garbage!")}); !errors.As(err, &nt) {
		t.Errorf("bad NextToken: %v, want InvalidNextTokenException", err)
	}
	var la *cttypes.InvalidLookupAttributesException
	two := append(attr(cttypes.LookupAttributeKeyEventName, "Converse"), attr(cttypes.LookupAttributeKeyUsername, "x")...)
	if _, err := ct.LookupEvents(context.Background(), &cloudtrail.LookupEventsInput{LookupAttributes: two}); !errors.As(err, &la) {
		t.Errorf("two attributes: %v, want InvalidLookupAttributesException", err)
	}
}

func TestLookupEventsRateLimit(t *testing.T) {
	_, url := start(t, Config{LookupRate: 0.5})
	ct := cloudtrailClient(url)
	if _, err := ct.LookupEvents(context.Background(), &cloudtrail.LookupEventsInput{}); err != nil {
		t.Fatal(err)
	}
	_, err := ct.LookupEvents(context.Background(), &cloudtrail.LookupEventsInput{})
	if err == nil || !strings.Contains(err.Error(), "ThrottlingException") {
		t.Errorf("second call within 2 s: %v, want ThrottlingException", err)
	}
}

func TestCloudTrailHandlerAlone(t *testing.T) {
	s, url := start(t, Config{})
	invoke(t, runtimeClient(url), "amazon.titan-text-express-v1", titanBody)
	rec := httptestPost(t, s.CloudTrailHandler(), "CloudTrail_20131101.LookupEvents", `{}`)
	if !strings.Contains(rec, `"EventName":"InvokeModel"`) {
		t.Errorf("LookupEvents via CloudTrailHandler: %s", rec)
	}
	rec = httptestPost(t, s.CloudTrailHandler(), "CloudTrail_20131101.DescribeTrails", `{}`)
	if !strings.Contains(rec, "UnknownOperationException") {
		t.Errorf("other CloudTrail operation: %s", rec)
	}
}

// httptestPost calls a handler directly with an X-Amz-Target and returns the body.
func httptestPost(t *testing.T, h http.Handler, target, body string) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	req.Header.Set("X-Amz-Target", target)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Body.String()
}

func requestID(md middleware.Metadata) string {
	id, _ := awsmiddleware.GetRequestIDMetadata(md)
	return id
}
