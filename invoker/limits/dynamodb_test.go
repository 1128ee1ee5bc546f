package limits_test

// DynamoDB limits against a real DynamoDB-API server: dynalite on 127.0.0.1
// (internal/testenv), one table shared by several store instances, each with
// its own client, as several invoker processes would share it.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/invoker/limits"
	"github.com/meter-dev/meter/invoker/tenants"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTable(t *testing.T, d *testenv.Dynalite, name string) {
	t.Helper()
	if err := d.CreateTable(limits.TableDefinition(name)); err != nil {
		t.Fatal(err)
	}
}

func newStores(t *testing.T, d *testenv.Dynalite, table string, n int, clk *clock, failOpen bool) []*limits.DynamoDB {
	t.Helper()
	var out []*limits.DynamoDB
	for i := 0; i < n; i++ {
		l, err := limits.NewDynamoDB(limits.DynamoDBConfig{Client: d.Client(), Table: table, Lease: time.Minute, Now: clk.now,
			FailOpen: failOpen, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		out = append(out, l)
	}
	return out
}

func TestDynamoDBLimits(t *testing.T) {
	d := testenv.StartDynalite(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

	t.Run("check: a missing table is told apart from an unreachable one", func(t *testing.T) {
		l, _ := limits.NewDynamoDB(limits.DynamoDBConfig{Client: d.Client(), Table: "missing"})
		if err := l.Check(ctx); !errors.Is(err, limits.ErrNoTable) {
			t.Fatalf("missing table: %v", err)
		}
		newTable(t, d, "present")
		l, _ = limits.NewDynamoDB(limits.DynamoDBConfig{Client: d.Client(), Table: "present"})
		if err := l.Check(ctx); err != nil {
			t.Fatalf("present table: %v", err)
		}
	})
	t.Run("a daily request quota across four instances admits exactly its size", func(t *testing.T) {
		newTable(t, d, "quota")
		clk := &clock{t: now}
		stores := newStores(t, d, "quota", 4, clk, false)
		team := &tenants.Team{ID: "q", Quotas: tenants.Quotas{DailyRequests: 100}}
		var admitted, refused atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func(l *limits.DynamoDB) {
				defer wg.Done()
				for j := 0; j < 5; j++ {
					tk, err := l.Admit(ctx, team, clk.now(), limits.Usage{})
					var le *limits.Error
					switch {
					case errors.As(err, &le) && le.Reason == "daily_request_quota":
						refused.Add(1)
						continue
					case err != nil:
						t.Error(err)
						return
					}
					admitted.Add(1)
					if err := l.Settle(ctx, tk, limits.Usage{Tokens: 3}); err != nil {
						t.Error(err)
					}
				}
			}(stores[i%4])
		}
		wg.Wait()
		if admitted.Load() != 100 || refused.Load() != 60 {
			t.Fatalf("admitted %d, refused %d; want 100 and 60", admitted.Load(), refused.Load())
		}
		c, err := stores[0].Counts(ctx, "q")
		if err != nil || c.Requests != 100 || c.TokensUsed != 300 || c.Reservations != 0 {
			t.Fatalf("counts %+v, %v", c, err)
		}
		// The next day starts from zero.
		if _, err := stores[1].Admit(ctx, team, now.Add(24*time.Hour), limits.Usage{}); err != nil {
			t.Fatalf("next day: %v", err)
		}
	})

	t.Run("a budget across four instances: admitted bounds never exceed it, spend is exact", func(t *testing.T) {
		newTable(t, d, "budget")
		clk := &clock{t: now}
		stores := newStores(t, d, "budget", 4, clk, false)
		budget := decimal.RequireFromString("1.00")
		team := &tenants.Team{ID: "b", MonthlyBudgetUSD: &budget}
		bound := limits.Usage{Cost: decimal.RequireFromString("0.07")}
		used := decimal.RequireFromString("0.0312345")
		var mu sync.Mutex
		spent, held, maxHeld := decimal.Zero, decimal.Zero, decimal.Zero
		var wg sync.WaitGroup
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func(l *limits.DynamoDB) {
				defer wg.Done()
				for j := 0; j < 4; j++ {
					tk, err := l.Admit(ctx, team, clk.now(), bound)
					if err != nil {
						var le *limits.Error
						if !errors.As(err, &le) || le.Reason != "monthly_budget" {
							t.Error(err)
						}
						continue
					}
					mu.Lock()
					held = held.Add(bound.Cost)
					if s := spent.Add(held); s.GreaterThan(maxHeld) {
						maxHeld = s
					}
					mu.Unlock()
					time.Sleep(2 * time.Millisecond)
					mu.Lock()
					held = held.Sub(bound.Cost)
					spent = spent.Add(used)
					mu.Unlock()
					if err := l.Settle(ctx, tk, limits.Usage{Cost: used}); err != nil {
						t.Error(err)
					}
				}
			}(stores[i%4])
		}
		wg.Wait()
		if maxHeld.GreaterThan(budget) {
			t.Fatalf("spent plus reserved reached %s, over the budget of %s", maxHeld, budget)
		}
		// The concurrent callers may give up while others' reservations
		// are held; one caller alone then fills what is left, and must be
		// refused only when no call of this bound fits.
		for i := 0; ; i++ {
			tk, err := stores[i%4].Admit(ctx, team, clk.now(), bound)
			if err != nil {
				var le *limits.Error
				if !errors.As(err, &le) || le.Reason != "monthly_budget" {
					t.Fatal(err)
				}
				break
			}
			spent = spent.Add(used)
			if err := stores[i%4].Settle(ctx, tk, limits.Usage{Cost: used}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := stores[2].Spent(ctx, "b", "2026-12")
		if err != nil || !got.Equal(spent) {
			t.Fatalf("the table counts %s spent, the calls spent %s (%v)", got, spent, err)
		}
		// Room for no more call of this bound: what is left is under 0.07.
		if left := budget.Sub(spent); left.GreaterThanOrEqual(bound.Cost) {
			t.Fatalf("only %s spent of %s: calls were refused that fitted", spent, budget)
		}
	})

	t.Run("a reservation whose instance died is released after its lease, once", func(t *testing.T) {
		newTable(t, d, "lease")
		clk := &clock{t: now}
		stores := newStores(t, d, "lease", 2, clk, false)
		team := &tenants.Team{ID: "l", Quotas: tenants.Quotas{DailyTokens: 1000}}
		dead, err := stores[0].Admit(ctx, team, clk.now(), limits.Usage{Tokens: 800})
		if err != nil {
			t.Fatal(err)
		}
		_, err = stores[1].Admit(ctx, team, clk.now(), limits.Usage{Tokens: 300})
		var le *limits.Error
		if !errors.As(err, &le) || le.Reason != "daily_token_quota" || le.RetryAfter != time.Second {
			t.Fatalf("while the reservation holds: %v", err)
		}
		clk.add(59 * time.Second)
		if _, err = stores[1].Admit(ctx, team, clk.now(), limits.Usage{Tokens: 300}); !errors.As(err, &le) {
			t.Fatalf("before the lease ran out: %v", err)
		}
		clk.add(2 * time.Second)
		tk, err := stores[1].Admit(ctx, team, clk.now(), limits.Usage{Tokens: 300})
		if err != nil {
			t.Fatalf("after the lease: %v", err)
		}
		if st := stores[1].Stats(); st.LeasesExpired != 1 {
			t.Fatalf("stats %+v", st)
		}
		stores[1].Settle(ctx, tk, limits.Usage{Tokens: 100})
		// The instance was not dead after all: its late settlement counts its
		// usage once, and releases nothing twice.
		stores[0].Settle(ctx, dead, limits.Usage{Tokens: 500})
		stores[0].Settle(ctx, dead, limits.Usage{Tokens: 500})
		c, err := stores[0].Counts(ctx, "l")
		if err != nil || c.TokensUsed != 600 || c.TokensHeld != 600 || c.Reservations != 0 || c.Released != 0 {
			t.Fatalf("counts %+v, %v", c, err)
		}
		// A call larger than the whole quota is refused with what is left.
		_, err = stores[1].Admit(ctx, team, clk.now(), limits.Usage{Tokens: 5000})
		if !errors.As(err, &le) || !strings.Contains(le.Message, "400 of its daily quota of 1000 tokens left") || !strings.Contains(le.Message, "more than the whole quota") {
			t.Fatalf("a call over the whole quota: %v", err)
		}
	})

	t.Run("a call longer than the lease keeps its reservation while its instance lives", func(t *testing.T) {
		newTable(t, d, "renew")
		var stores []*limits.DynamoDB
		for i := 0; i < 2; i++ {
			l, err := limits.NewDynamoDB(limits.DynamoDBConfig{Client: d.Client(), Table: "renew", Lease: 900 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			stores = append(stores, l)
		}
		team := &tenants.Team{ID: "r", Quotas: tenants.Quotas{DailyTokens: 1000}}
		long, err := stores[0].Admit(ctx, team, time.Now(), limits.Usage{Tokens: 800})
		if err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(150 * time.Millisecond) {
			var le *limits.Error
			if _, err := stores[1].Admit(ctx, team, time.Now(), limits.Usage{Tokens: 300}); !errors.As(err, &le) {
				t.Fatalf("a call admitted into the room of a call in flight (its lease renewed): %v", err)
			}
		}
		stores[0].Settle(ctx, long, limits.Usage{Tokens: 100})
		if _, err := stores[1].Admit(ctx, team, time.Now(), limits.Usage{Tokens: 300}); err != nil {
			t.Fatalf("after it settled: %v", err)
		}
		if st := stores[1].Stats(); st.LeasesExpired != 0 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("store stopped: refused as unavailable, or admitted open; nothing twice after", func(t *testing.T) {
		newTable(t, d, "outage")
		clk := &clock{t: now}
		closed := newStores(t, d, "outage", 1, clk, false)[0]
		open := newStores(t, d, "outage", 1, clk, true)[0]
		team := &tenants.Team{ID: "o", Quotas: tenants.Quotas{DailyRequests: 10, DailyTokens: 10000}}
		inflight, err := closed.Admit(ctx, team, clk.now(), limits.Usage{Tokens: 100})
		if err != nil {
			t.Fatal(err)
		}
		d.Stop()
		if _, err := closed.Admit(ctx, team, clk.now(), limits.Usage{Tokens: 100}); !errors.Is(err, limits.ErrUnavailable) {
			t.Fatalf("fail closed: %v", err)
		}
		openTk, err := open.Admit(ctx, team, clk.now(), limits.Usage{Tokens: 100})
		if err != nil {
			t.Fatalf("fail open: %v", err)
		}
		// Settling while the store is down is retried until it is back; the
		// call admitted open is counted (request and tokens) when it settles.
		if err := closed.Settle(ctx, inflight, limits.Usage{Tokens: 40}); !errors.Is(err, limits.ErrUnavailable) {
			t.Fatalf("settle while down: %v", err)
		}
		if st := closed.Stats(); st.StoreErrors < 2 {
			t.Fatalf("stats %+v", st)
		}
		d.Start()
		if err := open.Settle(ctx, openTk, limits.Usage{Tokens: 7}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := closed.Counts(ctx, "o")
			if err == nil && c.Reservations == 0 {
				if c.Requests != 2 || c.TokensUsed != 47 || c.TokensHeld != 47 {
					t.Fatalf("counts %+v", c)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the settlement made while the store was down never arrived: %+v %v", c, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

func TestParseURI(t *testing.T) {
	for _, c := range []struct {
		uri   string
		table string
		lease time.Duration
		open  bool
		ok    bool
	}{
		{"dynamodb://meter-limits", "meter-limits", 0, false, true},
		{"dynamodb://meter-limits?lease=2m&unavailable=open", "meter-limits", 2 * time.Minute, true, true},
		{"dynamodb://meter-limits?unavailable=closed", "meter-limits", 0, false, true},
		{"dynamodb://x", "", 0, false, false},
		{"dynamodb://bad/table", "", 0, false, false},
		{"dynamodb://t1t?lease=0s", "", 0, false, false},
		{"dynamodb://t1t?unavailable=maybe", "", 0, false, false},
		{"dynamodb://t1t?region=x", "", 0, false, false},
		{"redis://t", "", 0, false, false},
	} {
		table, lease, open, err := limits.ParseURI(c.uri)
		if (err == nil) != c.ok || table != c.table || lease != c.lease || open != c.open {
			t.Errorf("%s: %q %v %v %v", c.uri, table, lease, open, err)
		}
	}
}

// TestTableFileMatchesTheCode holds infra/limits-table.json (what the
// deployment reads) to the table the code uses.
func TestTableFileMatchesTheCode(t *testing.T) {
	b, err := os.ReadFile("../../infra/limits-table.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Table struct {
			AttributeDefinitions []struct{ AttributeName, AttributeType string }
			KeySchema            []struct{ AttributeName, KeyType string }
			BillingMode          string
		} `json:"table"`
		TTL struct {
			AttributeName string
			Enabled       bool
		} `json:"time_to_live"`
		Policy struct {
			Statement []struct{ Action []string } `json:"Statement"`
		} `json:"invoker_policy"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	def := limits.TableDefinition("x")
	if len(f.Table.KeySchema) != 1 || f.Table.KeySchema[0].AttributeName != limits.TableKey || f.Table.KeySchema[0].KeyType != string(def.KeySchema[0].KeyType) ||
		len(f.Table.AttributeDefinitions) != 1 || f.Table.AttributeDefinitions[0].AttributeType != string(def.AttributeDefinitions[0].AttributeType) ||
		f.Table.BillingMode != string(def.BillingMode) {
		t.Errorf("table %+v does not match TableDefinition", f.Table)
	}
	if f.TTL.AttributeName != limits.TableTTL || !f.TTL.Enabled {
		t.Errorf("TTL %+v, want %s", f.TTL, limits.TableTTL)
	}
	if len(f.Policy.Statement) != 1 || !slices.Equal(f.Policy.Statement[0].Action, limits.TableActions) {
		t.Errorf("policy %+v, want exactly %v", f.Policy, limits.TableActions)
	}
}
