package collector_test

// TestNetworkFaultsLoseNothing: the producer and the collector speak to
// Kinesis (kinesalite) and S3 (versitygw) on 127.0.0.1 through Toxiproxy
// (toxiproxy-server: TCP latency, connection resets, stalled connections,
// a bandwidth limit) and, for Kinesis, through an HTTP fault proxy that adds
// what TCP cannot say: bursts of throttling in Kinesis' own shape, whole
// calls refused (400 ProvisionedThroughputExceededException) and PutRecords
// calls that take some records and refuse others (FailedRecordCount). The
// pipeline is rerun after each failure as a restart or a Lambda retry does;
// in the end the chargeback equals the truth: 0 lost, 0 double-counted.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/schemas"
)

// kinesisThrottler forwards Kinesis calls and, while bursting, refuses a
// share of PutRecords and GetRecords calls whole, or (PutRecords) forwards
// only some of the records and reports the others throttled, as Kinesis does
// when a shard is over its write limit.
type kinesisThrottler struct {
	mu                            sync.Mutex
	rng                           *rand.Rand
	bursting                      bool
	refusedCalls, refusedRecords  int
	putCalls, getCalls, partCalls int
	proxy                         *httputil.ReverseProxy
}

const throttledMessage = "Rate exceeded for shard shardId-000000000000 in stream usage under account 000000000000."

func (k *kinesisThrottler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	put, get := strings.HasSuffix(target, ".PutRecords"), strings.HasSuffix(target, ".GetRecords")
	k.mu.Lock()
	p := k.rng.Float64()
	refuse := k.bursting && (put || get) && p < 0.3
	partial := k.bursting && put && !refuse && p < 0.6
	switch {
	case put:
		k.putCalls++
	case get:
		k.getCalls++
	}
	if refuse {
		k.refusedCalls++
	}
	k.mu.Unlock()
	if refuse {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":"ProvisionedThroughputExceededException","message":%q}`, throttledMessage)
		return
	}
	if !partial {
		k.proxy.ServeHTTP(w, r)
		return
	}
	k.partialPut(w, r)
}

