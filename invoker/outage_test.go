package invoker_test

// Integration test against real servers on 127.0.0.1: kinesalite (the local
// Kinesis, restarted on the same port midway), the local Bedrock Runtime
// server (internal/bedrocklocal) reached by the real SDK client, and the
// invoker's HTTP API. Usage goes to Kinesis through stream.KinesisProducer.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

// gatedProducer is the real Kinesis producer behind a gate the test closes
// for a moment before it kills kinesalite: kinesalite loses its data when it
// stops, so the test's reader must first have read every record Kinesis
// accepted. It also remembers which request ids Kinesis acknowledged.
type gatedProducer struct {
	inner stream.Producer
	gate  sync.RWMutex
	mu    sync.Mutex
	acked map[string]bool
}

func (g *gatedProducer) Put(ctx context.Context, entries []stream.Entry) error {
	g.gate.RLock()
	defer g.gate.RUnlock()
	err := g.inner.Put(ctx, entries)
	if err == nil {
		g.mu.Lock()
		for _, e := range entries {
			g.acked[e.PartitionKey] = true
		}
		g.mu.Unlock()
	}
	return err
}

func (g *gatedProducer) ackedIDs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	ids := make([]string, 0, len(g.acked))
	for id := range g.acked {
		ids = append(ids, id)
	}
	return ids
}

// streamReader reads every shard of a Kinesis stream from the start into a
// set of request ids (with copies counted), re-opening the stream whenever
// reading fails, as it does while kinesalite is down or re-created.
type streamReader struct {
	mu     sync.Mutex
	copies map[string]int // request id -> records carrying it
	bad    []string       // records whose key is not their event's request_id
}

func (r *streamReader) has(ids []string) (missing int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if r.copies[id] == 0 {
			missing++
		}
	}
	return missing
}

