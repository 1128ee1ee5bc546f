package main

// The Lambda path's added latency: the invoker's function under the Lambda
// runtime interface emulator (the real Runtime API between emulator and
// function), beside a direct call to the model and beside a trivial function
// doing the least a metering proxy can (testdata/trivial), calls interleaved
// one at a time so the three see the same machine. The emulator's own cost
// is in both functions' figures; the invoker's over the trivial function's is
// what meter adds in Lambda. See BENCHMARKS.md for the command.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/invoker/tenants"
)

func BenchmarkLambdaPath(b *testing.B) {
	dir := b.TempDir()
	shm, err := os.MkdirTemp("/dev/shm", "meter-lambda-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(shm)
	tenantsPath := filepath.Join(dir, "tenants.yaml")
	key, err := tenants.AddTeam(tenantsPath, tenants.TeamSpec{ID: "search", CostCenter: "CC-100", AllowedModels: []string{"anthropic.*"}})
	if err != nil {
		b.Fatal(err)
	}
	bl, err := bedrocklocal.New(bedrocklocal.Config{})
	if err != nil {
		b.Fatal(err)
	}
	models := httptest.NewServer(bl)
	defer func() { models.Close(); bl.Close() }()

	invokerFn := testenv.StartRIE(b, testenv.BuildBootstrap(b, "."), map[string]string{
		"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": models.URL, "AWS_REGION": "us-east-1",
		"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "local", "AWS_EC2_METADATA_DISABLED": "true",
		"METER_TENANTS": tenantsPath, "METER_STREAM": "file://" + filepath.Join(shm, "stream"), "METER_SPILL": "file://" + filepath.Join(shm, "spill")})
	trivialFn := testenv.StartRIE(b, testenv.BuildBootstrap(b, "./testdata/trivial"), map[string]string{
		"MODEL_URL": models.URL, "USAGE_FILE": filepath.Join(shm, "trivial-usage.jsonl")})

	payload, err := os.ReadFile(testenv.Testdata("lambda", "apigw-invoke-model.json"))
	if err != nil {
		b.Fatal(err)
	}
	payload = bytes.ReplaceAll(payload, []byte("${API_KEY}"), []byte(key))
	native := []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":60,"messages":[{"role":"user","content":"Explain tides to a child"}]}`)
	direct := func() error {
		resp, err := http.Post(models.URL+"/model/anthropic.claude-3-haiku-20240307-v1:0/invoke", "application/json", bytes.NewReader(native))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	ctx := context.Background()
	targets := []struct {
		name string
		call func() error
		lats []time.Duration
	}{
		{name: "direct", call: direct},
		{name: "trivial", call: func() error { _, err := trivialFn.Invoke(ctx, payload); return err }},
		{name: "invoker", call: func() error {
			answer, err := invokerFn.Invoke(ctx, payload)
			if err == nil && !bytes.Contains(answer, []byte(`"statusCode":200`)) {
				b.Fatalf("the invoker function answered %s", answer)
			}
			return err
		}},
	}
	for i := range targets { // cold starts and connections out of the way
		for j := 0; j < 20; j++ {
			if err := targets[i].call(); err != nil {
				b.Fatalf("%s: %v", targets[i].name, err)
			}
		}
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := range targets {
			t := time.Now()
			if err := targets[i].call(); err != nil {
				b.Fatalf("%s: %v", targets[i].name, err)
			}
			targets[i].lats = append(targets[i].lats, time.Since(t))
		}
	}
	b.StopTimer()
	pct := func(l []time.Duration, q int) float64 {
		s := append([]time.Duration(nil), l...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return float64(s[min(len(s)-1, len(s)*q/100)]) / float64(time.Millisecond)
	}
	d, tr, inv := targets[0].lats, targets[1].lats, targets[2].lats
	b.ReportMetric(pct(d, 50), "direct-p50-ms")
	b.ReportMetric(pct(tr, 50)-pct(d, 50), "trivial-added-p50-ms")
	b.ReportMetric(pct(inv, 50)-pct(d, 50), "invoker-added-p50-ms")
	b.ReportMetric(pct(inv, 50)-pct(tr, 50), "invoker-over-trivial-p50-ms")
	b.ReportMetric(pct(tr, 99)-pct(d, 99), "trivial-added-p99-ms")
	b.ReportMetric(pct(inv, 99)-pct(d, 99), "invoker-added-p99-ms")
	b.ReportMetric(0, "ns/op")
}
