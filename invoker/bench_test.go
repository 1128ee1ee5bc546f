package invoker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

type discardSink struct{}

func (discardSink) Emit(context.Context, *schemas.Event) error { return nil }

// BenchmarkInvokeHandler measures the invoker's own CPU per call: the seed
// route through the handler, the real SDK client to the local model server
// over loopback, usage events discarded.
func BenchmarkInvokeHandler(b *testing.B) {
	bl, err := bedrocklocal.New(bedrocklocal.Config{})
	if err != nil {
		b.Fatal(err)
	}
	model := httptest.NewServer(bl)
	defer model.Close()
	tenantsPath := filepath.Join(b.TempDir(), "tenants.yaml")
	key, err := tenants.AddTeam(tenantsPath, tenants.TeamSpec{ID: "a", AllowedModels: []string{"anthropic.*"}})
	if err != nil {
		b.Fatal(err)
	}
	reg, err := tenants.OpenRegistry(tenantsPath)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: sdkClient(model.URL), Usage: discardSink{}, Prices: pricing.Default(), ReloadInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	body := `{"inputs": "Summarise the quarterly revenue report for the board", "parameters": {"max_tokens": 64}}`
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPost, "/invoke_model?model_id=anthropic.claude-3-haiku-20240307-v1:0", strings.NewReader(body))
		req.Header.Set("x-api-key", key)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
