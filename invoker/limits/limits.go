// Package limits admits or refuses a team's model calls against its rate limit,
// daily quotas and monthly budget, and counts what admitted calls used.
//
// Two stores keep the counts behind one interface: Memory (one process) and
// DynamoDB (every invoker instance that shares a table). Rate limits are a
// token bucket in each process in both; quotas and budgets are shared only
// with DynamoDB.
package limits

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/invoker/tenants"
)

// Limits decides whether a team may make one more model call, and counts what
// admitted calls used. Admission is checked before the call and usage counted
// after it; the gap between the two is covered by reservations.
//
// A call reserves an upper bound of what it can use (bound): its tokens
// against the daily token quota, their price against the monthly budget. It is
// admitted only when what the period has used, plus what calls in flight have
// reserved, plus bound fits in every limit; settling releases the reservation
// and counts what the call really used. So as long as no call uses more than
// its bound, admitted usage never exceeds a quota or a budget, however many
// calls arrive at once and however large the caller makes them.
type Limits interface {
	// Admit admits one call of team at now or returns a *Error (or a
	// backend error, ErrUnavailable for a store that cannot be reached).
	// bound is the most the call can use (tokens, and cost when the team has a
	// budget); it is reserved until the ticket is settled. Every admitted
	// Ticket must be settled exactly once.
	Admit(ctx context.Context, team *tenants.Team, now time.Time, bound Usage) (*Ticket, error)
	// Settle counts the usage of an admitted call and releases its reservation.
	// Usage counts in the day and month the call was admitted in if the call
	// ended in them (u.At), otherwise in the ones it ended in, which is where
	// the chargeback counts it too; usage is never dropped.
	Settle(ctx context.Context, t *Ticket, u Usage) error
}

// ErrUnavailable wraps the error of a limits store that could not be reached:
// calls of teams with quotas or budgets are refused (503) while it lasts,
// unless the store is configured to fail open.
var ErrUnavailable = errors.New("limits store unavailable")

// Usage is what one admitted call consumed, or at most may consume.
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
	TeamID string
	Day    string // UTC YYYY-MM-DD the quotas count against
	Month  string // UTC YYYY-MM the budget counts against
	id     string // the reservation's id in a shared store
	tokens int64
	cost   decimal.Decimal
	// stored is false for a ticket that holds nothing in a shared store: a
	// team without quotas or budget, or a call admitted open while the store
	// was unreachable.
	stored  bool
	mu      sync.Mutex
	settled bool
	done    chan struct{} // closed when settled: stops renewing the lease
}

// Reserved is the money the ticket holds against the team's budget until it is settled.
func (t *Ticket) Reserved() decimal.Decimal { return t.cost }

// ReservedTokens is what the ticket holds against the team's daily token quota.
func (t *Ticket) ReservedTokens() int64 { return t.tokens }

// settle marks the ticket settled; it reports false when it already was.
func (t *Ticket) settle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.settled {
		return false
	}
	t.settled = true
	if t.done != nil {
		close(t.done)
	}
	return true
}

// Error is a call refused by a rate limit, quota or budget; it maps to
// HTTP 429 with Retry-After. Message names the limit and what is left of it.
type Error struct {
	Reason     string // rate_limited | daily_request_quota | daily_token_quota | monthly_budget
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

const (
	dayLayout   = "2006-01-02"
	monthLayout = "2006-01"
)

func untilTomorrow(now time.Time) time.Duration {
	return time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC).Sub(now)
}

func untilNextMonth(now time.Time) time.Duration {
	return time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC).Sub(now)
}

// requestRefusal is the refusal of a call over the daily request quota.
func requestRefusal(team string, limit int64, now time.Time) *Error {
	return &Error{Reason: "daily_request_quota", RetryAfter: untilTomorrow(now),
		Message: fmt.Sprintf("team %s used its daily quota of %d requests; 0 left until 00:00 UTC", team, limit)}
}

// tokenRefusal is the refusal of a call whose bound does not fit in the daily
// token quota: used are settled tokens, reserved those calls in flight hold.
func tokenRefusal(team string, limit, used, reserved, bound int64, now time.Time) *Error {
	left := max(limit-used-reserved, 0)
	e := &Error{Reason: "daily_token_quota"}
	switch {
	case bound > limit:
		e.RetryAfter = untilTomorrow(now)
		e.Message = fmt.Sprintf("team %s has %d of its daily quota of %d tokens left; this call may use up to %d (its prompt and its maximum output), more than the whole quota: lower its max tokens or shorten its prompt",
			team, left, limit, bound)
	case used+bound > limit:
		e.RetryAfter = untilTomorrow(now)
		e.Message = fmt.Sprintf("team %s has %d of its daily quota of %d tokens left; this call may use up to %d (its prompt and its maximum output)",
			team, max(limit-used, 0), limit, bound)
	default:
		e.RetryAfter = time.Second
		e.Message = fmt.Sprintf("team %s has %d of its daily quota of %d tokens left while calls in flight hold %d; this call may use up to %d (its prompt and its maximum output)",
			team, left, limit, reserved, bound)
	}
	return e
}

