package invoker

// The direct InvokeModel path against the SDK's, over loopback against the
// local Bedrock server: the same request on the wire (path, headers, body,
// a SigV4 signature that verifies), the same output for the same answer, and
// the same error, type for type, for every way a call can fail.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
	"github.com/aws/smithy-go/middleware"

	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/testenv"
)

const (
	testAccessKey = "AKIAIOSFODNN7EXAMPLE"
	testSecretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

// seenRequest is one request as the model server received it.
type seenRequest struct {
	method, path, host string
	header             http.Header
	body               []byte
}

type recordingModel struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

func (m *recordingModel) take() []seenRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.seen
	m.seen = nil
	return s
}

func startRecordingModel(t *testing.T, cfg bedrocklocal.Config) *recordingModel {
	t.Helper()
	bl, err := bedrocklocal.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &recordingModel{}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m.mu.Lock()
		m.seen = append(m.seen, seenRequest{r.Method, r.URL.EscapedPath(), r.Host, r.Header.Clone(), body})
		m.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		bl.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { m.Close(); bl.Close() })
	return m
}

func testClient(endpoint string, optFns ...func(*bedrockruntime.Options)) *bedrockruntime.Client {
	return bedrockruntime.New(bedrockruntime.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(endpoint),
		Credentials:      credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, "session-token"),
		RetryMaxAttempts: 1,
	}, optFns...)
}

func TestDirectInvokeIsUsedOnlyWhereTheSDKWouldAddNothing(t *testing.T) {
	ctx := context.Background()
	if d, why := newDirectInvoker(ctx, testClient("http://127.0.0.1:1")); d == nil {
		t.Fatalf("a plain client takes the SDK path: %s", why)
	}
	for name, fn := range map[string]func(*bedrockruntime.Options){
		"retries":   func(o *bedrockruntime.Options) { o.RetryMaxAttempts = 3 },
		"anonymous": func(o *bedrockruntime.Options) { o.Credentials = aws.AnonymousCredentials{} },
		"middleware": func(o *bedrockruntime.Options) {
			o.APIOptions = append(o.APIOptions, func(*middleware.Stack) error { return nil })
		},
		"bearer":     func(o *bedrockruntime.Options) { o.AuthSchemePreference = []string{"httpBearerAuth"} },
		"logging":    func(o *bedrockruntime.Options) { o.ClientLogMode = aws.LogRequest },
		"resolver":   func(o *bedrockruntime.Options) { o.EndpointResolverV2 = fixedResolver{} },
		"no region":  func(o *bedrockruntime.Options) { o.Region = "" },
		"bad region": func(o *bedrockruntime.Options) { o.Region = "us east" },
	} {
		if d, _ := newDirectInvoker(ctx, testClient("http://127.0.0.1:1", fn)); d != nil {
			t.Errorf("%s: the direct path was taken", name)
		}
	}
	// Without a base endpoint the SDK's rules pick Bedrock's regional one.
	c := bedrockruntime.New(bedrockruntime.Options{Region: "eu-central-1", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, "")})
	d, why := newDirectInvoker(ctx, c)
	if d == nil {
		t.Fatal(why)
	}
	if got := d.base.String(); got != "https://bedrock-runtime.eu-central-1.amazonaws.com" || d.service != "bedrock" || d.region != "eu-central-1" {
		t.Fatalf("endpoint %s, signing %s/%s", got, d.service, d.region)
	}
	c = bedrockruntime.New(bedrockruntime.Options{Region: "us-east-1", RetryMaxAttempts: 1,
		Credentials:     credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, ""),
		EndpointOptions: bedrockruntime.EndpointResolverOptions{UseFIPSEndpoint: aws.FIPSEndpointStateEnabled}})
	if d, why = newDirectInvoker(ctx, c); d == nil || d.base.Host != "bedrock-runtime-fips.us-east-1.amazonaws.com" {
		t.Fatalf("FIPS endpoint: %v %s", d, why)
	}
}

type fixedResolver struct{}

func (fixedResolver) ResolveEndpoint(ctx context.Context, p bedrockruntime.EndpointParameters) (e smithyendpoints.Endpoint, err error) {
	return bedrockruntime.NewDefaultEndpointResolverV2().ResolveEndpoint(ctx, p)
}

// unsigned are the headers that differ between two correct requests: the
// signature and its time, and what names the client.
var unsigned = map[string]bool{"Authorization": true, "X-Amz-Date": true, "User-Agent": true,
	"Amz-Sdk-Invocation-Id": true, "Amz-Sdk-Request": true}

