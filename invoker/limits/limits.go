// Package limits admits or refuses a team's model calls against its rate limit,
// daily quotas and monthly budget, and counts what admitted calls used.
package limits

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/invoker/tenants"
)

// Limits decides whether a team may make one more model call, and counts what
// admitted calls used. Admission is checked before the call and usage counted
// after it; the gap between the two is covered by reservations, so concurrent
// calls cannot all slip under a quota or budget at once.
//
// A call is admitted while what the period has used plus what calls in flight
// have reserved is below the limit, and then reserves the largest call settled
// in the period, or before any has settled (the first calls of a UTC day or
// month, and every call after a restart) the estimate it was admitted with.
// So concurrent calls overshoot a quota or budget by at most one reservation,
// as long as no call uses more than its reservation, and the first call of a
// period does not hold back the others while it runs.
//
// Memory is the only implementation: it holds per process. Limits that
// hold across a fleet of invokers need a shared store behind these same two
// methods; none is built yet (meter serve refuses --limits dynamodb://).
type Limits interface {
	// Admit admits one call of team at now or returns a *Error (or a
	// backend error). est is what the call is expected to use (tokens, and
	// cost when the team has a budget), reserved while no call of the period
	// has settled with usage. Every admitted Ticket must be settled exactly once.
	Admit(ctx context.Context, team *tenants.Team, now time.Time, est Usage) (*Ticket, error)
	// Settle counts the usage of an admitted call and releases its reservation.
	// Usage counts in the day and month the call was admitted in if the call
	// ended in them (u.At), otherwise in the ones it ended in, which is where
	// the chargeback counts it too; usage is never dropped.
	Settle(ctx context.Context, t *Ticket, u Usage) error
}

// Usage is what one admitted call consumed.
type Usage struct {
	Tokens int64           // input + output (+ cache) tokens
	Cost   decimal.Decimal // USD; zero when the call was not priced
	// At is when the call ended (its usage event's timestamp). Zero counts
	// the usage in the period the call was admitted in, or in a later one the
	// limits have moved on to since.
	At time.Time
}

// Ticket is an admitted call's reservation.
type Ticket struct {
	TeamID  string
	Day     string // UTC YYYY-MM-DD the quotas count against
	Month   string // UTC YYYY-MM the budget counts against
	tokens  int64
	cost    decimal.Decimal
	settled bool
}

// Reserved is the money the ticket holds against the team's budget until it is settled.
func (t *Ticket) Reserved() decimal.Decimal { return t.cost }

// Error is a call refused by a rate limit, quota or budget; it maps to
// HTTP 429 with Retry-After.
type Error struct {
	Reason     string // rate_limited | daily_request_quota | daily_token_quota | monthly_budget
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// Memory keeps token buckets, daily counters and monthly spend in memory.
// Counters start from zero when the process starts.
type Memory struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	days    map[string]*dayUsage
	months  map[string]*monthUsage
}

// NewMemory returns an empty in-memory Limits.
func NewMemory() *Memory {
	return &Memory{buckets: map[string]*bucket{}, days: map[string]*dayUsage{}, months: map[string]*monthUsage{}}
}

type bucket struct {
	rps    float64
	burst  float64
	tokens float64
	last   time.Time
}

// dayUsage is a team's current UTC day; monthUsage its current UTC month.
type dayUsage struct {
	day            string
	requests       int64
	tokens         int64
	reservedTokens int64
	maxCallTokens  int64 // the largest call settled today: the reservation of the next one
}

type monthUsage struct {
	month       string
	spent       decimal.Decimal
	reserved    decimal.Decimal
	maxCallCost decimal.Decimal
}

const (
	dayLayout   = "2006-01-02"
	monthLayout = "2006-01"
)

func burstOf(r tenants.RateLimit) float64 {
	if r.Burst > 0 {
		return float64(r.Burst)
	}
	return math.Max(1, math.Ceil(r.RPS))
}

