package collector_test

// TestS3FailingWritesLoseNothing: the collector and the compaction write to
// S3 (versitygw on 127.0.0.1) through a fault proxy that refuses a share of
// the writes in S3's own shape (503 SlowDown), and fails some more after the
// object was written (500 InternalError: the write landed, the client does
// not know). The pipeline is rerun as an operator (or Lambda) would after
// each failure; in the end the chargeback equals the truth to the cent, every
// event is in the raw table exactly once: 0 lost, 0 double-counted.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/schemas"
)

// faultProxy forwards to an S3 server and fails a share of the writes.
type faultProxy struct {
	mu               sync.Mutex
	rng              *rand.Rand
	refuse, lateFail float64 // shares of writes refused before, and failed after, reaching the server
	writes, refused  int
	failedAfter      int
	proxy            *httputil.ReverseProxy
}

func (f *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost && r.Method != http.MethodDelete {
		f.proxy.ServeHTTP(w, r)
		return
	}
	f.mu.Lock()
	f.writes++
	p := f.rng.Float64()
	refuse, late := p < f.refuse, p >= f.refuse && p < f.refuse+f.lateFail
	if refuse {
		f.refused++
	}
	if late {
		f.failedAfter++
	}
	f.mu.Unlock()
	s3Error := func(status int, code, msg string) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>fault</RequestId></Error>`, code, msg)
	}
	switch {
	case refuse:
		s3Error(http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
	case late:
		rec := httptest.NewRecorder()
		f.proxy.ServeHTTP(rec, r)
		s3Error(http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
	default:
		f.proxy.ServeHTTP(w, r)
	}
}

func TestS3FailingWritesLoseNothing(t *testing.T) {
	gw := testenv.StartVersityGW(t)
	target, _ := url.Parse(gw.Endpoint())
	fp := &faultProxy{rng: rand.New(rand.NewPCG(16, 16)), refuse: 0.10, lateFail: 0.08, proxy: httputil.NewSingleHostReverseProxy(target)}
	proxy := httptest.NewServer(fp)
	defer proxy.Close()
	client := s3.New(s3.Options{Region: testenv.LocalRegion, BaseEndpoint: aws.String(proxy.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.LocalAccessKey, testenv.LocalSecretKey, "")})
	st := store.NewS3(client, gw.Bucket(), "meter", store.S3Options{})

	// The short form writes for some 15 s; METER_FAULTS_FULL=1 (go run
	// ./bench/faults sets it) keeps S3 failing for about a minute.
	requests := 4000
	if os.Getenv("METER_FAULTS_FULL") != "" {
		requests = 20000
	}
	u := generate(t, genOptions{requests: requests, days: usageDays, dupRate: 0.03, dupSpan: 200, poison: true, seed: 16})
	fs, err := stream.OpenFile(filepath.Join(t.TempDir(), "stream"), stream.FileOptions{Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	putAll(t, fs, u.records)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	// Rerun after each failure, as a restarted process or a retried Lambda does.
	runs, failures := 0, 0
	for ; runs < 100; runs++ {
		c := mustConsumer(t, consumerConfig(fs, st, 150))
		if _, err := c.Run(ctx, true); err == nil {
			break
		} else if !strings.Contains(err.Error(), "SlowDown") && !strings.Contains(err.Error(), "InternalError") && !strings.Contains(err.Error(), "status code") {
			t.Fatalf("run %d failed for another reason: %v", runs, err)
		}
		failures++
	}
	for _, d := range usageDays {
		for i := 0; ; i++ {
			_, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: d, Prices: pricingDefault(), Force: true, Now: runNow, TempDir: t.TempDir()})
			if err == nil {
				break
			}
			if i == 50 {
				t.Fatalf("compacting %s: %v", d, err)
			}
			failures++
		}
	}
	fp.mu.Lock()
	writes, refused, failedAfter := fp.writes, fp.refused, fp.failedAfter
	fp.mu.Unlock()
	if refused == 0 || failedAfter == 0 {
		t.Fatalf("the proxy injected %d refusals and %d late failures in %d writes", refused, failedAfter, writes)
	}

	// Charged: the chargeback from S3 (read directly, not through the faults) equals the truth.
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
	counts := countScenario("S3 failing writes", want, got)
	counts.Faults = fmt.Sprintf("%d of %d S3 writes refused (503 SlowDown), %d failed after landing (500 InternalError), over %.0f s; %d failed runs retried",
		refused, writes, failedAfter, time.Since(began).Seconds(), failures)
	testenv.ReportScenario(t, counts)
	// Lost and double-counted: every event is in the raw table exactly once.
	rows := 0
	for _, f := range parquetFiles(t, filepath.Join(gw.Dir(), gw.Bucket(), "meter"), "events") {
		r, err := parquetio.ReadFile[schemas.EventRow](f)
		if err != nil {
			t.Fatal(err)
		}
		rows += len(r)
	}
	if rows != len(u.events) {
		t.Errorf("raw events in S3: %d rows for %d events sent", rows, len(u.events))
	}
	t.Logf("%d writes: %d refused, %d failed after landing; %d consumer runs, %d failed runs; %d events sent, %d in the raw table, chargeback exact",
		writes, refused, failedAfter, runs+1, failures, len(u.events), rows)
}
