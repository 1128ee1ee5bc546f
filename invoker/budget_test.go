package invoker_test

// Budget and quota enforcement through the HTTP API, against the local model
// server and the embedded file stream (see harness_test.go).

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

// opus is served by the local model server but has no row in the shipped price file.
const opus = "anthropic.claude-3-opus-20240229-v1:0"

func TestBudgetRefusesModelsWithoutAPrice(t *testing.T) {
	e := newEnv(t, envOpts{teams: []tenants.TeamSpec{
		{ID: "capped", CostCenter: "CC-1", AllowedModels: []string{"anthropic.*", "amazon.titan-image-*"}, MonthlyBudgetUSD: "10"},
		{ID: "open", AllowedModels: []string{"anthropic.*"}},
	}})
	body := `{"inputs": "Name three rivers in Europe."}`

	r := e.invoke("capped", opus, nil, body)
	if r.status != http.StatusServiceUnavailable || r.errorCode(t) != "budget_unenforceable" || !strings.Contains(string(r.body), opus) {
		t.Fatalf("unpriced model under a budget: %d %s", r.status, r.body)
	}
	ev := e.oneEvent(t)
	if ev.Status != schemas.StatusDenied || ev.TeamID != "capped" || ev.ModelID != opus || ev.InputTokens != 0 || ev.OutputTokens != 0 {
		t.Fatalf("refusal metered as %+v", ev)
	}
	if e.models.answer(ev.RequestID) != nil || r.header.Get("x-request-id") != ev.RequestID {
		t.Fatalf("refused call reached the model, or x-request-id %q is not the event's %q", r.header.Get("x-request-id"), ev.RequestID)
	}

	// The same refusal on the Converse routes.
	for _, route := range []string{"converse", "converse-stream"} {
		r = e.do("POST", "/model/"+opus+"/"+route, map[string]string{"x-api-key": e.keys["capped"]}, converseBody)
		if r.status != http.StatusServiceUnavailable || r.errorCode(t) != "budget_unenforceable" {
			t.Fatalf("%s: %d %s", route, r.status, r.body)
		}
		if ev := e.oneEvent(t); ev.Status != schemas.StatusDenied {
			t.Fatalf("%s: refusal metered as %+v", route, ev)
		}
	}

	// Priced models still work under the budget, and count against it.
	if r = e.invoke("capped", haiku, nil, body); r.status != 200 {
		t.Fatalf("priced model: %d %s", r.status, r.body)
	}
	e.oneEvent(t)
	month := time.Now().UTC().Format("2006-01")
	if !e.limits.Spent("capped", month).IsPositive() {
		t.Fatalf("a priced call under a budget counted %s USD", e.limits.Spent("capped", month))
	}
	// An image model is priced per image of the requested kind.
	spent := e.limits.Spent("capped", month)
	if r = e.invoke("capped", "amazon.titan-image-generator-v1", nil, `{"inputs": "a lighthouse"}`); r.status != 200 {
		t.Fatalf("priced image model: %d %s", r.status, r.body)
	}
	if ev := e.oneEvent(t); ev.ImageCount != 1 || !e.limits.Spent("capped", month).Sub(spent).Equal(decimal.RequireFromString("0.01")) {
		t.Fatalf("image call %+v counted %s USD", ev, e.limits.Spent("capped", month).Sub(spent))
	}
	// A team without a budget needs no price.
	if r = e.invoke("open", opus, nil, body); r.status != 200 {
		t.Fatalf("unpriced model without a budget: %d %s", r.status, r.body)
	}
	e.oneEvent(t)
}

// TestFirstCallOfThePeriodDoesNotBlockTheTeam holds the first call of a team
// with a daily token quota and a budget inside the model, and makes more calls
// meanwhile: they are admitted on a default reservation, not refused with 429.
func TestFirstCallOfThePeriodDoesNotBlockTheTeam(t *testing.T) {
	var g gate
	e := newEnv(t, envOpts{
		teams: []tenants.TeamSpec{
			{ID: "quota", AllowedModels: []string{"anthropic.*"}, Quotas: &tenants.Quotas{DailyTokens: 1_000_000}},
			{ID: "budget", AllowedModels: []string{"anthropic.*"}, MonthlyBudgetUSD: "100"},
		},
		onModelCall: g.hold,
	})
	body := `{"inputs": "Name three rivers in Europe."}`
	for _, team := range []string{"quota", "budget"} {
		t.Run(team, func(t *testing.T) {
			entered, release := g.arm()
			first := make(chan response, 1)
			go func() { first <- e.invoke(team, haiku, nil, body) }()
			<-entered
			for i := 0; i < 3; i++ {
				if r := e.invoke(team, haiku, nil, body); r.status != 200 {
					close(release)
					t.Fatalf("call %d while the first is in flight: %d %s", i+2, r.status, r.body)
				}
			}
			close(release)
			if r := <-first; r.status != 200 {
				t.Fatalf("first call: %d %s", r.status, r.body)
			}
			for _, ev := range e.newEvents(t) {
				if ev.Status != schemas.StatusSuccess {
					t.Fatalf("metered %+v", ev)
				}
			}
		})
	}
}