func (r *streamReader) run(ctx context.Context, k *testenv.Kinesalite, name string) {
	for ctx.Err() == nil {
		r.readOnce(ctx, k, name)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readOnce reads the stream until an error; records of a stream that is
// later lost were already counted, and a re-created stream is read anew.
func (r *streamReader) readOnce(ctx context.Context, k *testenv.Kinesalite, name string) {
	src, err := stream.OpenKinesisWithOptions(ctx, k.Client(), name,
		stream.KinesisSourceOptions{CallTimeout: time.Second, MinPollInterval: 20 * time.Millisecond})
	if err != nil {
		return
	}
	shards, err := src.Shards(ctx)
	if err != nil || len(shards) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, sh := range shards {
		it, err := src.Open(ctx, sh.ID, stream.Start{Kind: stream.TrimHorizon})
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer it.Close()
			for ctx.Err() == nil {
				recs, err := it.Next(ctx, 10000)
				if err != nil {
					return
				}
				r.mu.Lock()
				for _, rec := range recs {
					ev, perr := schemas.ParseEvent(rec.Data)
					if perr != nil || ev.RequestID != rec.PartitionKey {
						r.bad = append(r.bad, string(rec.Data))
						continue
					}
					r.copies[ev.RequestID]++
				}
				r.mu.Unlock()
				if len(recs) == 0 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
}

// TestNoUsageLostWhileKinesisIsDown serves at least 5,000 calls over HTTP
// while Kinesis goes away for 20 s and comes back empty on the same port. Every
// call the invoker answered with a request id (200s, and the refused calls it
// meters) must reach the stream, none may appear that was not served, and
// copies are allowed only under the same request id.
func TestNoUsageLostWhileKinesisIsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30 s Kinesis outage under load")
	}
	const (
		streamName = "usage-outage"
		calls      = 6800
		clients    = 16
		before     = 5 * time.Second  // load before the outage
		outage     = 30 * time.Second // kinesalite down
		rate       = 160              // calls per second, so the load spans the outage
	)
	k := testenv.StartKinesalite(t)
	k.CreateStream(t, streamName, 2)

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
	defer models.Close()
	defer bl.Close()

	prod := &gatedProducer{inner: stream.NewKinesisProducer(k.Client(), streamName,
		stream.KinesisProducerOptions{BaseBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, CallTimeout: time.Second}),
		acked: map[string]bool{}}
	em, err := emitter.New(emitter.Config{Producer: prod, SpillDir: filepath.Join(dir, "spill"),
		PutTimeout: time.Second, RedriveInterval: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	reg, err := tenants.OpenRegistry(tenantsPath)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: sdkClient(models.URL), Usage: em, Prices: pricing.Default(), ReloadInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	api := httptest.NewServer(srv)
	defer api.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reader := &streamReader{copies: map[string]int{}}
	readerDone := make(chan struct{})
	go func() { reader.run(ctx, k, streamName); close(readerDone) }()

	// The load: paced so it spans the outage; one call in ten asks for a model
	// the team may not use, a refusal that is metered too.
	var (
		served  sync.Map // request id -> HTTP status
		nServed atomic.Int64
		other   sync.Map // unexpected status -> count
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	ticks := make(chan int)
	go func() {
		defer close(ticks)
		tk := time.NewTicker(time.Second / rate)
		defer tk.Stop()
		for i := 0; i < calls; i++ {
			<-tk.C
			ticks <- i
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ticks {
				model := haiku
				if i%10 == 9 {
					model = "meta.llama3-8b-instruct-v1:0"
				}
				req, _ := http.NewRequest("POST", api.URL+"/invoke_model?model_id="+model,
					strings.NewReader(fmt.Sprintf(`{"inputs": "call %d", "parameters": {"max_new_tokens": 20}}`, i)))
				req.Header.Set("x-api-key", key)
				resp, err := client.Do(req)
				if err != nil {
					other.Store("transport: "+err.Error(), 1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				rid := resp.Header.Get("x-request-id")
				if (resp.StatusCode == 200 || resp.StatusCode == 403) && rid != "" {
					if _, dup := served.LoadOrStore(rid, resp.StatusCode); dup {
						other.Store("request id answered twice: "+rid, 1)
					}
					nServed.Add(1)
				} else {
					other.Store(fmt.Sprintf("status %d (x-request-id %q)", resp.StatusCode, rid), 1)
				}
			}
		}()
	}

	// The outage: close the gate so no Put is in flight, let the reader catch
	// up with everything Kinesis accepted, then kill kinesalite.
	time.Sleep(before)
	prod.gate.Lock()
	acked := prod.ackedIDs()
	for deadline := time.Now().Add(10 * time.Second); reader.has(acked) > 0; {
		if time.Now().After(deadline) {
			prod.gate.Unlock()
			t.Fatalf("reader did not catch up before the outage: %d of %d acknowledged records unread", reader.has(acked), len(acked))
		}
		time.Sleep(20 * time.Millisecond)
	}
	k.Stop()
	prod.gate.Unlock()
	stoppedAt, servedAtStop := time.Now(), nServed.Load()
	time.Sleep(outage)
	servedDuringOutage := nServed.Load() - servedAtStop
	k.Restart()
	k.CreateStream(t, streamName, 2)
	t.Logf("kinesalite down %.1fs; %d calls served before, %d during the outage", time.Since(stoppedAt).Seconds(), servedAtStop, servedDuringOutage)

	wg.Wait()
	loadTime := time.Since(start)

	// Every served call's event reaches the stream once the spill is re-driven.
	var want []string
	served.Range(func(k, _ any) bool { want = append(want, k.(string)); return true })
	redriveStart := time.Now()
	for deadline := time.Now().Add(60 * time.Second); reader.has(want) > 0 || em.Spilled(); {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	drained := time.Since(redriveStart)
	cancel()
	<-readerDone

	var problems []string
	other.Range(func(k, _ any) bool { problems = append(problems, k.(string)); return true })
	sort.Strings(problems)
	if len(problems) > 0 {
		t.Errorf("calls not served as expected (%d kinds), e.g. %v", len(problems), problems[:min(5, len(problems))])
	}
	if len(want) < calls {
		t.Errorf("served %d calls, want %d", len(want), calls)
	}
	if servedDuringOutage == 0 {
		t.Errorf("no call was served while Kinesis was down")
	}
	reader.mu.Lock()
	defer reader.mu.Unlock()
	if len(reader.bad) > 0 {
		t.Errorf("%d records whose partition key is not their request_id or that do not parse, e.g. %q", len(reader.bad), reader.bad[0])
	}
	wantSet := map[string]bool{}
	missing := 0
	for _, id := range want {
		wantSet[id] = true
		if reader.copies[id] == 0 {
			missing++
		}
	}
	extra, dups := 0, 0
	for id, n := range reader.copies {
		if !wantSet[id] {
			extra++
		}
		if n > 1 {
			dups++
		}
	}
	if missing > 0 || extra > 0 {
		t.Errorf("stream vs served calls: %d served calls missing from the stream, %d request ids in the stream that were never served", missing, extra)
	}
	if em.Spilled() {
		t.Errorf("spill not drained")
	}
	testenv.ReportScenario(t, testenv.ScenarioCounts{Scenario: "invoker with Kinesis down", Sent: len(want), Charged: len(want) - missing, Lost: missing, DoubleCounted: extra,
		Faults: fmt.Sprintf("kinesalite stopped %.0f s under %d calls/s; events spilled and re-driven (%d request ids sent twice under the same id, deduplicated downstream)", outage.Seconds(), rate, dups)})
	t.Logf("%d calls served in %.1fs (%d metered refusals); stream holds %d distinct request ids, %d with copies under the same id; spill re-driven %.1fs after the load",
		len(want), loadTime.Seconds(), countStatus(&served, 403), len(reader.copies), dups, drained.Seconds())
}

func countStatus(m *sync.Map, status int) int {
	n := 0
	m.Range(func(_, v any) bool {
		if v.(int) == status {
			n++
		}
		return true
	})
	return n
}