func TestDirectInvokeSendsTheSDKsRequest(t *testing.T) {
	m := startRecordingModel(t, bedrocklocal.Config{})
	sdk := testClient(m.URL)
	d, why := newDirectInvoker(context.Background(), sdk)
	if d == nil {
		t.Fatal(why)
	}
	claude := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":20,"messages":[{"role":"user","content":"Say hi"}]}`
	inputs := []*bedrockruntime.InvokeModelInput{
		{ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"), Body: []byte(claude), ContentType: aws.String("application/json"), Accept: aws.String("application/json"),
			RequestMetadata: aws.String(`{"team_id":"a","meter_event_id":"0123456789abcdef"}`)},
		{ModelId: aws.String("amazon.titan-embed-text-v2:0"), Body: []byte(`{"inputText":"hello"}`), ContentType: aws.String("application/json")},
		{ModelId: aws.String("us.anthropic.claude-3-haiku-20240307-v1:0"), Body: []byte(claude), Trace: types.TraceEnabled,
			GuardrailIdentifier: aws.String("gr-1"), GuardrailVersion: aws.String("1"), PerformanceConfigLatency: types.PerformanceConfigLatencyStandard,
			ServiceTier: types.ServiceTierType("flex")},
		{ModelId: aws.String("arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"), Body: []byte(claude)},
	}
	for _, in := range inputs {
		want, werr := sdk.InvokeModel(context.Background(), in)
		sdkSeen := m.take()
		got, hdr, id, gerr := d.InvokeModel(context.Background(), in)
		directSeen := m.take()
		if len(sdkSeen) != 1 || len(directSeen) != 1 {
			t.Fatalf("%s: %d and %d requests", *in.ModelId, len(sdkSeen), len(directSeen))
		}
		a, b := sdkSeen[0], directSeen[0]
		if a.method != b.method || a.path != b.path || a.host != b.host || !bytes.Equal(a.body, b.body) {
			t.Errorf("%s: SDK sent %s %s %s, direct %s %s %s", *in.ModelId, a.method, a.host, a.path, b.method, b.host, b.path)
		}
		if sa, sb := headerSet(a.header), headerSet(b.header); sa != sb {
			t.Errorf("%s: headers differ\nSDK:    %s\ndirect: %s", *in.ModelId, sa, sb)
		}
		for who, r := range map[string]seenRequest{"SDK": a, "direct": b} {
			if err := verifySignature(r, m.Listener.Addr().String()); err != nil {
				t.Errorf("%s: %s request: %v", *in.ModelId, who, err)
			}
		}
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%s: SDK error %v, direct error %v", *in.ModelId, werr, gerr)
		}
		if werr != nil {
			continue
		}
		if !bytes.Equal(stripIDs(want.Body), stripIDs(got.Body)) || aws.ToString(want.ContentType) != aws.ToString(got.ContentType) ||
			want.PerformanceConfigLatency != got.PerformanceConfigLatency || want.ServiceTier != got.ServiceTier {
			t.Errorf("%s: outputs differ:\nSDK:    %s %q\ndirect: %s %q", *in.ModelId, want.Body, aws.ToString(want.ContentType), got.Body, aws.ToString(got.ContentType))
		}
		if id == "" || id != hdr.Get("X-Amzn-RequestId") || hdr.Get("X-Amzn-Bedrock-Input-Token-Count") == "" {
			t.Errorf("%s: request id %q, headers %v", *in.ModelId, id, hdr)
		}
	}
}

