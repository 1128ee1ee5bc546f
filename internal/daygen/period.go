package daygen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// PeriodConfig describes a generated period of compacted days: what the
// compaction and reconciliation would have left in the store.
type PeriodConfig struct {
	From   string // first day, YYYY-MM-DD
	Days   int
	Teams  int
	Models int
	// Skip leaves a day of the period (by index) without a chargeback.
	Skip map[int]bool
	// Revised gives days (by index) a second revision that moved this much money.
	Revised map[int]string
	// Unmetered gives days (by index) a reconciliation summary with this many
	// unmetered calls; every other day is reconciled clean.
	Unmetered map[int]int
}

// PeriodTruth is what the generated period adds up to, computed here from the
// generator's own numbers, not by reading the files back.
type PeriodTruth struct {
	Total        decimal.Decimal
	ByTeam       map[string]decimal.Decimal
	ByModel      map[string]decimal.Decimal
	Invocations  int64
	DaysWithData int
	Teams        []string
}

// TeamID and ModelID name the generated teams and models.
func TeamID(i int) string  { return fmt.Sprintf("team-%02d", i) }
func ModelID(i int) string { return fmt.Sprintf("anthropic.claude-gen-%02d-v1:0", i) }

// Period writes the chargeback CSVs, manifests and reconciliation summaries
// of a period into st and returns what they add up to. Every team uses every
// model every day; costs are whole hundredths of a cent, different per day,
// team and model.
func Period(ctx context.Context, st store.Store, cfg PeriodConfig) (*PeriodTruth, error) {
	start, err := time.Parse(schemas.DayLayout, cfg.From)
	if err != nil {
		return nil, err
	}
	truth := &PeriodTruth{ByTeam: map[string]decimal.Decimal{}, ByModel: map[string]decimal.Decimal{}}
	for t := 0; t < cfg.Teams; t++ {
		truth.Teams = append(truth.Teams, TeamID(t))
	}
	for i := 0; i < cfg.Days; i++ {
		if cfg.Skip[i] {
			continue
		}
		day := start.AddDate(0, 0, i).Format(schemas.DayLayout)
		var rows []aggregator.ChargebackRow
		dayTotal := decimal.Zero
		for t := 0; t < cfg.Teams; t++ {
			for m := 0; m < cfg.Models; m++ {
				inv := int64(1 + (i+t+m)%7)
				in, out := inv*1000+int64(t*10+m), inv*200+int64(m)
				cost := decimal.New(int64((i+1)*(t+1)+(m+1)*37), -4) // hundredths of a cent
				r := aggregator.ChargebackRow{Day: day, TeamID: TeamID(t), CostCenter: fmt.Sprintf("CC-%d", t%3), ModelID: ModelID(m)}
				r.Invocations, r.InputTokens, r.OutputTokens = inv, in, out
				r.Denied = int64((i + t) % 2)
				r.Costs.Input, r.Costs.Output = cost, decimal.Zero
				rows = append(rows, r)
				truth.Total = truth.Total.Add(cost)
				truth.ByTeam[r.TeamID] = truth.ByTeam[r.TeamID].Add(cost)
				truth.ByModel[r.ModelID] = truth.ByModel[r.ModelID].Add(cost)
				truth.Invocations += inv
				dayTotal = dayTotal.Add(cost)
			}
		}
		truth.DaysWithData++
		rev := 1
		m := schemas.Manifest{Day: day, Engine: "go", Scale: -1, Totals: schemas.ManifestTotals{TotalCost: dayTotal.String()}}
		if moved, ok := cfg.Revised[i]; ok {
			rev = 2
			mv, err := decimal.NewFromString(moved)
			if err != nil {
				return nil, err
			}
			m.Previous = &schemas.ManifestChange{Revision: 1, TotalCostBefore: dayTotal.Sub(mv).String(), TotalCostDiff: mv.String()}
		}
		m.Revision = rev
		var csvBuf bytes.Buffer
		if err := aggregator.WriteChargebackCSV(&csvBuf, rows, -1, rev); err != nil {
			return nil, err
		}
		if err := st.Put(ctx, schemas.ChargebackCSVKey(day), &csvBuf); err != nil {
			return nil, err
		}
		mj, _ := json.Marshal(m)
		if err := st.Put(ctx, schemas.ManifestKey(day), bytes.NewReader(mj)); err != nil {
			return nil, err
		}
		s := schemas.ReconciliationSummary{Day: day, Matched: int(truth.Invocations % 1000), Unmetered: cfg.Unmetered[i], Skipped: map[string]int{}}
		sj, _ := json.Marshal(s)
		_, sumKey := schemas.ReconciliationKeys(day)
		if err := st.Put(ctx, sumKey, bytes.NewReader(sj)); err != nil {
			return nil, err
		}
	}
	return truth, nil
}
