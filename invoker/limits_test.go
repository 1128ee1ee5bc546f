package invoker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/invoker"
)

func TestMemoryLimits(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 31, 23, 59, 0, 0, time.UTC)
	budget := decimal.RequireFromString("0.010")
	team := &invoker.Team{ID: "t", RateLimit: invoker.RateLimit{RPS: 2, Burst: 3},
		Quotas: invoker.Quotas{DailyRequests: 100, DailyTokens: 1000}, MonthlyBudgetUSD: &budget}

	t.Run("token bucket", func(t *testing.T) {
		l := invoker.NewMemoryLimits()
		tm := *team
		tm.MonthlyBudgetUSD, tm.Quotas = nil, invoker.Quotas{}
		for i := 0; i < 3; i++ {
			tk, err := l.Admit(ctx, &tm, now)
			if err != nil {
				t.Fatalf("call %d of the burst: %v", i, err)
			}
			l.Settle(ctx, tk, invoker.Usage{})
		}
		_, err := l.Admit(ctx, &tm, now)
		var le *invoker.LimitError
		if !errors.As(err, &le) || le.Reason != "rate_limited" || le.RetryAfter != 500*time.Millisecond {
			t.Fatalf("err %v", err)
		}
		if _, err := l.Admit(ctx, &tm, now.Add(500*time.Millisecond)); err != nil {
			t.Fatalf("after refill: %v", err)
		}
	})
	t.Run("daily quotas reset at UTC midnight", func(t *testing.T) {
		l := invoker.NewMemoryLimits()
		tm := *team
		tm.RateLimit, tm.MonthlyBudgetUSD = invoker.RateLimit{}, nil
		tk, _ := l.Admit(ctx, &tm, now)
		l.Settle(ctx, tk, invoker.Usage{Tokens: 1000})
		_, err := l.Admit(ctx, &tm, now)
		var le *invoker.LimitError
		if !errors.As(err, &le) || le.Reason != "daily_token_quota" || le.RetryAfter != time.Minute {
			t.Fatalf("err %v", err)
		}
		if _, err := l.Admit(ctx, &tm, now.Add(time.Minute)); err != nil {
			t.Fatalf("next day: %v", err)
		}
	})
	t.Run("monthly budget in exact decimals", func(t *testing.T) {
		l := invoker.NewMemoryLimits()
		tm := *team
		tm.RateLimit, tm.Quotas = invoker.RateLimit{}, invoker.Quotas{}
		for i := 0; i < 10; i++ { // ten calls of 0.001 spend exactly 0.010
			tk, err := l.Admit(ctx, &tm, now)
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			l.Settle(ctx, tk, invoker.Usage{Cost: decimal.RequireFromString("0.001")})
		}
		_, err := l.Admit(ctx, &tm, now)
		var le *invoker.LimitError
		if !errors.As(err, &le) || le.Reason != "monthly_budget" {
			t.Fatalf("err %v, spent %s", err, l.Spent("t", "2026-03"))
		}
		if !l.Spent("t", "2026-03").Equal(budget) {
			t.Fatalf("spent %s", l.Spent("t", "2026-03"))
		}
		if _, err := l.Admit(ctx, &tm, now.Add(time.Minute)); err != nil {
			t.Fatalf("next month: %v", err)
		}
	})
	t.Run("concurrent calls cannot race past the budget", func(t *testing.T) {
		l := invoker.NewMemoryLimits()
		tm := *team
		tm.RateLimit, tm.Quotas = invoker.RateLimit{}, invoker.Quotas{}
		cost := decimal.RequireFromString("0.004") // the budget fits two and a half calls
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
					tk, err := l.Admit(ctx, &tm, now)
					if err != nil {
						return
					}
					mu.Lock()
					admitted++
					mu.Unlock()
					time.Sleep(5 * time.Millisecond) // the model call
					l.Settle(ctx, tk, invoker.Usage{Cost: cost})
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
}
