package stream

// The direct PutRecords path against the SDK's, through a recorder in front
// of kinesalite: the same request on the wire (headers, JSON body, a SigV4
// signature that verifies), the same results, and the same error for every
// way a call can fail.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/meter-dev/meter/internal/testenv"
)

type seenKinesis struct {
	path   string
	header http.Header
	body   []byte
}

// kinesisRecorder forwards to target and keeps what it forwarded.
func kinesisRecorder(t *testing.T, target string) (*httptest.Server, func() []seenKinesis) {
	t.Helper()
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	var seen []seenKinesis
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, seenKinesis{r.URL.EscapedPath(), r.Header.Clone(), body})
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []seenKinesis {
		mu.Lock()
		defer mu.Unlock()
		s := seen
		seen = nil
		return s
	}
}

func kinesisClient(endpoint string, fns ...func(*kinesis.Options)) *kinesis.Client {
	return kinesis.New(kinesis.Options{Region: testenv.LocalRegion, BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(testenv.LocalAccessKey, testenv.LocalSecretKey, "")}, fns...)
}

func TestDirectPutIsUsedOnlyWhereTheSDKWouldAddNothing(t *testing.T) {
	if d, why := newDirectPut(kinesisClient("http://127.0.0.1:1"), noSDKRetries); d == nil {
		t.Fatalf("a plain client with the producer's options takes the SDK path: %s", why)
	}
	if d, _ := newDirectPut(kinesisClient("http://127.0.0.1:1")); d != nil {
		t.Error("a client that retries took the direct path")
	}
	for name, fn := range map[string]func(*kinesis.Options){
		"middleware": func(o *kinesis.Options) {
			o.APIOptions = append(o.APIOptions, func(*middleware.Stack) error { return nil })
		},
		"anonymous": func(o *kinesis.Options) { o.Credentials = aws.AnonymousCredentials{} },
		"logging":   func(o *kinesis.Options) { o.ClientLogMode = aws.LogRequest },
		"account":   func(o *kinesis.Options) { o.AccountIDEndpointMode = aws.AccountIDEndpointModeRequired },
	} {
		if d, _ := newDirectPut(kinesisClient("http://127.0.0.1:1", fn), noSDKRetries); d != nil {
			t.Errorf("%s: the direct path was taken", name)
		}
	}
	// The producer a user builds from a plain client puts directly.
	if _, ok := NewKinesisProducer(kinesisClient("http://127.0.0.1:1"), "s", KinesisProducerOptions{}).client.(*directPut); !ok {
		t.Error("NewKinesisProducer kept the SDK path for a plain client")
	}
}

func TestDirectPutSendsTheSDKsRequest(t *testing.T) {
	k, _ := startKinesis(t, "direct", 2)
	rec, take := kinesisRecorder(t, k.Endpoint())
	sdk := kinesisClient(rec.URL)
	d, why := newDirectPut(sdk, noSDKRetries)
	if d == nil {
		t.Fatal(why)
	}
	ctx := kinesisCtx(t, 30*time.Second)
	in := &kinesis.PutRecordsInput{StreamName: aws.String("direct"), Records: []types.PutRecordsRequestEntry{
		{Data: []byte(`{"a":1}`), PartitionKey: aws.String("req-1")},
		{Data: []byte{}, PartitionKey: aws.String("req-2")},
		{Data: []byte("\x00\xff binary"), PartitionKey: aws.String("req-3"), ExplicitHashKey: aws.String("1")},
	}}
	want, err := sdk.PutRecords(ctx, in, noSDKRetries)
	if err != nil {
		t.Fatal(err)
	}
	a := take()
	got, err := d.PutRecords(ctx, in, noSDKRetries)
	if err != nil {
		t.Fatal(err)
	}
	b := take()
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("%d and %d requests", len(a), len(b))
	}
	if a[0].path != b[0].path || headerLine(a[0].header) != headerLine(b[0].header) {
		t.Errorf("requests differ:\nSDK:    %s %s\ndirect: %s %s", a[0].path, headerLine(a[0].header), b[0].path, headerLine(b[0].header))
	}
	var ja, jb any
	json.Unmarshal(a[0].body, &ja)
	json.Unmarshal(b[0].body, &jb)
	if !reflect.DeepEqual(ja, jb) {
		t.Errorf("bodies differ:\nSDK:    %s\ndirect: %s", a[0].body, b[0].body)
	}
	host := strings.TrimPrefix(rec.URL, "http://")
	for who, r := range map[string]seenKinesis{"SDK": a[0], "direct": b[0]} {
		if err := testenv.VerifySigV4(http.MethodPost, host, r.path, r.header, r.body,
			aws.Credentials{AccessKeyID: testenv.LocalAccessKey, SecretAccessKey: testenv.LocalSecretKey}, "kinesis", testenv.LocalRegion); err != nil {
			t.Errorf("%s request: %v", who, err)
		}
	}
	if aws.ToInt32(want.FailedRecordCount) != aws.ToInt32(got.FailedRecordCount) || want.EncryptionType != got.EncryptionType || len(want.Records) != len(got.Records) {
		t.Fatalf("outputs differ: %+v, %+v", want, got)
	}
	for i := range want.Records {
		w, g := want.Records[i], got.Records[i]
		if aws.ToString(w.ShardId) != aws.ToString(g.ShardId) || g.SequenceNumber == nil || CompareSeq(aws.ToString(g.SequenceNumber), aws.ToString(w.SequenceNumber)) <= 0 {
			t.Errorf("record %d: SDK %s %s, direct %s %s", i, aws.ToString(w.ShardId), aws.ToString(w.SequenceNumber), aws.ToString(g.ShardId), aws.ToString(g.SequenceNumber))
		}
	}
}

