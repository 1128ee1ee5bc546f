package invoker

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/shopspring/decimal"
)

// Limits decides whether a team may make one more model call, and counts what
// admitted calls used. Admission is checked before the call and usage counted
// after it; the gap between the two is covered by reservations, so concurrent
// calls cannot all slip under a quota or budget at once.
//
// MemoryLimits is the single-process implementation; a shared backend
// (dynamodb://TABLE) implements the same two methods for a fleet of invokers.
type Limits interface {
	// Admit admits one call of team at now or returns a *LimitError (or a
	// backend error). Every admitted Ticket must be settled exactly once.
	Admit(ctx context.Context, team *Team, now time.Time) (*Ticket, error)
	// Settle counts the usage of an admitted call and releases its reservation.
	Settle(ctx context.Context, t *Ticket, u Usage) error
}

// Usage is what one admitted call consumed.
type Usage struct {
	Tokens int64           // input + output (+ cache) tokens
	Cost   decimal.Decimal // USD; zero when the call was not priced
}

// Ticket is an admitted call's reservation.
type Ticket struct {
	TeamID     string
	Day        string // UTC YYYY-MM-DD the quotas count against
	Month      string // UTC YYYY-MM the budget counts against
	tokens     int64
	cost       decimal.Decimal
	dayProbe   bool
	monthProbe bool
	settled    bool
}

// LimitError is a call refused by a rate limit, quota or budget; it maps to
// HTTP 429 with Retry-After.
type LimitError struct {
	Reason     string // rate_limited | daily_request_quota | daily_token_quota | monthly_budget
	Message    string
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return e.Message }

// MemoryLimits keeps token buckets, daily counters and monthly spend in memory.
// Counters start from zero when the process starts.
type MemoryLimits struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	days    map[string]*dayUsage
	months  map[string]*monthUsage
}

// NewMemoryLimits returns an empty in-memory Limits.
func NewMemoryLimits() *MemoryLimits {
	return &MemoryLimits{buckets: map[string]*bucket{}, days: map[string]*dayUsage{}, months: map[string]*monthUsage{}}
}

type bucket struct {
	rps    float64
	burst  float64
	tokens float64
	last   time.Time
}

type dayUsage struct {
	day            string
	requests       int64
	tokens         int64
	reservedTokens int64
	maxCallTokens  int64 // the largest call seen today: the reservation of the next one
	inflight       int
	probing        bool // a first call is in flight and no estimate exists yet
}

type monthUsage struct {
	month       string
	spent       decimal.Decimal
	reserved    decimal.Decimal
	maxCallCost decimal.Decimal
	known       bool
	probing     bool
}

func burstOf(r RateLimit) float64 {
	if r.Burst > 0 {
		return float64(r.Burst)
	}
	return math.Max(1, math.Ceil(r.RPS))
}

