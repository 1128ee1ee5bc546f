package limits_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/invoker/limits"
	"github.com/meter-dev/meter/invoker/tenants"
)

func TestMemoryLimits(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 31, 23, 59, 0, 0, time.UTC)
	budget := decimal.RequireFromString("0.010")
	// est is the most a call may use: what it reserves until it settles.
	est := limits.Usage{Tokens: 100, Cost: decimal.RequireFromString("0.001")}
	team := &tenants.Team{ID: "t", RateLimit: tenants.RateLimit{RPS: 2, Burst: 3},
		Quotas: tenants.Quotas{DailyRequests: 100, DailyTokens: 1000}, MonthlyBudgetUSD: &budget}

	t.Run("token bucket", func(t *testing.T) {
		l := limits.NewMemory()
		tm := *team
		tm.MonthlyBudgetUSD, tm.Quotas = nil, tenants.Quotas{}
		for i := 0; i < 3; i++ {
			tk, err := l.Admit(ctx, &tm, now, limits.Usage{})
			if err != nil {
				t.Fatalf("call %d of the burst: %v", i, err)
			}
			l.Settle(ctx, tk, limits.Usage{})
		}
		_, err := l.Admit(ctx, &tm, now, limits.Usage{})
		var le *limits.Error
		if !errors.As(err, &le) || le.Reason != "rate_limited" || le.RetryAfter != 500*time.Millisecond {
			t.Fatalf("err %v", err)
		}
		if _, err := l.Admit(ctx, &tm, now.Add(500*time.Millisecond), limits.Usage{}); err != nil {
			t.Fatalf("after refill: %v", err)
		}
	})
	t.Run("daily quotas reset at UTC midnight", func(t *testing.T) {
		l := limits.NewMemory()
		tm := *team
		tm.RateLimit, tm.MonthlyBudgetUSD = tenants.RateLimit{}, nil
		tk, _ := l.Admit(ctx, &tm, now, est)
		l.Settle(ctx, tk, limits.Usage{Tokens: 1000})
		_, err := l.Admit(ctx, &tm, now, est)
		var le *limits.Error
		if !errors.As(err, &le) || le.Reason != "daily_token_quota" || le.RetryAfter != time.Minute {
			t.Fatalf("err %v", err)
		}
		if _, err := l.Admit(ctx, &tm, now.Add(time.Minute), est); err != nil {
			t.Fatalf("next day: %v", err)
		}
	})
	t.Run("monthly budget in exact decimals", func(t *testing.T) {
		l := limits.NewMemory()
		tm := *team
		tm.RateLimit, tm.Quotas = tenants.RateLimit{}, tenants.Quotas{}
		for i := 0; i < 10; i++ { // ten calls of 0.001 spend exactly 0.010
			tk, err := l.Admit(ctx, &tm, now, est)
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			l.Settle(ctx, tk, limits.Usage{Cost: decimal.RequireFromString("0.001")})
		}
		_, err := l.Admit(ctx, &tm, now, est)
		var le *limits.Error
		if !errors.As(err, &le) || le.Reason != "monthly_budget" {
			t.Fatalf("err %v, spent %s", err, l.Spent("t", "2026-03"))
		}
		if !l.Spent("t", "2026-03").Equal(budget) {
			t.Fatalf("spent %s", l.Spent("t", "2026-03"))
		}
		if _, err := l.Admit(ctx, &tm, now.Add(time.Minute), est); err != nil {
			t.Fatalf("next month: %v", err)
		}
	})
	t.Run("concurrent calls cannot race past the budget", func(t *testing.T) {
		l := limits.NewMemory()
		tm := *team
		tm.RateLimit, tm.Quotas = tenants.RateLimit{}, tenants.Quotas{}
		cost := decimal.RequireFromString("0.004") // the budget fits two and a half calls
		// Before any call settles each is reserved at the estimate: the price
		// of the default reservation for the model, here what the calls cost.
		est := limits.Usage{Tokens: 4096, Cost: cost}
		var mu sync.Mutex
		admitted := 0
		var wg sync.WaitGroup
		for round := 0; round < 5; round++ {
			start := make(chan struct{})
			for i := 0; i < 20; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					tk, err := l.Admit(ctx, &tm, now, est)
					if err != nil {
						return
					}
					mu.Lock()
					admitted++
					mu.Unlock()
					time.Sleep(5 * time.Millisecond) // the model call
					l.Settle(ctx, tk, limits.Usage{Cost: cost})
				}()
			}
			close(start)
			wg.Wait()
		}
		if admitted > 3 {
			t.Fatalf("%d calls admitted for a budget that fits 2.5", admitted)
		}
		if admitted < 2 {
			t.Fatalf("only %d calls admitted", admitted)
		}
	})
	t.Run("calls in flight hold their bound, and only it", func(t *testing.T) {
		for _, c := range []struct {
			name   string
			tm     tenants.Team
			reason string
		}{
			{"daily tokens", tenants.Team{ID: "t", Quotas: tenants.Quotas{DailyTokens: 1000}}, "daily_token_quota"},
			{"monthly budget", tenants.Team{ID: "t", MonthlyBudgetUSD: &budget}, "monthly_budget"},
		} {
			t.Run(c.name, func(t *testing.T) {
				l := limits.NewMemory() // a day's first calls, or the first after a restart
				var inflight []*limits.Ticket
				for i := 0; i < 10; i++ { // ten reservations of 100 tokens or 0.001 USD fit
					tk, err := l.Admit(ctx, &c.tm, now, est)
					if err != nil {
						t.Fatalf("call %d with %d in flight: %v", i+1, len(inflight), err)
					}
					inflight = append(inflight, tk)
				}
				_, err := l.Admit(ctx, &c.tm, now, est)
				var le *limits.Error
				if !errors.As(err, &le) || le.Reason != c.reason || le.RetryAfter != time.Second {
					t.Fatalf("an eleventh call in flight: %v", err)
				}
				// One call settles below its reservation: what it did not use
				// is free again, to the token or the cent, and no more.
				l.Settle(ctx, inflight[0], limits.Usage{Tokens: 40, Cost: decimal.RequireFromString("0.0004"), At: now})
				over := limits.Usage{Tokens: 61, Cost: decimal.RequireFromString("0.00061")}
				if _, err := l.Admit(ctx, &c.tm, now, over); !errors.As(err, &le) || le.Reason != c.reason {
					t.Fatalf("a call bound to more than the 60 left: %v", err)
				}
				fits := limits.Usage{Tokens: 60, Cost: decimal.RequireFromString("0.0006")}
				if _, err := l.Admit(ctx, &c.tm, now, fits); err != nil {
					t.Fatalf("a call bound to the 60 left: %v", err)
				}
			})
		}
	})
	t.Run("usage of a call across midnight or a month end is counted where it ended", func(t *testing.T) {
		// now is 2026-03-31 23:59: a call admitted then and ended after
		// midnight counts in April 1st and in April.
		after := time.Date(2026, 4, 1, 0, 0, 30, 0, time.UTC)
		tm := *team
		tm.RateLimit = tenants.RateLimit{}
		full := limits.Usage{Tokens: 1000, Cost: budget, At: after} // the whole day's quota, the whole month's budget
		for _, c := range []struct {
			name   string
			settle func(l *limits.Memory, tk *limits.Ticket)
		}{
			{"no call admitted since midnight", func(l *limits.Memory, tk *limits.Ticket) {
				l.Settle(ctx, tk, full)
			}},
			{"calls admitted since midnight", func(l *limits.Memory, tk *limits.Ticket) {
				other, err := l.Admit(ctx, &tm, after, est)
				if err != nil {
					t.Fatal(err)
				}
				l.Settle(ctx, tk, full)
				l.Settle(ctx, other, limits.Usage{At: after})
			}},
			{"ended before midnight, settled after the limits moved on", func(l *limits.Memory, tk *limits.Ticket) {
				if _, err := l.Admit(ctx, &tm, after, est); err != nil {
					t.Fatal(err)
				}
				u := full
				u.At = now.Add(30 * time.Second)
				l.Settle(ctx, tk, u) // never dropped: counted in the current day and month
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				l := limits.NewMemory()
				tk, err := l.Admit(ctx, &tm, now, est)
				if err != nil {
					t.Fatal(err)
				}
				if tk.Day != "2026-03-31" || tk.Month != "2026-03" {
					t.Fatalf("ticket %+v", tk)
				}
				c.settle(l, tk)
				if got := l.Spent("t", "2026-04"); !got.Equal(budget) {
					t.Fatalf("April spent %s, want %s", got, budget)
				}
				_, err = l.Admit(ctx, &tm, after.Add(time.Second), est)
				var le *limits.Error
				if !errors.As(err, &le) || (le.Reason != "daily_token_quota" && le.Reason != "monthly_budget") || le.RetryAfter <= time.Second {
					t.Fatalf("quota and budget used up by the call that crossed midnight; got %v", err)
				}
				// Each limit on its own.
				quotaOnly, budgetOnly := tm, tm
				quotaOnly.MonthlyBudgetUSD, budgetOnly.Quotas = nil, tenants.Quotas{}
				for _, tt := range []*tenants.Team{&quotaOnly, &budgetOnly} {
					if _, err := l.Admit(ctx, tt, after.Add(time.Second), est); !errors.As(err, &le) || le.RetryAfter <= time.Second {
						t.Fatalf("%+v: %v", tt, err)
					}
				}
			})
		}
	})
}
