package awshttp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBufferedBodySurvivesEarlyClose: the caller closes its body as soon as
// Do returns (as the SDK does for streams); the request still arrives whole.
func TestBufferedBodySurvivesEarlyClose(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
	}))
	defer srv.Close()
	body := io.NopCloser(strings.NewReader(`{"inputText":"hello"}`))
	req, _ := http.NewRequest(http.MethodPost, srv.URL, body)
	resp, err := BufferedBody{}.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got != `{"inputText":"hello"}` || req.ContentLength != int64(len(got)) {
		t.Fatalf("server got %q, content length %d", got, req.ContentLength)
	}
}
