package invoker_test

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/invoker"
)

// TestHostileModelIDs: a model id no Bedrock model can have (a formula, a
// megabyte of text) is refused with 400 before it becomes a usage event, a
// metric label or a CSV cell; it neither reaches the stream nor stalls it.
func TestHostileModelIDs(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	for _, model := range []string{"=HYPERLINK(\"http://evil\")", "anthropic." + strings.Repeat("x", 1<<20), "anthropic.claude v1", "@SUM(A1)"} {
		r := e.invoke("search", url.QueryEscape(model), nil, `{"inputs": "hi"}`)
		if r.status != 400 || r.errorCode(t) != "bad_model_id" {
			t.Errorf("model %.40q: %d %s", model, r.status, r.body)
		}
	}
	if evs := e.newEvents(t); len(evs) != 0 {
		t.Errorf("hostile model ids were metered: %d events", len(evs))
	}
	// The stream still takes the next call at once.
	if r := e.invoke("search", haiku, nil, `{"inputs": "hi"}`); r.status != 200 {
		t.Fatalf("after hostile calls: %d %s", r.status, r.body)
	}
	e.oneEvent(t)
}

// TestErrorsTellNothingInternal: upstream failures reach the caller as meter's
// own sentence with the request id; the model server's address, the SDK's
// text and AWS's (which can name an account and a role) stay in the log.
func TestErrorsTellNothingInternal(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	host := strings.TrimPrefix(e.models.URL, "http://")
	for _, exc := range []string{"AccessDeniedException", "ThrottlingException", "InternalServerException", "ServiceUnavailableException"} {
		r := e.invoke("search", haiku, nil, `{"inputs": "hi [[meter-inject:`+exc+`]]"}`)
		if r.status < 400 {
			t.Fatalf("%s: %d", exc, r.status)
		}
		for _, leak := range []string{exc, host, "operation error", "api error", "arn:", "You don't have access", "attempts"} {
			if strings.Contains(string(r.body), leak) {
				t.Errorf("%s: the answer %s carries %q", exc, r.body, leak)
			}
		}
	}
	// The model server gone: no address, no dial error.
	e.models.Close()
	r := e.invoke("search", haiku, nil, `{"inputs": "hi"}`)
	if r.status < 500 || strings.Contains(string(r.body), host) || strings.Contains(string(r.body), "dial") {
		t.Errorf("model server down: %d %s", r.status, r.body)
	}
}

// TestSlowClientsAreCutOff: a request that announces a body and never sends
// it, and an idle keep-alive connection, are closed by the server's limits.
func TestSlowClientsAreCutOff(t *testing.T) {
	hs := invoker.HTTPServer(http.NotFoundHandler(), nil)
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.IdleTimeout <= 0 || hs.MaxHeaderBytes <= 0 {
		t.Fatalf("limits %+v", hs)
	}
	// The same limits, shortened so the test is quick.
	hs.ReadTimeout, hs.IdleTimeout = 300*time.Millisecond, 300*time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	defer hs.Close()
	for name, req := range map[string]string{
		"body announced, never sent": "POST /invoke_model HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
		"idle keep-alive":            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(req))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, c) // returns when the server closes the connection
		c.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: the server kept the connection open", name)
		}
	}
}
