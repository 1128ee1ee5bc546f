package invoker

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

type nopSink struct{}

func (nopSink) Emit(context.Context, *schemas.Event) error { return nil }

// BenchmarkCallMetrics is the metrics work one answered call adds (its model
// label, the calls counter, the two latency histograms), to hold against
// BenchmarkInvokeHandler's CPU per call in the same run (BENCHMARKS.md).
func BenchmarkCallMetrics(b *testing.B) {
	reg, err := tenants.NewRegistry(tenants.File{Teams: []tenants.TeamSpec{{ID: "a", AllowedModels: []string{"anthropic.*"}}}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{Tenants: reg, Bedrock: &bedrockruntime.Client{}, Usage: nopSink{}, Prices: pricing.Default(), ReloadInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	c := &call{op: "InvokeModel", modelID: "anthropic.claude-3-haiku-20240307-v1:0", team: reg.Team("a"), begun: time.Now(), latency: time.Millisecond}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.count(c, schemas.StatusSuccess)
	}
}