// Admit implements Limits.
func (m *MemoryLimits) Admit(_ context.Context, team *Team, now time.Time) (*Ticket, error) {
	now = now.UTC()
	day, month := now.Format("2006-01-02"), now.Format("2006-01")
	m.mu.Lock()
	defer m.mu.Unlock()

	// Rate limit: refill, check; the token is taken only when everything passes.
	var b *bucket
	if team.RateLimit.RPS > 0 {
		b = m.buckets[team.ID]
		burst := burstOf(team.RateLimit)
		if b == nil || b.rps != team.RateLimit.RPS || b.burst != burst {
			b = &bucket{rps: team.RateLimit.RPS, burst: burst, tokens: burst, last: now}
			m.buckets[team.ID] = b
		}
		if el := now.Sub(b.last).Seconds(); el > 0 {
			b.tokens = math.Min(b.burst, b.tokens+el*b.rps)
			b.last = now
		}
		if b.tokens < 1 {
			wait := time.Duration((1 - b.tokens) / b.rps * float64(time.Second))
			return nil, &LimitError{Reason: "rate_limited", RetryAfter: wait,
				Message: fmt.Sprintf("team %s exceeded its rate limit of %g requests per second (burst %g)", team.ID, b.rps, b.burst)}
		}
	}

	d := m.days[team.ID]
	if d == nil || d.day != day {
		d = &dayUsage{day: day}
		m.days[team.ID] = d
	}
	untilTomorrow := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC).Sub(now)
	q := team.Quotas
	if q.DailyRequests > 0 && d.requests >= q.DailyRequests {
		return nil, &LimitError{Reason: "daily_request_quota", RetryAfter: untilTomorrow,
			Message: fmt.Sprintf("team %s used its daily quota of %d requests", team.ID, q.DailyRequests)}
	}
	t := &Ticket{TeamID: team.ID, Day: day, Month: month}
	if q.DailyTokens > 0 {
		if d.tokens >= q.DailyTokens {
			return nil, &LimitError{Reason: "daily_token_quota", RetryAfter: untilTomorrow,
				Message: fmt.Sprintf("team %s used its daily quota of %d tokens", team.ID, q.DailyTokens)}
		}
		if d.probing || d.tokens+d.reservedTokens >= q.DailyTokens {
			return nil, &LimitError{Reason: "daily_token_quota", RetryAfter: time.Second,
				Message: fmt.Sprintf("team %s: calls in flight may use the rest of its daily quota of %d tokens", team.ID, q.DailyTokens)}
		}
		t.tokens = d.maxCallTokens
	}

	mu := m.months[team.ID]
	if mu == nil || mu.month != month {
		mu = &monthUsage{month: month}
		m.months[team.ID] = mu
	}
	if budget := team.MonthlyBudgetUSD; budget != nil {
		untilNextMonth := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC).Sub(now)
		if mu.spent.GreaterThanOrEqual(*budget) {
			return nil, &LimitError{Reason: "monthly_budget", RetryAfter: untilNextMonth,
				Message: fmt.Sprintf("team %s spent its monthly budget of %s USD", team.ID, budget.String())}
		}
		if mu.probing || mu.spent.Add(mu.reserved).GreaterThanOrEqual(*budget) {
			return nil, &LimitError{Reason: "monthly_budget", RetryAfter: time.Second,
				Message: fmt.Sprintf("team %s: calls in flight may use the rest of its monthly budget of %s USD", team.ID, budget.String())}
		}
		t.cost = mu.maxCallCost
	}

	// Every check passed: commit. Without an estimate of a call's size yet, one
	// call goes first so a cold burst cannot overshoot a quota or budget.
	if b != nil {
		b.tokens--
	}
	d.requests++
	if q.DailyTokens > 0 {
		d.reservedTokens += t.tokens
		if d.maxCallTokens == 0 && !d.probing {
			d.probing, t.dayProbe = true, true
		}
	}
	d.inflight++
	if team.MonthlyBudgetUSD != nil {
		mu.reserved = mu.reserved.Add(t.cost)
		if !mu.known && !mu.probing {
			mu.probing, t.monthProbe = true, true
		}
	}
	return t, nil
}

// Settle implements Limits.
func (m *MemoryLimits) Settle(_ context.Context, t *Ticket, u Usage) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t == nil || t.settled {
		return nil
	}
	t.settled = true
	if d := m.days[t.TeamID]; d != nil && d.day == t.Day {
		d.tokens += u.Tokens
		d.reservedTokens -= t.tokens
		d.inflight--
		if u.Tokens > d.maxCallTokens {
			d.maxCallTokens = u.Tokens
		}
		if t.dayProbe {
			d.probing = false
		}
	}
	if mu := m.months[t.TeamID]; mu != nil && mu.month == t.Month {
		mu.spent = mu.spent.Add(u.Cost)
		mu.reserved = mu.reserved.Sub(t.cost)
		if u.Cost.GreaterThan(mu.maxCallCost) {
			mu.maxCallCost = u.Cost
		}
		if t.monthProbe {
			mu.probing = false
			mu.known = u.Cost.IsPositive()
		}
	}
	return nil
}

// Spent returns what team spent in month (YYYY-MM) as counted by this process.
func (m *MemoryLimits) Spent(teamID, month string) decimal.Decimal {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mu := m.months[teamID]; mu != nil && mu.month == month {
		return mu.spent
	}
	return decimal.Zero
}