// budgetRefusal is the refusal of a call whose priced bound does not fit in
// the monthly budget.
func budgetRefusal(team string, budget, spent, reserved, bound decimal.Decimal, now time.Time) *Error {
	left := decimal.Max(budget.Sub(spent).Sub(reserved), decimal.Zero)
	e := &Error{Reason: "monthly_budget"}
	switch {
	case bound.GreaterThan(budget):
		e.RetryAfter = untilNextMonth(now)
		e.Message = fmt.Sprintf("team %s has %s USD of its monthly budget of %s USD left; this call may cost up to %s USD, more than the whole budget: lower its max tokens or shorten its prompt",
			team, left.String(), budget.String(), bound.String())
	case spent.Add(bound).GreaterThan(budget):
		e.RetryAfter = untilNextMonth(now)
		e.Message = fmt.Sprintf("team %s has %s USD of its monthly budget of %s USD left; this call may cost up to %s USD",
			team, decimal.Max(budget.Sub(spent), decimal.Zero).String(), budget.String(), bound.String())
	default:
		e.RetryAfter = time.Second
		e.Message = fmt.Sprintf("team %s has %s USD of its monthly budget of %s USD left while calls in flight hold %s USD; this call may cost up to %s USD",
			team, left.String(), budget.String(), reserved.String(), bound.String())
	}
	return e
}

// Memory keeps token buckets, daily counters and monthly spend in memory.
// Counters start from zero when the process starts.
type Memory struct {
	rate   Rate
	mu     sync.Mutex
	days   map[string]*dayUsage
	months map[string]*monthUsage
}

// NewMemory returns an empty in-memory Limits.
func NewMemory() *Memory {
	return &Memory{days: map[string]*dayUsage{}, months: map[string]*monthUsage{}}
}

// dayUsage is a team's current UTC day; monthUsage its current UTC month.
type dayUsage struct {
	day            string
	requests       int64
	tokens         int64
	reservedTokens int64
}

type monthUsage struct {
	month    string
	spent    decimal.Decimal
	reserved decimal.Decimal
}

// Admit implements Limits.
func (m *Memory) Admit(_ context.Context, team *tenants.Team, now time.Time, bound Usage) (*Ticket, error) {
	now = now.UTC()
	day, month := now.Format(dayLayout), now.Format(monthLayout)
	bound.Tokens = max(bound.Tokens, 0)
	bound.Cost = decimal.Max(bound.Cost, decimal.Zero)
	m.mu.Lock()
	defer m.mu.Unlock()

	// The rate limit's token is taken only when everything passes.
	if err := m.rate.check(team, now); err != nil {
		return nil, err
	}
	d := m.days[team.ID]
	if d == nil || d.day != day {
		d = &dayUsage{day: day}
		m.days[team.ID] = d
	}
	q := team.Quotas
	if q.DailyRequests > 0 && d.requests >= q.DailyRequests {
		return nil, requestRefusal(team.ID, q.DailyRequests, now)
	}
	t := &Ticket{TeamID: team.ID, Day: day, Month: month}
	if q.DailyTokens > 0 {
		if d.tokens+d.reservedTokens+bound.Tokens > q.DailyTokens {
			return nil, tokenRefusal(team.ID, q.DailyTokens, d.tokens, d.reservedTokens, bound.Tokens, now)
		}
		t.tokens = bound.Tokens
	}
	mu := m.months[team.ID]
	if mu == nil || mu.month != month {
		mu = &monthUsage{month: month}
		m.months[team.ID] = mu
	}
	if budget := team.MonthlyBudgetUSD; budget != nil {
		if mu.spent.Add(mu.reserved).Add(bound.Cost).GreaterThan(*budget) {
			return nil, budgetRefusal(team.ID, *budget, mu.spent, mu.reserved, bound.Cost, now)
		}
		t.cost = bound.Cost
	}

	// Every check passed: commit.
	m.rate.take(team, now)
	d.requests++
	d.reservedTokens += t.tokens
	mu.reserved = mu.reserved.Add(t.cost)
	return t, nil
}

// Settle implements Limits.
func (m *Memory) Settle(_ context.Context, t *Ticket, u Usage) error {
	if t == nil || !t.settle() {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
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

	mu := m.months[t.TeamID]
	if mu == nil || mu.month < month {
		mu = &monthUsage{month: month}
		m.months[t.TeamID] = mu
	}
	mu.spent = mu.spent.Add(u.Cost)
	if mu.month == t.Month {
		mu.reserved = mu.reserved.Sub(t.cost)
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
