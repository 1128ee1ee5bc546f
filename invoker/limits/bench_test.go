package limits_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/invoker/limits"
	"github.com/meter-dev/meter/invoker/tenants"
)

// BenchmarkAdmitSettle measures one call's limits check, Admit then Settle,
// for a team with a daily token quota and a monthly budget: in memory, and
// in a DynamoDB table (dynalite on 127.0.0.1) in the same run. It reports
// p50 and p99 per call besides ns/op; BENCHMARKS.md has the command.
func BenchmarkAdmitSettle(b *testing.B) {
	d := testenv.StartDynalite(b)
	if err := d.CreateTable(limits.TableDefinition("bench")); err != nil {
		b.Fatal(err)
	}
	dyn, err := limits.NewDynamoDB(limits.DynamoDBConfig{Client: d.Client(), Table: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer dyn.Close()
	budget := decimal.RequireFromString("1000000")
	for _, c := range []struct {
		name string
		l    limits.Limits
	}{{"memory", limits.NewMemory()}, {"dynamodb", dyn}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			team := &tenants.Team{ID: "bench-" + c.name + fmt.Sprint(b.N), Quotas: tenants.Quotas{DailyTokens: 1 << 40}, MonthlyBudgetUSD: &budget}
			bound := limits.Usage{Tokens: 5000, Cost: decimal.RequireFromString("0.05")}
			used := limits.Usage{Tokens: 1200, Cost: decimal.RequireFromString("0.0123")}
			// The team's first call creates its item: not measured.
			if tk, err := c.l.Admit(ctx, team, time.Now(), bound); err == nil {
				c.l.Settle(ctx, tk, used)
			}
			admit := make([]time.Duration, 0, b.N)
			settle := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				tk, err := c.l.Admit(ctx, team, time.Now(), bound)
				if err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := c.l.Settle(ctx, tk, used); err != nil {
					b.Fatal(err)
				}
				admit, settle = append(admit, mid.Sub(start)), append(settle, time.Since(mid))
			}
			b.StopTimer()
			for _, m := range []struct {
				name string
				lat  []time.Duration
			}{{"admit", admit}, {"settle", settle}} {
				slices.Sort(m.lat)
				b.ReportMetric(float64(m.lat[len(m.lat)/2].Nanoseconds())/1e3, m.name+"-p50-us")
				b.ReportMetric(float64(m.lat[len(m.lat)*99/100].Nanoseconds())/1e3, m.name+"-p99-us")
			}
		})
	}
}
