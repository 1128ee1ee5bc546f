package invoker_test

// A caller cannot outrun its team's limits by choosing how large its calls
// are: one tiny call, then 40 large calls at once, against a daily token quota
// and against a monthly budget, in one process with in-memory limits. The
// local model server (harness_test.go) holds every call 50 ms, so the large
// calls are all in flight together.

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

func TestCallerCannotOutrunTheLimits(t *testing.T) {
	const sonnet = "anthropic.claude-3-5-sonnet-20240620-v1:0"
	quota := int64(20_000)
	budget := decimal.RequireFromString("0.10")
	e := newEnv(t, envOpts{
		teams: []tenants.TeamSpec{
			{ID: "tokens", AllowedModels: []string{"anthropic.*"}, Quotas: &tenants.Quotas{DailyTokens: quota}},
			{ID: "money", AllowedModels: []string{"anthropic.*"}, MonthlyBudgetUSD: budget.String()},
			// The report that opened this: a 2,000-token quota, where 4 such
			// calls used to be admitted (6,013 tokens).
			{ID: "small", AllowedModels: []string{"anthropic.*"}, Quotas: &tenants.Quotas{DailyTokens: 2000}},
		},
		model: bedrocklocal.Config{Latency: 50 * time.Millisecond},
	})
	// A large call: 2,600 words of prompt (2,600 input tokens on the local
	// model) and up to 600 output tokens.
	large := mustJSON(map[string]any{
		"messages":        []any{map[string]any{"role": "user", "content": []any{map[string]any{"text": strings.Repeat("tide ", 2600)}}}},
		"inferenceConfig": map[string]any{"maxTokens": 600},
	})
	tiny := mustJSON(map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"text": "Hi"}}}},
		"inferenceConfig": map[string]any{"maxTokens": 5}})
	for _, team := range []string{"tokens", "money", "small"} {
		t.Run(team, func(t *testing.T) {
			call := func(body string) response {
				return e.do("POST", "/model/"+sonnet+"/converse", map[string]string{"x-api-key": e.keys[team]}, body)
			}
			if r := call(tiny); r.status != 200 {
				t.Fatalf("tiny call: %d %s", r.status, r.body)
			}
			var wg sync.WaitGroup
			results := make([]response, 40)
			for i := range results {
				wg.Add(1)
				go func() { defer wg.Done(); results[i] = call(large) }()
			}
			wg.Wait()
			admitted, refused := 0, 0
			for _, r := range results {
				switch r.status {
				case 200:
					admitted++
				case http.StatusTooManyRequests:
					refused++
					code := r.errorCode(t)
					if (team != "money" && code != "daily_token_quota") || (team == "money" && code != "monthly_budget") ||
						!strings.Contains(string(r.body), "left") || r.header.Get("Retry-After") == "" {
						t.Fatalf("refusal %s", r.body)
					}
				default:
					t.Fatalf("%d %s", r.status, r.body)
				}
			}
			var tokens int64
			cost := decimal.Zero
			for _, ev := range e.newEvents(t) {
				if ev.Status != schemas.StatusSuccess {
					continue
				}
				tokens += ev.InputTokens + ev.OutputTokens
				cost = cost.Add(decimal.NewFromInt(ev.InputTokens).Mul(decimal.RequireFromString("0.003")).
					Add(decimal.NewFromInt(ev.OutputTokens).Mul(decimal.RequireFromString("0.015"))).Shift(-3))
			}
			t.Logf("%s: %d of 40 large calls admitted, %d refused; %d tokens, %s USD used", team, admitted, refused, tokens, cost)
			if team != "small" && (admitted == 0 || refused == 0) {
				t.Fatalf("admitted %d, refused %d: the limit should fit some large calls, not all", admitted, refused)
			}
			switch team {
			case "small":
				// No large call fits at all: each may use more than the quota.
				if admitted != 0 || tokens > 2000 {
					t.Fatalf("admitted %d large calls, %d tokens used of 2,000", admitted, tokens)
				}
			case "tokens":
				if tokens > quota {
					t.Fatalf("admitted calls used %d tokens of a quota of %d", tokens, quota)
				}
			case "money":
				month := time.Now().UTC().Format("2006-01")
				if cost.GreaterThan(budget) || !e.limits.Spent("money", month).Equal(cost) {
					t.Fatalf("admitted calls cost %s of a budget of %s (limits count %s)", cost, budget, e.limits.Spent("money", month))
				}
			}
		})
	}
}
