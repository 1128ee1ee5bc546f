package invoker_test

// The operator's view: /metrics, /healthz and /readyz of a server in front of
// the local Bedrock server, with usage going to the embedded file stream
// through an outage switch (the stream refuses puts while it is down) and a
// spill that can be made to fail.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/invoker/tenants"
)

// outage switches a producer or a store off: while down, puts fail.
type outage struct {
	stream.Producer
	down atomic.Bool
}

func (o *outage) Put(ctx context.Context, entries []stream.Entry) error {
	if o.down.Load() {
		return errors.New("stream unreachable")
	}
	return o.Producer.Put(ctx, entries)
}

type failingSpill struct {
	store.Store
	down atomic.Bool
}

func (f *failingSpill) Put(ctx context.Context, key string, body io.Reader) error {
	if f.down.Load() {
		return errors.New("disk full")
	}
	return f.Store.Put(ctx, key, body)
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

// value sums a family's samples whose labels include want.
func value(mf map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := mf[name]
	if f == nil {
		return -1
	}
	sum := 0.0
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			if labels[k] != v {
				ok = false
			}
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func readyz(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitReady(t *testing.T, url string, want int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, body := readyz(t, url)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d %s, want %d", code, body, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMetricsHealthAndReadiness(t *testing.T) {
	dir := t.TempDir()
	models := startModelServer(t, bedrocklocal.Config{})
	fs, err := stream.OpenFile(filepath.Join(dir, "stream"), stream.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	spillStore, err := store.OpenFile(filepath.Join(dir, "spill"))
	if err != nil {
		t.Fatal(err)
	}
	prod, spill := &outage{Producer: fs}, &failingSpill{Store: spillStore}
	em, err := emitter.New(emitter.Config{Producer: prod, Spill: spill, RedriveInterval: time.Hour, PutTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	tenantsFile := filepath.Join(dir, "tenants.yaml")
	reg := tenants.WatchRegistry(tenantsFile)
	srv, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: sdkClient(models.URL), Usage: em, Prices: pricing.Default(),
		ReloadInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	api := httptest.NewServer(srv)
	defer api.Close()

	// Alive at once; ready only once a valid tenants file exists.
	if resp, err := http.Get(api.URL + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	if code, body := readyz(t, api.URL); code != http.StatusServiceUnavailable || !strings.Contains(body, "tenant registry") {
		t.Fatalf("/readyz before any tenants file: %d %s", code, body)
	}
	keys := map[string]string{}
	for _, spec := range []tenants.TeamSpec{
		{ID: "search", AllowedModels: []string{"anthropic.*"}},
		{ID: "ads", AllowedModels: []string{"meta.*"}},
		{ID: "burst", AllowedModels: []string{"anthropic.*"}, Quotas: &tenants.Quotas{DailyRequests: 1}},
	} {
		if keys[spec.ID], err = tenants.AddTeam(tenantsFile, spec); err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, api.URL, http.StatusOK)

	call := func(team, model string) int {
		req, _ := http.NewRequest(http.MethodPost, api.URL+"/invoke_model?model_id="+model, strings.NewReader(`{"inputs": "hello there"}`))
		req.Header.Set("x-api-key", keys[team])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		team, model string
		want        int
	}{
		{"search", haiku, 200}, {"search", haiku, 200}, {"ads", haiku, 403}, {"burst", haiku, 200}, {"burst", haiku, 429},
		{"search", "anthropic.invented-by-a-caller-v9", 400},
	} {
		if got := call(c.team, c.model); got != c.want {
			t.Fatalf("%s %s: %d, want %d", c.team, c.model, got, c.want)
		}
	}

	// The stream goes down: the call is answered from the spill.
	prod.down.Store(true)
	if got := call("search", haiku); got != 200 {
		t.Fatalf("during the outage: %d", got)
	}
	waitReady(t, api.URL, http.StatusOK) // spilling counts as ready
	prod.down.Store(false)
	if n, err := em.Redrive(context.Background()); err != nil || n != 1 {
		t.Fatalf("redrive: %d, %v", n, err)
	}

	// Stream and spill both down: the call is refused, and the server is not ready.
	prod.down.Store(true)
	spill.down.Store(true)
	if got := call("search", haiku); got != http.StatusServiceUnavailable {
		t.Fatalf("with nowhere to record usage: %d", got)
	}
	if code, body := readyz(t, api.URL); code != http.StatusServiceUnavailable || !strings.Contains(body, "neither streamed nor spilled") {
		t.Fatalf("/readyz with nowhere to record usage: %d %s", code, body)
	}
	// Until usage can be recorded again, calls are refused before they reach
	// Bedrock (nothing served goes unmetered).
	if got := call("search", haiku); got != http.StatusServiceUnavailable {
		t.Fatalf("while not ready: %d", got)
	}
	// The spill comes back: ready again within a probe (spilling), calls are
	// served; then the stream, and the spill drains.
	spill.down.Store(false)
	waitReady(t, api.URL, http.StatusOK)
	if got := call("search", haiku); got != 200 {
		t.Fatalf("spill back: %d", got)
	}
	prod.down.Store(false)
	if n, err := em.Redrive(context.Background()); err != nil || n != 1 {
		t.Fatalf("redrive: %d, %v", n, err)
	}

	// An invalid edit of the tenants file is refused and counted; the last
	// good registry stays in force, so the server stays ready.
	good, err := os.ReadFile(tenantsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tenantsFile, []byte("teams: [ {id: "), 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); value(scrape(t, api.URL), metrics.TenantsReloadFailures, nil) < 1; {
		if time.Now().After(deadline) {
			t.Fatal("the invalid tenants file was not refused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitReady(t, api.URL, http.StatusOK)
	if got := call("search", haiku); got != 200 {
		t.Fatalf("with an invalid tenants file in place: %d", got)
	}
	if err := os.WriteFile(tenantsFile, good, 0o600); err != nil {
		t.Fatal(err)
	}

	mf := scrape(t, api.URL)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{metrics.InvokerCalls, map[string]string{"team": "search", "model": haiku, "status": "success"}, 5},
		{metrics.InvokerCalls, map[string]string{"team": "ads", "model": haiku, "status": "denied"}, 1},
		{metrics.InvokerCalls, map[string]string{"team": "burst", "status": "success"}, 1},
		{metrics.InvokerCalls, map[string]string{"team": "burst", "status": "throttled"}, 1},
		{metrics.InvokerCalls, map[string]string{"model": "other"}, 1},
		{metrics.InvokerCalls, nil, 9},
		{metrics.InvokerLimitRefusals, map[string]string{"team": "burst", "kind": "daily_request_quota"}, 1},
		{metrics.InvokerBedrockSeconds, map[string]string{"op": "InvokeModel"}, 6}, // the invented model never reaches Bedrock
		{metrics.InvokerOwnSeconds, nil, 9},
		{metrics.UsageEmitted, nil, 7},
		{metrics.UsageSpilled, nil, 2},
		{metrics.UsageRedriven, nil, 2},
		{metrics.UsageNotRecorded, nil, 1},
		{metrics.UsageSpillBacklog, nil, 0},
		{metrics.TenantsReloadFailures, nil, 1},
	} {
		if got := value(mf, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Nothing a caller sent becomes a label.
	for _, f := range mf {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.Contains(l.GetValue(), "invented") || strings.Contains(l.GetValue(), keys["search"]) {
					t.Errorf("%s has label %s=%q", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}
