package reconcile

// Servers started by this test, all on 127.0.0.1: internal/bedrocklocal (Bedrock
// Runtime and its CloudTrail trail files) and the invoke API (invoker.Server)
// in front of it, reached over real HTTP; the embedded file stream and store.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/internal/awshttp"
	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/invoker/tenants"
)

// lossyStream loses every n-th event between the invoker and the stream, as a
// broken pipe would, and remembers which request ids it lost.
type lossyStream struct {
	next stream.Producer
	n    int

	mu   sync.Mutex
	seen int
	lost []string
}

func (l *lossyStream) Put(ctx context.Context, entries []stream.Entry) error {
	var keep []stream.Entry
	l.mu.Lock()
	for _, e := range entries {
		l.seen++
		if l.seen%l.n == 0 {
			l.lost = append(l.lost, e.PartitionKey) // the partition key is the request_id
			continue
		}
		keep = append(keep, e)
	}
	l.mu.Unlock()
	if len(keep) == 0 {
		return nil
	}
	return l.next.Put(ctx, keep)
}

func bedrockClient(url, accessKey string) *bedrockruntime.Client {
	return bedrockruntime.New(bedrockruntime.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
		HTTPClient: awshttp.BufferedBody{}, Credentials: credentials.NewStaticCredentialsProvider(accessKey, "secret", "")})
}

// TestReconcileFindsExactlyTheLostEvents: usage events lost between the invoker
// and the stream, and calls made straight to the model server, are exactly the
// unmetered calls reconcile reports; the direct ones carry their caller.
func TestReconcileFindsExactlyTheLostEvents(t *testing.T) {
	dir := t.TempDir()
	trailDir := filepath.Join(dir, "cloudtrail")
	model, err := bedrocklocal.New(bedrocklocal.Config{TrailDir: trailDir, TrailBatch: 25,
		Users: map[string]string{"AKIAINVOKER000000001": "meter-invoker", "AKIADIRECT0000000001": "data-scientist"}})
	if err != nil {
		t.Fatal(err)
	}
	modelSrv := httptest.NewServer(model)
	defer modelSrv.Close()

	tenantsPath := filepath.Join(dir, "tenants.yaml")
	key, err := tenants.AddTeam(tenantsPath, tenants.TeamSpec{ID: "search", CostCenter: "CC-1", AllowedModels: []string{"anthropic.*", "amazon.*"}})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := tenants.OpenRegistry(tenantsPath)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := stream.OpenFile(filepath.Join(dir, "stream"), stream.FileOptions{Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	lossy := &lossyStream{next: fs, n: 7}
	em, err := emitter.New(emitter.Config{Producer: lossy, SpillDir: filepath.Join(dir, "spill")})
	if err != nil {
		t.Fatal(err)
	}
	api, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: bedrockClient(modelSrv.URL, "AKIAINVOKER000000001"),
		Usage: em, Prices: pricing.Default(), ReloadInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	apiSrv := httptest.NewServer(api)
	defer apiSrv.Close()

	served := map[string]bool{}
	for i := 0; i < 60; i++ {
		model := "anthropic.claude-3-haiku-20240307-v1:0"
		if i%3 == 0 {
			model = "amazon.titan-text-express-v1"
		}
		req, _ := http.NewRequest(http.MethodPost, apiSrv.URL+"/invoke_model?model_id="+model,
			strings.NewReader(fmt.Sprintf(`{"inputs": "question number %d about invoices", "parameters": {"max_tokens": 40}}`, i)))
		req.Header.Set("x-api-key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d: %d", i, resp.StatusCode)
		}
		served[resp.Header.Get("x-request-id")] = true
	}
	// Calls that bypass the invoke API altogether.
	direct := bedrockClient(modelSrv.URL, "AKIADIRECT0000000001")
	var bypassed []string
	for i := 0; i < 3; i++ {
		out, err := direct.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{ModelId: aws.String("amazon.titan-text-express-v1"),
			ContentType: aws.String("application/json"), Body: []byte(fmt.Sprintf(`{"inputText":"unmetered %d"}`, i))})
		if err != nil {
			t.Fatal(err)
		}
		rid, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		bypassed = append(bypassed, rid)
	}
	if err := em.Close(); err != nil {
		t.Fatal(err)
	}
	if err := model.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(lossy.lost) != 60/7 {
		t.Fatalf("lost %d events, want %d", len(lossy.lost), 60/7)
	}

	st, err := store.OpenFile(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mustConsumer(t, collector.Config{Source: fs, Store: st}).Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	day := time.Now().UTC().Format("2006-01-02")
	rep, err := Run(context.Background(), Config{Day: day, Store: st, CloudTrail: "file://" + trailDir,
		Threshold: -1, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	var unmetered []string
	callers := map[string]string{}
	for _, r := range rep.Rows {
		if r.Status == aggregator.ReconcileUnmetered {
			unmetered = append(unmetered, r.RequestID)
			callers[r.RequestID] = r.Caller
		}
	}
	want := append(append([]string(nil), lossy.lost...), bypassed...)
	sort.Strings(want)
	sort.Strings(unmetered)
	if strings.Join(unmetered, ",") != strings.Join(want, ",") {
		t.Fatalf("unmetered %v\nwant exactly the lost and bypassed calls %v", unmetered, want)
	}
	for _, id := range bypassed {
		if !strings.Contains(callers[id], "data-scientist") {
			t.Errorf("bypassing call %s reported with caller %q, want the data-scientist user", id, callers[id])
		}
	}
	for _, id := range lossy.lost {
		if !served[id] || !strings.Contains(callers[id], "meter-invoker") {
			t.Errorf("lost event %s: served %v, caller %q", id, served[id], callers[id])
		}
	}
	if rep.Counts[aggregator.ReconcileMatched] != len(served)-len(lossy.lost) || rep.Counts[aggregator.ReconcileUnconfirmed] != 0 || rep.Counts[aggregator.ReconcileMismatched] != 0 {
		t.Fatalf("counts %v; want %d matched and nothing unconfirmed or mismatched", rep.Counts, len(served)-len(lossy.lost))
	}
	var summary map[string]any
	if err := json.Unmarshal(rep.SummaryJSON(), &summary); err != nil || summary["unmetered"] != float64(len(want)) {
		t.Fatalf("summary.json %s: %v", rep.SummaryJSON(), err)
	}
}

func mustConsumer(t testing.TB, cfg collector.Config) *collector.Consumer {
	t.Helper()
	c, err := collector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