// partialPut forwards a random part of a PutRecords call's records and
// answers for all of them in order: the forwarded ones as Kinesis answered,
// the others with ErrorCode ProvisionedThroughputExceededException.
func (k *kinesisThrottler) partialPut(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var in map[string]json.RawMessage
	var records []json.RawMessage
	if json.Unmarshal(body, &in) != nil || json.Unmarshal(in["Records"], &records) != nil || len(records) < 2 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		k.proxy.ServeHTTP(w, r)
		return
	}
	k.mu.Lock()
	keep := make([]bool, len(records))
	var forward []json.RawMessage
	for i := range records {
		keep[i] = k.rng.Float64() < 0.5
		if keep[i] {
			forward = append(forward, records[i])
		} else {
			k.refusedRecords++
		}
	}
	k.partCalls++
	k.mu.Unlock()
	type result struct {
		SequenceNumber string `json:",omitempty"`
		ShardId        string `json:",omitempty"`
		ErrorCode      string `json:",omitempty"`
		ErrorMessage   string `json:",omitempty"`
	}
	var got []result
	if len(forward) > 0 {
		in["Records"], _ = json.Marshal(forward)
		fwd, _ := json.Marshal(in)
		r2 := r.Clone(r.Context())
		r2.Body, r2.ContentLength = io.NopCloser(bytes.NewReader(fwd)), int64(len(fwd))
		r2.Header.Del("Content-Length")
		rec := httptest.NewRecorder()
		k.proxy.ServeHTTP(rec, r2)
		if rec.Code != http.StatusOK {
			for h, v := range rec.Header() {
				w.Header()[h] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		var out struct{ Records []result }
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || len(out.Records) != len(forward) {
			http.Error(w, "bad upstream answer", http.StatusInternalServerError)
			return
		}
		got = out.Records
	}
	results, failed := make([]result, len(records)), 0
	for i := range records {
		if keep[i] {
			results[i], got = got[0], got[1:]
			if results[i].ErrorCode != "" {
				failed++
			}
			continue
		}
		results[i] = result{ErrorCode: "ProvisionedThroughputExceededException", ErrorMessage: throttledMessage}
		failed++
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(map[string]any{"FailedRecordCount": failed, "Records": results})
}

func TestNetworkFaultsLoseNothing(t *testing.T) {
	ks := testenv.StartKinesalite(t)
	gw := testenv.StartVersityGW(t)
	tp := testenv.StartToxiproxy(t)
	ks.CreateStream(t, "usage", 2)
	kinesisAddr := tp.Proxy(t, "kinesis", strings.TrimPrefix(ks.Endpoint(), "http://"))
	s3Addr := tp.Proxy(t, "s3", strings.TrimPrefix(gw.Endpoint(), "http://"))
	throttler := &kinesisThrottler{rng: rand.New(rand.NewPCG(21, 21)),
		proxy: httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: kinesisAddr})}
	front := httptest.NewServer(throttler)
	defer front.Close()

	// Clients with short call deadlines, so a stalled connection fails a
	// call instead of holding it.
	httpClient := &http.Client{Timeout: 3 * time.Second}
	kc := kinesis.New(kinesis.Options{Region: testenv.LocalRegion, BaseEndpoint: aws.String(front.URL), HTTPClient: httpClient,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.LocalAccessKey, testenv.LocalSecretKey, "")})
	s3c := s3.New(s3.Options{Region: testenv.LocalRegion, BaseEndpoint: aws.String("http://" + s3Addr), UsePathStyle: true, HTTPClient: httpClient,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.LocalAccessKey, testenv.LocalSecretKey, "")})
	st := store.NewS3(s3c, gw.Bucket(), "meter", store.S3Options{})

	u := generate(t, genOptions{requests: 3000, days: usageDays, dupRate: 0.03, dupSpan: 30, seed: 21})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Faults for the whole run: latency on every link, some connections reset.
	for _, proxy := range []string{"kinesis", "s3"} {
		tp.AddToxic(t, proxy, testenv.Toxic{Name: "latency", Type: "latency", Stream: "downstream", Toxicity: 1,
			Attributes: map[string]int{"latency": 15, "jitter": 10}})
		tp.AddToxic(t, proxy, testenv.Toxic{Name: "resets", Type: "reset_peer", Stream: "upstream", Toxicity: 0.05,
			Attributes: map[string]int{"timeout": 50}})
	}
	throttler.mu.Lock()
	throttler.bursting = true
	throttler.mu.Unlock()

	// Produce through the faults, retrying a batch the producer gives up on
	// as the emitter's re-driver would (the same records, the same keys).
	p := stream.NewKinesisProducer(kc, "usage", stream.KinesisProducerOptions{MaxAttempts: 4, BaseBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond, CallTimeout: 3 * time.Second})
	putFailures := 0
	for i := 0; i < len(u.records); i += 250 {
		for attempt := 0; ; attempt++ {
			if err := p.Put(ctx, u.records[i:min(i+250, len(u.records))]); err == nil {
				break
			} else if attempt == 30 {
				t.Fatalf("putting records %d..: %v", i, err)
			}
			putFailures++
		}
	}

	// Consume and compact through the faults, with a stalled S3 for a moment
	// and a slow link to it; rerun after each failure.
	stall := make(chan struct{})
	go func() {
		defer close(stall)
		time.Sleep(500 * time.Millisecond)
		tp.AddToxic(t, "s3", testenv.Toxic{Name: "stall", Type: "timeout", Stream: "upstream", Toxicity: 1, Attributes: map[string]int{"timeout": 1000}})
		time.Sleep(1500 * time.Millisecond)
		tp.RemoveToxic(t, "s3", "stall")
		tp.AddToxic(t, "s3", testenv.Toxic{Name: "slow", Type: "bandwidth", Stream: "upstream", Toxicity: 1, Attributes: map[string]int{"rate": 256}})
	}()
	src, err := stream.OpenKinesisWithOptions(ctx, kc, "usage", stream.KinesisSourceOptions{MinPollInterval: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond, CallTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runs, failures := 0, 0
	for ; ; runs++ {
		if runs == 60 {
			t.Fatalf("the collector did not finish in %d runs", runs)
		}
		rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
		_, err := mustConsumer(t, consumerConfig(src, st, 400)).Run(rctx, true)
		rcancel()
		if err == nil {
			break
		}
		failures++
	}
	<-stall
	for _, d := range usageDays {
		for i := 0; ; i++ {
			_, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: d, Prices: pricingDefault(), Force: true, Now: runNow, TempDir: t.TempDir()})
			if err == nil {
				break
			}
			if i == 30 {
				t.Fatalf("compacting %s: %v", d, err)
			}
			failures++
		}
	}
	throttler.mu.Lock()
	puts, gets, refused, partial, refusedRecords := throttler.putCalls, throttler.getCalls, throttler.refusedCalls, throttler.partCalls, throttler.refusedRecords
	throttler.mu.Unlock()
	if refused == 0 || refusedRecords == 0 {
		t.Fatalf("the throttler refused %d calls and %d records", refused, refusedRecords)
	}

	// Charged: the chargeback read from S3 directly, not through the faults.
	direct := store.NewS3(gw.Client(), gw.Bucket(), "meter", store.S3Options{})
	want := u.chargeback()
	got := map[chargeKey]charge{}
	for _, d := range usageDays {
		day := parseChargeback(t, getObject(t, direct, schemas.ChargebackCSVKey(d)))
		compareChargeback(t, d, day, want)
		for k, c := range day {
			got[k] = c
		}
	}
	counts := countScenario("Kinesis and S3 network faults", want, got)
	counts.Faults = fmt.Sprintf("TCP latency and resets on both links, S3 stalled then slowed; %d of %d Kinesis calls refused whole, %d PutRecords partly (%d records refused); %d producer batches and %d collector/compaction runs failed and were retried",
		refused, puts+gets, partial, refusedRecords, putFailures, failures)
	testenv.ReportScenario(t, counts)
}

// countScenario compares a chargeback with the truth as requests: sent is
// every distinct request, charged every request the chargeback counts, lost
// and double-counted the shortfall and excess per row.
func countScenario(name string, want, got map[chargeKey]charge) testenv.ScenarioCounts {
	n := func(c charge) int { return int(c.invocations + c.denied + c.throttled + c.errors) }
	sc := testenv.ScenarioCounts{Scenario: name}
	for k, w := range want {
		sc.Sent += n(w)
		if d := n(w) - n(got[k]); d > 0 {
			sc.Lost += d
		}
	}
	for k, g := range got {
		sc.Charged += n(g)
		if d := n(g) - n(want[k]); d > 0 {
			sc.DoubleCounted += d
		}
	}
	return sc
}
