package main

// Integration tests start real servers on 127.0.0.1: the local Bedrock Runtime
// server (internal/bedrocklocal), reached by the real SDK client the function
// builds from its environment. The Lambda handler is invoked directly with
// event JSON shaped like AWS's samples (testdata/lambda at the top of the repository); usage goes to the
// embedded file stream, or, with Kinesis unreachable, to the spill.

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/invoker/limits"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

type lambdaEnv struct {
	stdout bytes.Buffer // the function's EMF lines
	dir    string
	key    string
	fn     *function
	stream string
}

func newLambdaEnv(t *testing.T, env map[string]string) *lambdaEnv {
	t.Helper()
	return newLambdaEnvTeam(t, env, tenants.TeamSpec{ID: "search", CostCenter: "CC-100", AllowedModels: []string{"anthropic.*"}})
}

// newLambdaEnvTeam is newLambdaEnv with the one team's spec.
func newLambdaEnvTeam(t *testing.T, env map[string]string, spec tenants.TeamSpec) *lambdaEnv {
	t.Helper()
	e := &lambdaEnv{dir: t.TempDir()}
	tenantsPath := filepath.Join(e.dir, "tenants.yaml")
	var err error
	e.key, err = tenants.AddTeam(tenantsPath, spec)
	if err != nil {
		t.Fatal(err)
	}
	bl, err := bedrocklocal.New(bedrocklocal.Config{})
	if err != nil {
		t.Fatal(err)
	}
	models := httptest.NewServer(bl)
	t.Cleanup(func() { models.Close(); bl.Close() })
	e.stream = filepath.Join(e.dir, "stream")
	vars := map[string]string{
		"METER_TENANTS": tenantsPath, "METER_STREAM": "file://" + e.stream, "METER_SPILL": "file://" + filepath.Join(e.dir, "spill"),
		"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": models.URL, "AWS_REGION": "us-east-1",
		"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "local", "AWS_EC2_METADATA_DISABLED": "true",
	}
	for k, v := range env {
		vars[k] = v
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
	e.fn, err = setup(context.Background(), os.Getenv, slog.New(slog.DiscardHandler), metrics.NewEMF(&e.stdout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.fn.close)
	return e
}

// invoke sends a testdata event to the handler, as the Lambda runtime does.
func (e *lambdaEnv) invoke(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "lambda", name))
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.fn.handler.Invoke(context.Background(), []byte(strings.ReplaceAll(string(b), "${API_KEY}", e.key)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// events reads every usage event in the stream now, without closing anything.
func (e *lambdaEnv) events(t *testing.T) map[string]schemas.Event {
	t.Helper()
	fs, err := stream.OpenFile(e.stream, stream.FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	ctx := context.Background()
	shards, err := fs.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]schemas.Event{}
	for _, sh := range shards {
		it, err := fs.Open(ctx, sh.ID, stream.Start{Kind: stream.TrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		for {
			recs, err := it.Next(ctx, 1000)
			for _, r := range recs {
				ev, perr := schemas.ParseEvent(r.Data)
				if perr != nil {
					t.Fatal(perr)
				}
				out[ev.RequestID] = ev
			}
			if len(recs) == 0 || err != nil {
				break
			}
		}
		it.Close()
	}
	return out
}

func TestAPIGatewayProxyEvents(t *testing.T) {
	e := newLambdaEnv(t, nil)

	var resp events.APIGatewayProxyResponse
	json.Unmarshal(e.invoke(t, "apigw-invoke-model.json"), &resp)
	if resp.StatusCode != 200 || resp.IsBase64Encoded {
		t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
	}
	var answer []map[string]string
	if err := json.Unmarshal([]byte(resp.Body), &answer); err != nil || len(answer) != 1 || answer[0]["generated_text"] == "" {
		t.Fatalf("body %s: %v", resp.Body, err)
	}
	rid := resp.Headers["X-Request-Id"]
	if rid == "" || resp.MultiValueHeaders["X-Request-Id"][0] != rid || resp.Headers["X-Input-Tokens"] == "" {
		t.Fatalf("headers %v", resp.Headers)
	}
	// The event is in the stream the moment the invocation returned: nothing
	// is left pending for a frozen instance.
	evs := e.events(t)
	ev, ok := evs[rid]
	if !ok || ev.TeamID != "search" || ev.Status != "success" || ev.InputTokens == 0 || resp.Headers["X-Input-Tokens"] != itoa(ev.InputTokens) {
		t.Fatalf("event of %s: %+v (found %v)", rid, ev, ok)
	}

	json.Unmarshal(e.invoke(t, "apigw-unknown-key.json"), &resp)
	if resp.StatusCode != 401 || !strings.Contains(resp.Body, `"unauthorized"`) {
		t.Fatalf("unknown key: %d %s", resp.StatusCode, resp.Body)
	}
	json.Unmarshal(e.invoke(t, "apigw-model-not-allowed.json"), &resp)
	if resp.StatusCode != 403 || !strings.Contains(resp.Body, `"model_not_allowed"`) {
		t.Fatalf("model not allowed: %d %s", resp.StatusCode, resp.Body)
	}
	if ev := e.events(t)[resp.Headers["X-Request-Id"]]; ev.Status != "denied" {
		t.Fatalf("denied call not metered: %+v", ev)
	}
	// A base64-encoded body (binary media types on the API) is decoded.
	json.Unmarshal(e.invoke(t, "apigw-converse-base64.json"), &resp)
	if resp.StatusCode != 200 || !strings.Contains(resp.Body, `"usage"`) {
		t.Fatalf("converse: %d %s", resp.StatusCode, resp.Body)
	}
	if ev := e.events(t)[resp.Headers["X-Request-Id"]]; ev.Operation != "Converse" || ev.OutputTokens == 0 {
		t.Fatalf("converse event: %+v", ev)
	}
	// stdout holds one valid EMF line per metered call: two successes and
	// one denial (the unknown key names no team and is not metered).
	calls := map[string]float64{}
	for _, line := range bytes.Split(bytes.TrimSpace(e.stdout.Bytes()), []byte("\n")) {
		vals, err := metrics.ParseEMF(line)
		if err != nil {
			t.Fatalf("EMF line %s: %v", line, err)
		}
		var doc struct{ Status string }
		json.Unmarshal(line, &doc)
		calls[doc.Status] += vals[metrics.InvokerCalls]
		if vals[metrics.UsageSpilled] != 0 || vals[metrics.UsageNotRecorded] != 0 {
			t.Errorf("EMF line %s counts spilled or lost events", line)
		}
	}
	if calls["success"] != 2 || calls["denied"] != 1 || len(calls) != 2 {
		t.Errorf("EMF calls by status %v; want 2 success, 1 denied", calls)
	}
}

func TestFunctionURLEvents(t *testing.T) {
	e := newLambdaEnv(t, nil)
	var resp events.LambdaFunctionURLResponse
	json.Unmarshal(e.invoke(t, "function-url-invoke-model.json"), &resp)
	if resp.StatusCode != 200 || !strings.Contains(resp.Body, "generated_text") {
		t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
	}
	if _, ok := e.events(t)[resp.Headers["X-Request-Id"]]; !ok {
		t.Fatalf("no event for %q", resp.Headers["X-Request-Id"])
	}
	// converse-stream is buffered: the whole event stream, metadata last,
	// after the usage event is durable.
	json.Unmarshal(e.invoke(t, "function-url-converse-stream.json"), &resp)
	if resp.StatusCode != 200 || resp.Headers["Content-Type"] != "text/event-stream" || !strings.HasSuffix(strings.TrimSpace(strings.SplitN(resp.Body, "event: metadata", 2)[0]), "}") ||
		!strings.Contains(resp.Body, "event: metadata") {
		t.Fatalf("stream: %d %v %s", resp.StatusCode, resp.Headers, resp.Body)
	}
	if ev := e.events(t)[resp.Headers["X-Request-Id"]]; ev.Operation != "ConverseStream" || ev.Status != "success" || ev.OutputTokens == 0 {
		t.Fatalf("stream event: %+v", ev)
	}
}

// TestKinesisUnreachableSpillsBeforeReturning: with the stream down, the
// invocation still answers, and only after its event is in the spill.
func TestKinesisUnreachableSpillsBeforeReturning(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	spillDir := filepath.Join(t.TempDir(), "spill")
	e := newLambdaEnv(t, map[string]string{"METER_STREAM": "kinesis://usage", "AWS_ENDPOINT_URL_KINESIS": dead, "METER_SPILL": "file://" + spillDir})
	var resp events.APIGatewayProxyResponse
	json.Unmarshal(e.invoke(t, "apigw-invoke-model.json"), &resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
	}
	st, _ := store.OpenFile(spillDir)
	objs, _ := st.List(context.Background(), "spill-")
	if len(objs) != 1 {
		t.Fatalf("spill holds %d objects, want 1", len(objs))
	}
	rc, _ := st.Get(context.Background(), objs[0].Key)
	var ev schemas.Event
	json.NewDecoder(rc).Decode(&ev)
	rc.Close()
	if ev.RequestID != resp.Headers["X-Request-Id"] {
		t.Fatalf("spilled %q, answered %q", ev.RequestID, resp.Headers["X-Request-Id"])
	}
	if vals, err := metrics.ParseEMF(bytes.TrimSpace(e.stdout.Bytes())); err != nil || vals[metrics.UsageSpilled] != 1 || vals[metrics.UsageSpillBacklog] != 1 {
		t.Errorf("EMF of the spilled call: %v %v", vals, err)
	}
}

func TestBadConfigurationFailsColdStart(t *testing.T) {
	for _, env := range []map[string]string{
		{"METER_TENANTS": ""}, {"METER_STREAM": ""}, {"METER_STREAM": "kafka://x"}, {"METER_SPILL": "ftp://x"}, {"METER_TENANTS": "/nonexistent/tenants.yaml"},
		{"METER_LIMITS": "redis://x"}, {"METER_LIMITS": "dynamodb://no/table"}, {"METER_LIMITS": "dynamodb://limits?lease=forever"},
	} {
		vars := map[string]string{"METER_TENANTS": filepath.Join(t.TempDir(), "t.yaml"), "METER_STREAM": "file://" + t.TempDir(), "METER_SPILL": "file://" + t.TempDir()}
		os.WriteFile(vars["METER_TENANTS"], []byte("teams: []\n"), 0o600)
		for k, v := range env {
			vars[k] = v
		}
		if _, err := setup(context.Background(), func(k string) string { return vars[k] }, slog.New(slog.DiscardHandler), nil); err == nil {
			t.Errorf("%v: cold start succeeded", env)
		}
	}
}

// TestBootstrapBuilds builds the function as Lambda runs it (provided.al2023)
// for both architectures.
func TestBootstrapBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles twice")
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, arch := range []string{"arm64", "amd64"} {
		out := filepath.Join(t.TempDir(), "bootstrap")
		cmd := exec.Command(gobin, "build", "-tags", "lambda.norpc", "-trimpath", "-o", out, ".")
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
		start := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("GOARCH=%s: %v\n%s", arch, err, b)
		}
		fi, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("linux/%s bootstrap: %d MB in %.1fs", arch, fi.Size()>>20, time.Since(start).Seconds())
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestLimitsSharedThroughDynamoDB: two instances of the function (two cold
// starts) with METER_LIMITS on one table (dynalite on 127.0.0.1) share a
// team's daily request quota: the quota of 3 admits 3 calls in all.
func TestLimitsSharedThroughDynamoDB(t *testing.T) {
	d := testenv.StartDynalite(t)
	if err := d.CreateTable(limits.TableDefinition("meter-limits")); err != nil {
		t.Fatal(err)
	}
	spec := tenants.TeamSpec{ID: "search", CostCenter: "CC-100", AllowedModels: []string{"anthropic.*"}, Quotas: &tenants.Quotas{DailyRequests: 3}}
	env := map[string]string{"METER_LIMITS": "dynamodb://meter-limits", "AWS_ENDPOINT_URL_DYNAMODB": d.Endpoint()}
	// A table that does not exist fails the cold start.
	vars := map[string]string{"METER_TENANTS": filepath.Join(t.TempDir(), "t.yaml"), "METER_STREAM": "file://" + t.TempDir(), "METER_SPILL": "file://" + t.TempDir(),
		"METER_LIMITS": "dynamodb://no-such-table", "AWS_ENDPOINT_URL_DYNAMODB": d.Endpoint(), "AWS_REGION": "us-east-1",
		"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
	os.WriteFile(vars["METER_TENANTS"], []byte("teams: []\n"), 0o600)
	for k, v := range vars {
		t.Setenv(k, v)
	}
	if _, err := setup(context.Background(), os.Getenv, slog.New(slog.DiscardHandler), nil); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("cold start with a missing limits table: %v", err)
	}
	a := newLambdaEnvTeam(t, env, spec)
	env["METER_TENANTS"] = filepath.Join(a.dir, "tenants.yaml") // the same registry
	b := newLambdaEnvTeam(t, env, spec)
	b.key = a.key
	statuses := map[int]int{}
	for i := 0; i < 6; i++ {
		e := a
		if i%2 == 1 {
			e = b
		}
		var resp events.APIGatewayProxyResponse
		json.Unmarshal(e.invoke(t, "apigw-invoke-model.json"), &resp)
		statuses[resp.StatusCode]++
		if resp.StatusCode == 429 && !strings.Contains(resp.Body, "daily quota of 3 requests") {
			t.Errorf("refusal: %s", resp.Body)
		}
	}
	if statuses[200] != 3 || statuses[429] != 3 {
		t.Fatalf("statuses %v: want 3 admitted and 3 refused across the two instances", statuses)
	}
	// The table unreachable: the call is refused 503 (fail closed), and the
	// store's error is in the call's EMF line.
	d.Stop()
	a.stdout.Reset()
	var resp events.APIGatewayProxyResponse
	json.Unmarshal(a.invoke(t, "apigw-invoke-model.json"), &resp)
	if resp.StatusCode != 503 || !strings.Contains(resp.Body, "cannot be reached") {
		t.Fatalf("with the table down: %d %s", resp.StatusCode, resp.Body)
	}
	lines := strings.Split(strings.TrimSpace(a.stdout.String()), "\n")
	if vals, err := metrics.ParseEMF([]byte(lines[len(lines)-1])); err != nil || vals[metrics.LimitsStoreErrors] < 1 {
		t.Fatalf("EMF of the refused call: %v %v", vals, err)
	}
}
