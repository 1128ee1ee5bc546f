package invoker_test

// Apps that keep the AWS SDK: the official bedrockruntime client, configured
// only through AWS_ENDPOINT_URL_BEDROCK_RUNTIME (meter over HTTPS + /bedrock),
// AWS_BEARER_TOKEN_BEDROCK (a team key) and AWS_CA_BUNDLE (the test's
// certificate), against the invoker served with internal/tlsfiles on
// 127.0.0.1, in front of the local Bedrock server.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/internal/tlsfiles"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

// runtimeEnv is the invoker served over HTTPS, with its log kept.
type runtimeEnv struct {
	*env
	url      string // https://127.0.0.1:PORT
	certFile string
	keyFile  string
	log      *bytes.Buffer
}

func newRuntimeEnv(t *testing.T, teams []tenants.TeamSpec, model ...bedrocklocal.Config) *runtimeEnv {
	t.Helper()
	o := envOpts{teams: teams}
	if len(model) > 0 {
		o.model = model[0]
	}
	e := newEnv(t, o)
	re := &runtimeEnv{env: e, log: &bytes.Buffer{}}
	reg, err := tenants.OpenRegistry(e.tenants)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: e.bedrock, Usage: e.emitter, Prices: pricing.Default(), Limits: e.limits,
		ReloadInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: re.log}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	re.certFile, re.keyFile = testenv.SelfSignedCert(t, e.dir, "meter")
	tc, err := tlsfiles.Config(re.certFile, re.keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	re.url = "https://" + ln.Addr().String()
	return re
}

// lockedWriter lets the server's goroutines share one log buffer.
type lockedWriter struct {
	mu chan struct{}
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	if l.mu == nil {
		l.mu = make(chan struct{}, 1)
	}
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.w.Write(p)
}

// sdkFor is the official client configured the way an app moving onto meter
// is: environment variables only. Retries are off so that each test call is
// one request.
func (re *runtimeEnv) sdkFor(t *testing.T, endpoint, key, caFile string) *bedrockruntime.Client {
	t.Helper()
	t.Setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", endpoint)
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", key)
	t.Setenv("AWS_CA_BUNDLE", caFile)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_PROFILE", "")
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRetryMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	return bedrockruntime.NewFromConfig(cfg)
}

func (re *runtimeEnv) sdk(t *testing.T, team string) *bedrockruntime.Client {
	return re.sdkFor(t, re.url+invoker.RuntimePrefix, re.keys[team], re.certFile)
}

var anthropicBody = []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":60,"messages":[{"role":"user","content":[{"type":"text","text":"Tell me about metering."}]}]}`)

func converseInput(model string) *bedrockruntime.ConverseInput {
	return &bedrockruntime.ConverseInput{ModelId: aws.String(model), Messages: []types.Message{{Role: types.ConversationRoleUser,
		Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "Tell me about metering."}}}},
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(60)}}
}

func wantTokens(t *testing.T, ev schemas.Event, op string, in, out int64) {
	t.Helper()
	if ev.Operation != op || ev.Status != schemas.StatusSuccess || ev.TeamID != "search" {
		t.Errorf("event %s %s %s, want %s success for search", ev.Operation, ev.Status, ev.TeamID, op)
	}
	if in <= 0 || out <= 0 || ev.InputTokens != in || ev.OutputTokens != out {
		t.Errorf("%s metered %d in / %d out, Bedrock reported %d / %d", op, ev.InputTokens, ev.OutputTokens, in, out)
	}
}

