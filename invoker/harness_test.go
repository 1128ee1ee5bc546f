package invoker_test

// Integration tests start real servers on 127.0.0.1: the local Bedrock Runtime
// server (internal/bedrocklocal) spoken to by the real aws-sdk-go-v2 client, and
// the invoker's HTTP API. Usage events go to the embedded file stream
// (internal/stream, file://) and are read back from it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/invoker/limits"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

// modelServer is bedrocklocal behind a recorder of what it answered, so tests
// compare metered tokens with what the model server itself reported.
type modelServer struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]http.Header // by X-Amzn-RequestId
}

func (m *modelServer) answer(requestID string) http.Header {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.answers[requestID]
}

func startModelServer(t *testing.T, cfg bedrocklocal.Config) *modelServer {
	t.Helper()
	return startModelServerHook(t, cfg, nil)
}

// startModelServerHook is startModelServer calling hook (when set) before
// each request is answered, so a test can hold a call in flight or move a
// clock while the model "thinks".
func startModelServerHook(t *testing.T, cfg bedrocklocal.Config, hook func(*http.Request)) *modelServer {
	t.Helper()
	bl, err := bedrocklocal.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &modelServer{answers: map[string]http.Header{}}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hook != nil {
			hook(r)
		}
		bl.ServeHTTP(w, r)
		m.mu.Lock()
		m.answers[w.Header().Get("X-Amzn-RequestId")] = w.Header().Clone()
		m.mu.Unlock()
	}))
	t.Cleanup(func() { m.Close(); bl.Close() })
	return m
}

func sdkClient(endpoint string) *bedrockruntime.Client {
	return bedrockruntime.New(bedrockruntime.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(endpoint),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""),
		RetryMaxAttempts: 1,
	})
}

type env struct {
	t        *testing.T
	dir      string
	tenants  string
	models   *modelServer
	bedrock  *bedrockruntime.Client
	fs       *stream.FileStream
	emitter  *emitter.Emitter
	srv      *invoker.Server
	api      *httptest.Server
	keys     map[string]string // team -> plaintext key
	limits   *limits.Memory
	readFrom map[string]int // events already read, per shard
}

type envOpts struct {
	teams       []tenants.TeamSpec
	model       bedrocklocal.Config
	callTimeout time.Duration
	// now is the invoker's clock (default time.Now); onModelCall runs in the
	// model server before it answers each call.
	now         func() time.Time
	onModelCall func(*http.Request)
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), keys: map[string]string{}, readFrom: map[string]int{}}
	e.tenants = filepath.Join(e.dir, "tenants.yaml")
	for _, spec := range o.teams {
		key, err := tenants.AddTeam(e.tenants, spec)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[spec.ID] = key
	}
	e.models = startModelServerHook(t, o.model, o.onModelCall)
	e.bedrock = sdkClient(e.models.URL)
	var err error
	e.fs, err = stream.OpenFile(filepath.Join(e.dir, "stream"), stream.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.emitter, err = emitter.New(emitter.Config{Producer: e.fs, SpillDir: filepath.Join(e.dir, "spill")})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := tenants.OpenRegistry(e.tenants)
	if err != nil {
		t.Fatal(err)
	}
	e.limits = limits.NewMemory()
	e.srv, err = invoker.New(invoker.Config{
		Tenants: reg, Bedrock: e.bedrock, Usage: e.emitter, Prices: pricing.Default(), Limits: e.limits,
		ReloadInterval: 20 * time.Millisecond, CallTimeout: o.callTimeout, MaxBodyBytes: 64 << 10, Now: o.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.api = httptest.NewServer(e.srv)
	t.Cleanup(func() {
		e.api.Close()
		e.srv.Close()
		e.emitter.Close()
		e.fs.Close()
	})
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("status %d, body %q: %v", r.status, r.body, err)
	}
}

// errorCode checks the contract's error shape and returns its code.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	r.json(t, &e)
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error body %q lacks code or message", r.body)
	}
	if strings.Contains(string(r.body), "goroutine") {
		t.Fatalf("error body leaks a stack: %q", r.body)
	}
	return e.Error.Code
}

func (e *env) do(method, path string, headers map[string]string, body string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.api.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func (e *env) invoke(team, model string, extra map[string]string, body string) response {
	h := map[string]string{"x-api-key": e.keys[team], "Content-Type": "application/json"}
	for k, v := range extra {
		h[k] = v
	}
	return e.do("POST", "/invoke_model?model_id="+model, h, body)
}

// newEvents returns the events appended to the stream since the last call,
// ordered by timestamp.
func (e *env) newEvents(t *testing.T) []schemas.Event {
	t.Helper()
	ctx := context.Background()
	shards, err := e.fs.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []schemas.Event
	for _, sh := range shards {
		it, err := e.fs.Open(ctx, sh.ID, stream.Start{Kind: stream.TrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		var recs []stream.Record
		for {
			batch, err := it.Next(ctx, 1000)
			if err != nil && err != stream.ErrShardClosed {
				t.Fatal(err)
			}
			recs = append(recs, batch...)
			if len(batch) == 0 || err != nil {
				break
			}
		}
		it.Close()
		for _, r := range recs[e.readFrom[sh.ID]:] {
			ev, err := schemas.ParseEvent(r.Data)
			if err != nil {
				t.Fatalf("stream record %q: %v", r.Data, err)
			}
			if r.PartitionKey != ev.RequestID {
				t.Fatalf("partition key %q, request_id %q", r.PartitionKey, ev.RequestID)
			}
			out = append(out, ev)
		}
		e.readFrom[sh.ID] = len(recs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Timestamp.Before(out[j].Timestamp) })
	return out
}

// oneEvent asserts that exactly one event was recorded since the last read.
func (e *env) oneEvent(t *testing.T) schemas.Event {
	t.Helper()
	evs := e.newEvents(t)
	if len(evs) != 1 {
		t.Fatalf("want exactly 1 usage event, got %d: %+v", len(evs), evs)
	}
	return evs[0]
}

// sse is one server-sent event.
type sse struct {
	name string
	data string
}

func readSSE(r io.Reader, stopAfter int) ([]sse, error) {
	var out []sse
	var cur sse
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		case line == "" && cur.name != "":
			out = append(out, cur)
			cur = sse{}
			if stopAfter > 0 && len(out) >= stopAfter {
				return out, nil
			}
		}
	}
	return out, sc.Err()
}

func mustJSON(v any) string {
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(v)
	return b.String()
}

var (
	// bedrocklocalStreaming paces stream events so a client can leave midway.
	bedrocklocalStreaming = bedrocklocal.Config{StreamInterval: 30 * time.Millisecond}
	// bedrocklocalSlow answers after the invoker's call timeout.
	bedrocklocalSlow = bedrocklocal.Config{Latency: 2 * time.Second}
)

// newServer builds a server like newEnv's, answering /usage from st.
func (e *env) newServer(t *testing.T, st invoker.UsageStore) *invoker.Server {
	t.Helper()
	reg, err := tenants.OpenRegistry(e.tenants)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: e.bedrock, Usage: e.emitter, Prices: pricing.Default(),
		Limits: e.limits, ReloadInterval: -1, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}
