package report_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/report"
	"github.com/meter-dev/meter/schemas"
)

// month generates November 2026 in a file store: 4 teams, 3 models, no
// chargeback on the 5th, the 10th revised (12.5 USD moved), two unmetered
// calls on the 12th.
func month(t testing.TB) (store.Store, *daygen.PeriodTruth) {
	t.Helper()
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	truth, err := daygen.Period(context.Background(), st, daygen.PeriodConfig{From: "2026-11-01", Days: 30, Teams: 4, Models: 3,
		Skip: map[int]bool{4: true}, Revised: map[int]string{9: "12.5"}, Unmetered: map[int]int{11: 2}})
	if err != nil {
		t.Fatal(err)
	}
	return st, truth
}

func TestBuildSumsTheChargeback(t *testing.T) {
	st, truth := month(t)
	r, err := report.Build(context.Background(), report.Config{Store: st, From: "2026-11-01", To: "2026-11-30", StoreURI: "file:///x",
		Budgets: map[string]decimal.Decimal{"team-00": decimal.RequireFromString("0.5"), "team-03": decimal.RequireFromString("1000")}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Total.Equal(truth.Total) || r.Counts.Invocations != truth.Invocations {
		t.Errorf("total %s, %d calls; want %s, %d", r.Total, r.Counts.Invocations, truth.Total, truth.Invocations)
	}
	if len(r.Teams) != len(truth.ByTeam) || len(r.Models) != len(truth.ByModel) || len(r.TeamModel) != 12 {
		t.Errorf("%d teams, %d models, %d team x model lines", len(r.Teams), len(r.Models), len(r.TeamModel))
	}
	for _, l := range r.Teams {
		if !l.Cost.Equal(truth.ByTeam[l.Key]) {
			t.Errorf("team %s: %s, want %s", l.Key, l.Cost, truth.ByTeam[l.Key])
		}
	}
	for _, l := range r.Models {
		if !l.Cost.Equal(truth.ByModel[l.Key]) {
			t.Errorf("model %s: %s, want %s", l.Key, l.Cost, truth.ByModel[l.Key])
		}
	}
	if len(r.Days) != truth.DaysWithData || len(r.Missing) != 1 || r.Missing[0] != "2026-11-05" {
		t.Errorf("%d days, missing %v", len(r.Days), r.Missing)
	}
	for _, d := range r.Days {
		switch d.Day {
		case "2026-11-10":
			if !d.Revised || d.Revision != 2 || !d.Moved.Equal(decimal.RequireFromString("12.5")) {
				t.Errorf("the revised day: %+v", d)
			}
		case "2026-11-12":
			if !d.Reconciled || d.Unmetered != 2 {
				t.Errorf("the day with unmetered calls: %+v", d)
			}
		default:
			if d.Revised || d.Unmetered != 0 {
				t.Errorf("%s: revised %v, unmetered %d", d.Day, d.Revised, d.Unmetered)
			}
		}
	}
	if len(r.Budgets) != 2 || !r.Budgets[0].Spent.Equal(truth.ByTeam["team-00"]) || r.Budgets[1].TeamID != "team-03" {
		t.Errorf("budgets %+v", r.Budgets)
	}
	var page bytes.Buffer
	if err := r.Write(&page); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`data-testid="total" data-value="` + truth.Total.String() + `"`, `data-moved="12.5"`, `data-unmetered="2"`,
		"file:///x/chargeback/dt=2026-11-01/chargeback-2026-11-01.csv"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(page.String(), "http://") || strings.Contains(page.String(), "https://") {
		t.Error("the page refers to the network")
	}
}

func TestNoDataAndBadFilesAreErrors(t *testing.T) {
	ctx := context.Background()
	empty, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := report.Build(ctx, report.Config{Store: empty, From: "2026-11-01", To: "2026-11-30"}); !errors.Is(err, report.ErrNoData) {
		t.Errorf("empty store: %v, want ErrNoData", err)
	}
	st, _ := month(t)
	key := schemas.ChargebackCSVKey("2026-11-07")
	if err := st.Put(ctx, key, strings.NewReader("day,team_id,cost_center,model_id,invocations,total_cost\n2026-11-07,a,b,c,1,cheap\n")); err != nil {
		t.Fatal(err)
	}
	_, err = report.Build(ctx, report.Config{Store: st, From: "2026-11-01", To: "2026-11-30"})
	if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "total_cost") {
		t.Errorf("malformed CSV: %v, want an error naming %s and the column", err, key)
	}
	for _, c := range []report.Config{{Store: st, From: "2026-11-30", To: "2026-11-01"}, {Store: st, From: "2026-11", To: "2026-11-30"},
		{Store: st, From: "2025-01-01", To: "2026-11-30"}} {
		if _, err := report.Build(ctx, c); err == nil {
			t.Errorf("%s to %s: no error", c.From, c.To)
		}
	}
}

// TestPageEscapesIDs: ids come from operators and callers; the page shows
// them as text, never as markup.
func TestPageEscapesIDs(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	csv := "day,team_id,cost_center,model_id,invocations,total_cost\n2026-11-01,<script>alert(1)</script>,cc,\"m\"\"><img src=x>\",1,0.5\n"
	st.Put(ctx, schemas.ChargebackCSVKey("2026-11-01"), strings.NewReader(csv))
	st.Put(ctx, schemas.ManifestKey("2026-11-01"), strings.NewReader(`{"day":"2026-11-01","revision":1}`))
	r, err := report.Build(ctx, report.Config{Store: st, From: "2026-11-01", To: "2026-11-01"})
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := r.Write(&page); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(page.String(), "<script>alert") || strings.Contains(page.String(), "<img src=x>") {
		t.Error("an id reached the page as markup")
	}
}