// gate holds the next model call after arm until release is closed.
type gate struct {
	mu               sync.Mutex
	entered, release chan struct{}
}

func (g *gate) arm() (entered chan struct{}, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	return g.entered, g.release
}

func (g *gate) hold(*http.Request) {
	g.mu.Lock()
	entered, release := g.entered, g.release
	g.entered, g.release = nil, nil
	g.mu.Unlock()
	if entered != nil {
		close(entered)
		<-release
	}
}

// TestCallAcrossMidnightCountsInTheNewDay: a call admitted before midnight and
// completed after it counts against the new day's quota, like the chargeback
// counts it on the day of its event time.
func TestCallAcrossMidnightCountsInTheNewDay(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2026, 3, 31, 23, 59, 59, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	e := newEnv(t, envOpts{
		// Each call is bound to 1,258 tokens (its 130-byte native body, 128
		// of overhead, max_tokens 1,000): the quota fits one, and not another
		// once the first has used its 17 or more.
		teams: []tenants.TeamSpec{{ID: "quota", AllowedModels: []string{"anthropic.*"}, Quotas: &tenants.Quotas{DailyTokens: 1265}}},
		now:   now,
		onModelCall: func(*http.Request) { // midnight passes while the model thinks
			mu.Lock()
			clock = time.Date(2026, 4, 1, 0, 0, 1, 0, time.UTC)
			mu.Unlock()
		},
	})
	body := `{"inputs": "Name three rivers in Europe.", "parameters": {"max_tokens": 1000}}`
	if r := e.invoke("quota", haiku, nil, body); r.status != 200 {
		t.Fatalf("first call: %d %s", r.status, r.body)
	}
	if ev := e.oneEvent(t); ev.Day() != "2026-04-01" || ev.InputTokens == 0 {
		t.Fatalf("event %+v", ev)
	}
	r := e.invoke("quota", haiku, nil, body)
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "daily_token_quota" {
		t.Fatalf("the new day's quota is used up by the call that crossed midnight; got %d %s", r.status, r.body)
	}
}

// TestUnpricedDetailCountsTheReservation: a call whose model has a price but
// whose event carries something that price lacks (cache tokens here) still
// counts against the budget, at its reservation, never as free.
func TestUnpricedDetailCountsTheReservation(t *testing.T) {
	e := newEnv(t, envOpts{teams: []tenants.TeamSpec{{ID: "capped", AllowedModels: []string{"anthropic.*"}, MonthlyBudgetUSD: "10"}}})
	body := mustJSON(map[string]any{
		"system":   []any{map[string]any{"text": strings.Repeat("You answer in one paragraph. ", 50)}, map[string]any{"cachePoint": map[string]any{"type": "default"}}},
		"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"text": "Explain tides to a child"}}}},
	})
	r := e.do("POST", "/model/"+haiku+"/converse", map[string]string{"x-api-key": e.keys["capped"]}, body)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	ev := e.oneEvent(t)
	if ev.CacheWriteInputTokens == 0 {
		t.Fatalf("the model server wrote no cache: %+v", ev)
	}
	// The price of the call's bound: haiku's maximum output of 4,096 tokens
	// at 0.00125 per 1k, and the body's bytes plus 128 as input tokens at
	// 0.00025 per 1k.
	month := ev.Timestamp.UTC().Format("2006-01")
	want := decimal.NewFromInt(4096).Mul(decimal.RequireFromString("0.00125")).
		Add(decimal.NewFromInt(int64(len(body)) + 128).Mul(decimal.RequireFromString("0.00025"))).Shift(-3)
	if got := e.limits.Spent("capped", month); !got.Equal(want) {
		t.Fatalf("spent %s, want the reservation %s", got, want)
	}
}
