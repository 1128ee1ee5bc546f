package invoker_test

import (
	"net/url"
	"strings"
	"testing"
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
