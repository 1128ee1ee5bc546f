package main

// The function's main runs for real: built as a Lambda bootstrap
// (-tags lambda.norpc) and invoked through the Lambda runtime interface
// emulator (aws-lambda-rie, started on 127.0.0.1) with an API Gateway proxy
// event from testdata/lambda, and, in RESPONSE_STREAM mode, with a function
// URL event. The same request goes to `meter serve` (started on 127.0.0.1)
// over the same tenants file and the same local Bedrock server
// (internal/bedrocklocal): the answers and the usage events must agree.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

func TestMainThroughRuntimeEmulatorAnswersWhatServeAnswers(t *testing.T) {
	dir := t.TempDir()
	tenantsPath := filepath.Join(dir, "tenants.yaml")
	key, err := tenants.AddTeam(tenantsPath, tenants.TeamSpec{ID: "search", CostCenter: "CC-100", AllowedModels: []string{"anthropic.*"}})
	if err != nil {
		t.Fatal(err)
	}
	bl, err := bedrocklocal.New(bedrocklocal.Config{})
	if err != nil {
		t.Fatal(err)
	}
	models := httptest.NewServer(bl)
	t.Cleanup(func() { models.Close(); bl.Close() })
	awsEnv := map[string]string{"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": models.URL, "AWS_REGION": "us-east-1",
		"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "local", "AWS_EC2_METADATA_DISABLED": "true"}
	fnEnv := func(stream string, extra ...string) map[string]string {
		env := map[string]string{"METER_TENANTS": tenantsPath, "METER_STREAM": "file://" + stream, "METER_SPILL": "file://" + filepath.Join(dir, "spill-"+filepath.Base(stream))}
		for k, v := range awsEnv {
			env[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			env[extra[i]] = extra[i+1]
		}
		return env
	}
	bootstrap := testenv.BuildBootstrap(t, ".")

	// API Gateway REST, buffered.
	fnStream := filepath.Join(dir, "fn-stream")
	rie := testenv.StartRIE(t, bootstrap, fnEnv(fnStream))
	payload, err := os.ReadFile(testenv.Testdata("lambda", "apigw-invoke-model.json"))
	if err != nil {
		t.Fatal(err)
	}
	payload = bytes.ReplaceAll(payload, []byte("${API_KEY}"), []byte(key))
	answer, err := rie.Invoke(context.Background(), payload)
	if err != nil {
		t.Fatalf("%v\n%s", err, rie.Logs())
	}
	var resp events.APIGatewayProxyResponse
	if err := json.Unmarshal(answer, &resp); err != nil {
		t.Fatalf("answer %s: %v", answer, err)
	}
	if resp.StatusCode != 200 || resp.Headers["x-input-tokens"] == "" && resp.MultiValueHeaders["X-Input-Tokens"] == nil {
		t.Fatalf("answer %+v", resp)
	}

	// meter serve, the same request.
	meter := testenv.MeterCLI(t)
	serveStream := filepath.Join(dir, "serve-stream")
	port := testenv.FreePort(t)
	serve := exec.Command(meter, "serve", "--tenants", tenantsPath, "--stream", "file://"+serveStream, "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	serve.Env = os.Environ()
	for k, v := range awsEnv {
		serve.Env = append(serve.Env, k+"="+v)
	}
	var serveLog bytes.Buffer
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	serve.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-serve.Process.Pid, syscall.SIGKILL); serve.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r, err := http.Get(base + "/healthz"); err == nil {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("meter serve did not come up: %s", serveLog.String())
		}
	}
	var ev events.APIGatewayProxyRequest
	json.Unmarshal(payload, &ev)
	req, _ := http.NewRequest(ev.HTTPMethod, base+ev.Path+"?model_id="+ev.QueryStringParameters["model_id"], strings.NewReader(ev.Body))
	for k, v := range ev.Headers {
		if !strings.EqualFold(k, "Host") {
			req.Header.Set(k, v)
		}
	}
	sr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var serveBody bytes.Buffer
	serveBody.ReadFrom(sr.Body)
	sr.Body.Close()
	if sr.StatusCode != resp.StatusCode || serveBody.String() != resp.Body {
		t.Errorf("the function answered %d %s\nmeter serve answered %d %s", resp.StatusCode, resp.Body, sr.StatusCode, serveBody.String())
	}
	for _, h := range []string{"x-input-tokens", "x-output-tokens"} {
		if got := header(resp, h); got == "" || got != sr.Header.Get(h) {
			t.Errorf("%s: function %q, serve %q", h, got, sr.Header.Get(h))
		}
	}
	fnEvents, serveEvents := (&lambdaEnv{stream: fnStream}).events(t), waitEvents(t, serveStream, 1)
	if len(fnEvents) != 1 || len(serveEvents) != 1 {
		t.Fatalf("usage events: function %d, serve %d", len(fnEvents), len(serveEvents))
	}
	if a, b := comparable(one(fnEvents)), comparable(one(serveEvents)); a != b {
		t.Errorf("usage event of the function\n%+v\nof meter serve\n%+v", a, b)
	}

	// A function URL in RESPONSE_STREAM mode streams converse-stream, and
	// meters it from the stream's final metadata.
	streamed := filepath.Join(dir, "fn-url-stream")
	rieURL := testenv.StartRIE(t, bootstrap, fnEnv(streamed, "METER_RESPONSE_STREAM", "1"))
	payload, err = os.ReadFile(testenv.Testdata("lambda", "function-url-converse-stream.json"))
	if err != nil {
		t.Fatal(err)
	}
	answer, err = rieURL.Invoke(context.Background(), bytes.ReplaceAll(payload, []byte("${API_KEY}"), []byte(key)))
	if err != nil {
		t.Fatalf("%v\n%s", err, rieURL.Logs())
	}
	// The streaming integration response: a JSON prelude, eight NUL bytes, the body.
	prelude, body, ok := bytes.Cut(answer, make([]byte, 8))
	var head struct {
		StatusCode int               `json:"statusCode"`
		Headers    map[string]string `json:"headers"`
	}
	if !ok || json.Unmarshal(prelude, &head) != nil || head.StatusCode != 200 || !strings.HasPrefix(head.Headers["Content-Type"], "text/event-stream") ||
		!bytes.Contains(body, []byte("event: metadata")) {
		t.Fatalf("streamed answer %q\n%s", answer, rieURL.Logs())
	}
	got := (&lambdaEnv{stream: streamed}).events(t)
	if len(got) != 1 || one(got).Operation != "ConverseStream" || one(got).Status != "success" || one(got).OutputTokens == 0 {
		t.Errorf("streamed call's usage events %+v", got)
	}
}

func header(r events.APIGatewayProxyResponse, name string) string {
	for k, v := range r.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	for k, v := range r.MultiValueHeaders {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func one(m map[string]schemas.Event) schemas.Event {
	for _, e := range m {
		return e
	}
	return schemas.Event{}
}

// comparable is an event without what differs between two calls: ids, times, latency.
func comparable(e schemas.Event) schemas.Event {
	e.EventID, e.RequestID, e.Timestamp, e.LatencyMS = "", "", time.Time{}, 0
	return e
}

// waitEvents reads a file stream until it holds n events (meter serve hands
// events to its stream after answering), for at most 10 s.
func waitEvents(t *testing.T, dir string, n int) map[string]schemas.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(dir); err == nil {
			if evs := (&lambdaEnv{stream: dir}).events(t); len(evs) >= n || time.Now().After(deadline) {
				return evs
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("no stream at %s", dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