func TestRuntimeRoutesWithTheAWSSDK(t *testing.T) {
	re := newRuntimeEnv(t, seedTeams)
	br := re.sdk(t, "search")
	ctx := context.Background()

	t.Run("InvokeModel", func(t *testing.T) {
		out, err := br.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String(haiku), Body: anthropicBody,
			ContentType: aws.String("application/json")})
		if err != nil {
			t.Fatal(err)
		}
		var msg struct {
			Content []struct{ Text string } `json:"content"`
			Usage   struct {
				InputTokens  int64 `json:"input_tokens"`
				OutputTokens int64 `json:"output_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(out.Body, &msg); err != nil || len(msg.Content) == 0 || msg.Content[0].Text == "" {
			t.Fatalf("answer %s: %v", out.Body, err)
		}
		wantTokens(t, re.oneEvent(t), "InvokeModel", msg.Usage.InputTokens, msg.Usage.OutputTokens)
	})

	t.Run("InferenceProfileARN", func(t *testing.T) {
		arn := "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
		if _, err := br.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String(arn), Body: anthropicBody,
			ContentType: aws.String("application/json")}); err != nil {
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDeniedException" {
				t.Fatal(err)
			}
		}
		// Allowed or not, the call names the model the SDK sent, decoded whole.
		if ev := re.oneEvent(t); ev.ModelID != arn {
			t.Errorf("event model %q, want %q", ev.ModelID, arn)
		}
	})

	t.Run("Converse", func(t *testing.T) {
		out, err := br.Converse(ctx, converseInput(haiku))
		if err != nil {
			t.Fatal(err)
		}
		msg, ok := out.Output.(*types.ConverseOutputMemberMessage)
		if !ok || len(msg.Value.Content) == 0 || out.Usage == nil {
			t.Fatalf("answer %+v", out)
		}
		wantTokens(t, re.oneEvent(t), "Converse", int64(aws.ToInt32(out.Usage.InputTokens)), int64(aws.ToInt32(out.Usage.OutputTokens)))
	})

	t.Run("ConverseStream", func(t *testing.T) {
		out, err := br.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String(haiku),
			Messages: converseInput(haiku).Messages, InferenceConfig: converseInput(haiku).InferenceConfig})
		if err != nil {
			t.Fatal(err)
		}
		es := out.GetStream()
		var text strings.Builder
		var usage *types.TokenUsage
		for ev := range es.Events() {
			switch v := ev.(type) {
			case *types.ConverseStreamOutputMemberContentBlockDelta:
				if d, ok := v.Value.Delta.(*types.ContentBlockDeltaMemberText); ok {
					text.WriteString(d.Value)
				}
			case *types.ConverseStreamOutputMemberMetadata:
				usage = v.Value.Usage
			}
		}
		if err := es.Err(); err != nil {
			t.Fatal(err)
		}
		es.Close()
		if text.Len() == 0 || usage == nil {
			t.Fatalf("stream gave text %q and usage %v", text.String(), usage)
		}
		wantTokens(t, re.oneEvent(t), "ConverseStream", int64(aws.ToInt32(usage.InputTokens)), int64(aws.ToInt32(usage.OutputTokens)))
	})

	t.Run("InvokeModelWithResponseStream", func(t *testing.T) {
		out, err := br.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{ModelId: aws.String(haiku),
			Body: anthropicBody, ContentType: aws.String("application/json")})
		if err != nil {
			t.Fatal(err)
		}
		es := out.GetStream()
		chunks := 0
		var metrics struct {
			In  int64 `json:"inputTokenCount"`
			Out int64 `json:"outputTokenCount"`
		}
		for ev := range es.Events() {
			chunk, ok := ev.(*types.ResponseStreamMemberChunk)
			if !ok {
				continue
			}
			chunks++
			var m struct {
				Metrics *json.RawMessage `json:"amazon-bedrock-invocationMetrics"`
			}
			if json.Unmarshal(chunk.Value.Bytes, &m) == nil && m.Metrics != nil {
				json.Unmarshal(*m.Metrics, &metrics)
			}
		}
		if err := es.Err(); err != nil {
			t.Fatal(err)
		}
		es.Close()
		if chunks < 2 {
			t.Fatalf("%d chunks", chunks)
		}
		wantTokens(t, re.oneEvent(t), "InvokeModelWithResponseStream", metrics.In, metrics.Out)
	})

	t.Run("ModelNotAllowed", func(t *testing.T) {
		_, err := re.sdk(t, "ads").Converse(ctx, converseInput(haiku))
		var denied *types.AccessDeniedException
		if !errors.As(err, &denied) {
			t.Fatalf("err = %v, want AccessDeniedException", err)
		}
		noInternals(t, re, err)
		if ev := re.oneEvent(t); ev.Status != schemas.StatusDenied || ev.TeamID != "ads" {
			t.Errorf("event %+v, want one denied call of ads", ev)
		}
	})
}

// noInternals fails when an error a client sees names meter's insides: the
// model server's address, a file path, or SDK plumbing.
func noInternals(t *testing.T, re *runtimeEnv, err error) {
	t.Helper()
	u, _ := url.Parse(re.models.URL)
	for _, leak := range []string{u.Host, re.dir, "goroutine", "operation error"} {
		var ae smithy.APIError
		if errors.As(err, &ae) && strings.Contains(ae.ErrorMessage(), leak) {
			t.Errorf("error message %q names %q", ae.ErrorMessage(), leak)
		}
	}
}

func TestRuntimeLimitIsThrottlingException(t *testing.T) {
	re := newRuntimeEnv(t, []tenants.TeamSpec{{ID: "search", AllowedModels: []string{"anthropic.*"}, Quotas: &tenants.Quotas{DailyRequests: 1}}})
	br := re.sdk(t, "search")
	if _, err := br.Converse(context.Background(), converseInput(haiku)); err != nil {
		t.Fatal(err)
	}
	_, err := br.Converse(context.Background(), converseInput(haiku))
	var throttled *types.ThrottlingException
	if !errors.As(err, &throttled) {
		t.Fatalf("err = %v, want ThrottlingException", err)
	}
	noInternals(t, re, err)
	evs := re.newEvents(t)
	if len(evs) != 2 || evs[1].Status != schemas.StatusThrottled {
		t.Fatalf("events %+v, want a success then a throttled call", evs)
	}
}

func TestRuntimeRevokedKeyIsAnAuthorizationError(t *testing.T) {
	re := newRuntimeEnv(t, seedTeams)
	br := re.sdk(t, "search")
	if _, err := br.Converse(context.Background(), converseInput(haiku)); err != nil {
		t.Fatal(err)
	}
	re.newEvents(t)
	infos, err := tenants.ListTeams(re.tenants)
	if err != nil {
		t.Fatal(err)
	}
	var keyID string
	for _, ti := range infos {
		if ti.ID == "search" {
			keyID = ti.Keys[0].ID
		}
	}
	if err := tenants.RevokeKey(re.tenants, "search", keyID); err != nil {
		t.Fatal(err)
	}
	// The registry reloads within ReloadInterval; poll until it has.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = br.Converse(context.Background(), converseInput(haiku))
		if err != nil || time.Now().After(deadline) {
			break
		}
		re.newEvents(t)
		time.Sleep(20 * time.Millisecond)
	}
	var ae smithy.APIError
	var re2 interface{ HTTPStatusCode() int }
	if !errors.As(err, &ae) || ae.ErrorCode() != "UnrecognizedClientException" || !errors.As(err, &re2) || re2.HTTPStatusCode() != http.StatusUnauthorized {
		t.Fatalf("err = %v, want 401 UnrecognizedClientException", err)
	}
	noInternals(t, re, err)
	if evs := re.newEvents(t); len(evs) != 0 {
		t.Errorf("a revoked key was metered: %+v", evs)
	}
}

// TestRuntimeAbandonedStreamIsMeteredInFull: a client that stops reading a
// stream after its first event still pays for the whole answer Bedrock gave.
func TestRuntimeAbandonedStreamIsMeteredInFull(t *testing.T) {
	// Events 5 ms apart: the answer is still streaming when the client leaves.
	re := newRuntimeEnv(t, seedTeams, bedrocklocal.Config{StreamInterval: 5 * time.Millisecond})
	br := re.sdk(t, "search")
	in := &bedrockruntime.ConverseStreamInput{ModelId: aws.String(haiku), Messages: converseInput(haiku).Messages,
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(400)}}

	full, err := br.ConverseStream(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for range full.GetStream().Events() {
	}
	full.GetStream().Close()
	whole := re.oneEvent(t)

	ctx, cancel := context.WithCancel(context.Background())
	out, err := br.ConverseStream(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	<-out.GetStream().Events()
	cancel()
	out.GetStream().Close()
	var evs []schemas.Event
	for deadline := time.Now().Add(10 * time.Second); len(evs) == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		evs = re.newEvents(t)
	}
	if len(evs) != 1 {
		t.Fatalf("abandoned stream: %d events", len(evs))
	}
	if !strings.Contains(re.log.String(), "client left a stream early") {
		t.Errorf("the server did not see the client leave (the stream ended before it did?):\n%s", re.log.String())
	}
	if ev := evs[0]; ev.Status != schemas.StatusSuccess || ev.InputTokens != whole.InputTokens || ev.OutputTokens != whole.OutputTokens {
		t.Errorf("abandoned stream metered %s %d/%d, the same call read whole %d/%d", ev.Status, ev.InputTokens, ev.OutputTokens,
			whole.InputTokens, whole.OutputTokens)
	}
}

// TestRuntimeBearerTokenNeedsHTTPS: the SDK itself refuses to send a team key
// as a bearer token over plain HTTP, and meter never logs the token.
func TestRuntimeBearerTokenNeedsHTTPS(t *testing.T) {
	re := newRuntimeEnv(t, seedTeams)
	plain := re.sdkFor(t, re.api.URL+invoker.RuntimePrefix, re.keys["search"], re.certFile)
	_, err := plain.Converse(context.Background(), converseInput(haiku))
	if err == nil || !strings.Contains(err.Error(), "HTTPS") {
		t.Fatalf("plain HTTP: err = %v, want the SDK's refusal", err)
	}
	if evs := re.newEvents(t); len(evs) != 0 {
		t.Errorf("a refused request was metered: %+v", evs)
	}
	// Calls that succeed, fail and are refused over HTTPS: none logs the key.
	br := re.sdk(t, "search")
	br.Converse(context.Background(), converseInput(haiku))
	br.Converse(context.Background(), converseInput("meta.llama3-8b-instruct-v1:0"))
	re.sdkFor(t, re.url+invoker.RuntimePrefix, "not-a-key", re.certFile).Converse(context.Background(), converseInput(haiku))
	if re.log.Len() == 0 {
		t.Fatal("the server logged nothing")
	}
	if strings.Contains(re.log.String(), re.keys["search"]) || strings.Contains(re.log.String(), "not-a-key") {
		t.Errorf("the log holds a bearer token:\n%s", re.log.String())
	}
}

// TestTLSCertificateReloads: replacing the certificate files is picked up by
// the next connection, without a restart.
func TestTLSCertificateReloads(t *testing.T) {
	re := newRuntimeEnv(t, seedTeams)
	first := re.sdk(t, "search")
	if _, err := first.Converse(context.Background(), converseInput(haiku)); err != nil {
		t.Fatal(err)
	}
	newCert, newKey := testenv.SelfSignedCert(t, t.TempDir(), "renewed")
	for _, f := range [][2]string{{newCert, re.certFile}, {newKey, re.keyFile}} {
		data, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A client that trusts only the new certificate connects.
	renewed := re.sdkFor(t, re.url+invoker.RuntimePrefix, re.keys["search"], newCert)
	if _, err := renewed.Converse(context.Background(), converseInput(haiku)); err != nil {
		t.Fatalf("after renewal: %v", err)
	}
}

// TestHTTPSOffersHTTP2: a client that offers HTTP/2 gets it.
func TestHTTPSOffersHTTP2(t *testing.T) {
	re := newRuntimeEnv(t, seedTeams)
	pem, err := os.ReadFile(re.certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := client.Get(re.url + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("got %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
}

// TestRuntimeHostileInput: the runtime routes check what the caller sends as
// the others do: a model id no Bedrock model can have is refused as a
// ValidationException before it is metered, and a hostile Content-Type or
// Accept is not passed on to Bedrock.
func TestRuntimeHostileInput(t *testing.T) {
	re := newRuntimeEnv(t, seedTeams)
	certPEM, err := os.ReadFile(re.certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	post := func(model string, headers map[string]string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, re.url+"/bedrock/model/"+url.PathEscape(model)+"/invoke", bytes.NewReader(anthropicBody))
		req.Header.Set("Authorization", "Bearer "+re.keys["search"])
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, model := range []string{"=HYPERLINK(\"x\")", "anthropic." + strings.Repeat("x", 5000), "anthropic.claude v1"} {
		resp, body := post(model, nil)
		if resp.StatusCode != 400 || resp.Header.Get("x-amzn-ErrorType") != "ValidationException" {
			t.Errorf("model %.30q: %d %s %s", model, resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), body)
		}
	}
	if evs := re.newEvents(t); len(evs) != 0 {
		t.Errorf("hostile model ids were metered: %d events", len(evs))
	}
	// A header value no media type has is not passed on: the call goes through as JSON.
	resp, body := post(haiku, map[string]string{"Content-Type": "application/json;" + strings.Repeat("x", 4000), "Accept": "=cmd|' /C calc'!A0"})
	if resp.StatusCode != 200 {
		t.Fatalf("hostile headers: %d %s", resp.StatusCode, body)
	}
	re.oneEvent(t)
}
