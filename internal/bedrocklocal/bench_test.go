package bedrocklocal

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkInvokeModel measures the server's own cost of one InvokeModel call
// (no network), the floor under any latency comparison that uses it.
func BenchmarkInvokeModel(b *testing.B) {
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":200,"messages":[{"role":"user","content":"Summarise the chargeback for team alpha"}]}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke", strings.NewReader(body))
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}
