package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenFile(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	truth, err := daygen.Period(context.Background(), st, daygen.PeriodConfig{From: "2026-10-01", Days: 31, Teams: 3, Models: 2})
	if err != nil {
		t.Fatal(err)
	}
	tenantsFile := filepath.Join(dir, "tenants.yaml")
	if _, err := tenants.AddTeam(tenantsFile, tenants.TeamSpec{ID: "team-01", MonthlyBudgetUSD: "0.25"}); err != nil {
		t.Fatal(err)
	}
	storeURI := "file://" + filepath.Join(dir, "store")
	out := filepath.Join(dir, "october.html")
	code, stdout, stderr := meter(t, "report", "--store", storeURI, "--month", "2026-10", "--tenants", tenantsFile, "--out", out)
	if code != 0 || stdout != "" || !strings.Contains(stderr, out) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`data-testid="total" data-value="` + truth.Total.String() + `"`, `data-testid="table-budget"`, "team-01"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	// Without --out the page goes to stdout, and nothing else does.
	code, stdout, _ = meter(t, "report", "--store", storeURI, "--from", "2026-10-03", "--to", "2026-10-04")
	if code != 0 || !strings.HasPrefix(stdout, "<!DOCTYPE html>") {
		t.Fatalf("to stdout: exit %d, %.80q", code, stdout)
	}

	// No data, or a CSV that does not read: one line, no page, nothing overwritten.
	bad := "day,team_id,cost_center,model_id,invocations,total_cost\n2026-10-02,a,b,c,one,1\n"
	if err := st.Put(context.Background(), schemas.ChargebackCSVKey("2026-10-02"), strings.NewReader(bad)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--month", "2025-01"}, "no chargeback in the store for the period"},
		{[]string{"--month", "2026-10"}, "chargeback/dt=2026-10-02/chargeback-2026-10-02.csv: line 2: invocations"},
		{[]string{"--month", "2026-13"}, `--month "2026-13": want YYYY-MM`},
		{[]string{"--month", "2026-10", "--from", "2026-10-01"}, "not both"},
	} {
		args := append([]string{"report", "--store", storeURI, "--out", out}, c.args...)
		before, _ := os.ReadFile(out)
		code, stdout, stderr := meter(t, args...)
		if code == 0 || stdout != "" || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want one line with %q", c.args, code, stdout, stderr, c.want)
		}
		if after, _ := os.ReadFile(out); string(after) != string(before) {
			t.Errorf("%v: the earlier page was changed", c.args)
		}
	}
}