// Admit implements Limits.
func (m *Memory) Admit(_ context.Context, team *tenants.Team, now time.Time, est Usage) (*Ticket, error) {
	now = now.UTC()
	day, month := now.Format(dayLayout), now.Format(monthLayout)
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
			return nil, &Error{Reason: "rate_limited", RetryAfter: wait,
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
		return nil, &Error{Reason: "daily_request_quota", RetryAfter: untilTomorrow,
			Message: fmt.Sprintf("team %s used its daily quota of %d requests", team.ID, q.DailyRequests)}
	}
	t := &Ticket{TeamID: team.ID, Day: day, Month: month}
	if q.DailyTokens > 0 {
		if d.tokens >= q.DailyTokens {
			return nil, &Error{Reason: "daily_token_quota", RetryAfter: untilTomorrow,
				Message: fmt.Sprintf("team %s used its daily quota of %d tokens", team.ID, q.DailyTokens)}
		}
		if d.tokens+d.reservedTokens >= q.DailyTokens {
			return nil, &Error{Reason: "daily_token_quota", RetryAfter: time.Second,
				Message: fmt.Sprintf("team %s: calls in flight may use the rest of its daily quota of %d tokens", team.ID, q.DailyTokens)}
		}
		t.tokens = d.maxCallTokens
		if t.tokens == 0 {
			t.tokens = max(est.Tokens, 0)
		}
	}

	mu := m.months[team.ID]
	if mu == nil || mu.month != month {
		mu = &monthUsage{month: month}
		m.months[team.ID] = mu
	}
	if budget := team.MonthlyBudgetUSD; budget != nil {
		untilNextMonth := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC).Sub(now)
		if mu.spent.GreaterThanOrEqual(*budget) {
			return nil, &Error{Reason: "monthly_budget", RetryAfter: untilNextMonth,
				Message: fmt.Sprintf("team %s spent its monthly budget of %s USD", team.ID, budget.String())}
		}
		if mu.spent.Add(mu.reserved).GreaterThanOrEqual(*budget) {
			return nil, &Error{Reason: "monthly_budget", RetryAfter: time.Second,
				Message: fmt.Sprintf("team %s: calls in flight may use the rest of its monthly budget of %s USD", team.ID, budget.String())}
		}
		t.cost = mu.maxCallCost
		if t.cost.IsZero() && est.Cost.IsPositive() {
			t.cost = est.Cost
		}
	}

	// Every check passed: commit.
	if b != nil {
		b.tokens--
	}
	d.requests++
	d.reservedTokens += t.tokens
	mu.reserved = mu.reserved.Add(t.cost)
	return t, nil
}

// Settle implements Limits.
func (m *Memory) Settle(_ context.Context, t *Ticket, u Usage) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t == nil || t.settled {
		return nil
	}
	t.settled = true
	day, month := t.Day, t.Month
	if !u.At.IsZero() {
		at := u.At.UTC()
		day, month = max(day, at.Format(dayLayout)), max(month, at.Format(monthLayout))
	}

	// The usage counts in the ticket's period, or in a later one: the one the
	// call ended in, or the one the team's counters moved on to meanwhile.
	// The ticket's reservation lives in its own period's counters only.
	d := m.days[t.TeamID]
	if d == nil || d.day < day {
		d = &dayUsage{day: day}
		m.days[t.TeamID] = d
	}
	d.tokens += u.Tokens
	if d.day == t.Day {
		d.reservedTokens -= t.tokens
	}
	if u.Tokens > d.maxCallTokens {
		d.maxCallTokens = u.Tokens
	}

	mu := m.months[t.TeamID]
	if mu == nil || mu.month < month {
		mu = &monthUsage{month: month}
		m.months[t.TeamID] = mu
	}
	mu.spent = mu.spent.Add(u.Cost)
	if mu.month == t.Month {
		mu.reserved = mu.reserved.Sub(t.cost)
	}
	if u.Cost.GreaterThan(mu.maxCallCost) {
		mu.maxCallCost = u.Cost
	}
	return nil
}

// Spent returns what team spent in month (YYYY-MM) as counted by this process.
func (m *Memory) Spent(teamID, month string) decimal.Decimal {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mu := m.months[teamID]; mu != nil && mu.month == month {
		return mu.spent
	}
	return decimal.Zero
}