func headerLine(h http.Header) string {
	var s []string
	for k, v := range h {
		switch k {
		case "Authorization", "X-Amz-Date", "User-Agent", "Amz-Sdk-Invocation-Id", "Amz-Sdk-Request", "Content-Length", "Accept-Encoding", "X-Forwarded-For":
			continue
		}
		s = append(s, k+"="+strings.Join(v, ","))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func TestDirectPutFailsExactlyAsTheSDKDoes(t *testing.T) {
	k, _ := startKinesis(t, "direct", 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html>bad gateway</html>"))
	}))
	defer garbage.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Second)
	}))
	defer slow.Close()
	entry := func(key string) []types.PutRecordsRequestEntry {
		return []types.PutRecordsRequestEntry{{Data: []byte("x"), PartitionKey: aws.String(key)}}
	}
	cases := []struct {
		name, endpoint string
		in             *kinesis.PutRecordsInput
		timeout        time.Duration
	}{
		{"no such stream", k.Endpoint(), &kinesis.PutRecordsInput{StreamName: aws.String("missing"), Records: entry("a")}, 0},
		{"key too long", k.Endpoint(), &kinesis.PutRecordsInput{StreamName: aws.String("direct"), Records: entry(strings.Repeat("k", 300))}, 0},
		{"no records", k.Endpoint(), &kinesis.PutRecordsInput{StreamName: aws.String("direct")}, 0},
		{"connection refused", closed, &kinesis.PutRecordsInput{StreamName: aws.String("direct"), Records: entry("a")}, 0},
		{"not an error document", garbage.URL, &kinesis.PutRecordsInput{StreamName: aws.String("direct"), Records: entry("a")}, 0},
		{"deadline", slow.URL, &kinesis.PutRecordsInput{StreamName: aws.String("direct"), Records: entry("a")}, 100 * time.Millisecond},
	}
	for _, c := range cases {
		sdk := kinesisClient(c.endpoint)
		d, why := newDirectPut(sdk, noSDKRetries)
		if d == nil {
			t.Fatal(why)
		}
		call := func(api KinesisPutAPI) error {
			ctx := context.Background()
			if c.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, c.timeout)
				defer cancel()
			}
			_, err := api.PutRecords(ctx, c.in, noSDKRetries)
			return err
		}
		werr, gerr := call(sdk), call(d)
		if werr == nil || gerr == nil {
			t.Fatalf("%s: SDK error %v, direct error %v", c.name, werr, gerr)
		}
		if a, b := testenv.DescribeAWSError(werr), testenv.DescribeAWSError(gerr); a != b {
			t.Errorf("%s: errors differ\nSDK:    %s\ndirect: %s", c.name, a, b)
		}
	}
}