// headerSet is a request's headers that both paths must send alike.
func headerSet(h http.Header) string {
	var s []string
	for k, v := range h {
		if !unsigned[k] {
			s = append(s, k+"="+strings.Join(v, ","))
		}
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func verifySignature(r seenRequest, host string) error {
	return testenv.VerifySigV4(r.method, host, r.path, r.header, r.body,
		aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey, SessionToken: "session-token"}, "bedrock", "us-east-1")
}

// stripIDs blanks the ids the local server mints per call.
func stripIDs(b []byte) []byte {
	s := string(b)
	if i := strings.Index(s, `"id":"`); i >= 0 {
		if j := strings.IndexByte(s[i+6:], '"'); j >= 0 {
			s = s[:i+6] + s[i+6+j:]
		}
	}
	return []byte(s)
}

func TestDirectInvokeFailsExactlyAsTheSDKDoes(t *testing.T) {
	m := startRecordingModel(t, bedrocklocal.Config{})
	slow := startRecordingModel(t, bedrocklocal.Config{Latency: 2 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	// A server that answers garbage in place of an error document.
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Amzn-RequestId", "garbage-1")
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html>bad gateway</html>"))
	}))
	defer garbage.Close()

	claude := func(prompt string) []byte {
		return []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":20,"messages":[{"role":"user","content":"` + prompt + `"}]}`)
	}
	type tc struct {
		name     string
		endpoint string
		in       *bedrockruntime.InvokeModelInput
		timeout  time.Duration
	}
	haiku := "anthropic.claude-3-haiku-20240307-v1:0"
	var cases []tc
	for _, kind := range []string{"ThrottlingException", "ValidationException", "AccessDeniedException", "ResourceNotFoundException",
		"ModelTimeoutException", "ModelErrorException", "ModelNotReadyException", "ServiceQuotaExceededException",
		"InternalServerException", "ServiceUnavailableException"} {
		cases = append(cases, tc{kind, m.URL, &bedrockruntime.InvokeModelInput{ModelId: aws.String(haiku),
			Body: claude("hi " + bedrocklocal.PromptInjectMarker + kind + "]]"), ContentType: aws.String("application/json")}, 0})
	}
	cases = append(cases,
		tc{"unknown model", m.URL, &bedrockruntime.InvokeModelInput{ModelId: aws.String("acme.nothing-v1:0"), Body: claude("hi")}, 0},
		tc{"malformed body", m.URL, &bedrockruntime.InvokeModelInput{ModelId: aws.String(haiku), Body: []byte("{")}, 0},
		tc{"no model id", m.URL, &bedrockruntime.InvokeModelInput{Body: claude("hi")}, 0},
		tc{"connection refused", closed, &bedrockruntime.InvokeModelInput{ModelId: aws.String(haiku), Body: claude("hi")}, 0},
		tc{"deadline", slow.URL, &bedrockruntime.InvokeModelInput{ModelId: aws.String(haiku), Body: claude("hi")}, 100 * time.Millisecond},
		tc{"not an error document", garbage.URL, &bedrockruntime.InvokeModelInput{ModelId: aws.String(haiku), Body: claude("hi")}, 0},
	)
	for _, c := range cases {
		sdk := testClient(c.endpoint)
		d, why := newDirectInvoker(context.Background(), sdk)
		if d == nil {
			t.Fatal(why)
		}
		call := func(fn func(ctx context.Context) error) error {
			ctx := context.Background()
			if c.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, c.timeout)
				defer cancel()
			}
			return fn(ctx)
		}
		werr := call(func(ctx context.Context) error { _, err := sdk.InvokeModel(ctx, c.in); return err })
		var gid string
		gerr := call(func(ctx context.Context) error { _, _, id, err := d.InvokeModel(ctx, c.in); gid = id; return err })
		if werr == nil || gerr == nil {
			t.Fatalf("%s: SDK error %v, direct error %v", c.name, werr, gerr)
		}
		if a, b := testenv.DescribeAWSError(werr), testenv.DescribeAWSError(gerr); a != b {
			t.Errorf("%s: errors differ\nSDK:    %s\ndirect: %s", c.name, a, b)
		}
		if gid != "" {
			t.Errorf("%s: a failed call returned request id %q beside its error", c.name, gid)
		}
	}
}

// Credentials that fail once (an expired session being refreshed, say): the
// direct path fails the call as the SDK does and sends nothing, even though
// the provider would answer on a second try. A call made then would be one
// Bedrock bills and meter never sees.
func TestDirectInvokeSendsNothingWhenCredentialsFail(t *testing.T) {
	m := startRecordingModel(t, bedrocklocal.Config{})
	var calls atomic.Int32
	flaky := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		if calls.Add(1) == 1 {
			return aws.Credentials{}, errors.New("the session is being refreshed")
		}
		return aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey, Source: "test"}, nil
	})
	d, why := newDirectInvoker(context.Background(), testClient(m.URL, func(o *bedrockruntime.Options) { o.Credentials = flaky }))
	if d == nil {
		t.Fatal(why)
	}
	in := &bedrockruntime.InvokeModelInput{ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"),
		Body: []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`)}
	_, _, _, gerr := d.InvokeModel(context.Background(), in)
	if seen := m.take(); len(seen) != 0 {
		t.Fatalf("%d requests reached the model after the credentials failed", len(seen))
	}
	failing := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, errors.New("the session is being refreshed")
	})
	_, werr := testClient(m.URL, func(o *bedrockruntime.Options) { o.Credentials = failing }).InvokeModel(context.Background(), in)
	if werr == nil || gerr == nil {
		t.Fatalf("SDK error %v, direct error %v", werr, gerr)
	}
	if a, b := testenv.DescribeAWSError(werr), testenv.DescribeAWSError(gerr); a != b {
		t.Errorf("errors differ\nSDK:    %s\ndirect: %s", a, b)
	}
}
