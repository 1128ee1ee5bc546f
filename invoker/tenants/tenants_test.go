package tenants_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

// TestHostileTenantEntries: ids that would reach CSV cells, file names or
// partitions must be safe, and a rate limit must be a number: each entry is
// refused with a message naming what is wrong.
func TestHostileTenantEntries(t *testing.T) {
	for _, c := range []struct {
		spec tenants.TeamSpec
		want string
	}{
		{tenants.TeamSpec{ID: "=HYPERLINK(1)"}, "id"},
		{tenants.TeamSpec{ID: "+cmd"}, "id"},
		{tenants.TeamSpec{ID: "team/../../etc"}, "id"},
		{tenants.TeamSpec{ID: "ok", CostCenter: "@SUM(A1)"}, "cost_center"},
		{tenants.TeamSpec{ID: "ok", CostCenter: "cc\nrow"}, "cost_center"},
		{tenants.TeamSpec{ID: "ok", AllowedModels: []string{"anthropic,=1*"}}, "allowed model"},
	} {
		path := filepath.Join(t.TempDir(), "tenants.yaml")
		if _, err := tenants.AddTeam(path, c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want one about %s", c.spec, err, c.want)
		}
	}
	for _, rps := range []string{".nan", ".inf", "-.inf", "1e300"} {
		path := filepath.Join(t.TempDir(), "tenants.yaml")
		doc := "teams:\n  - id: search\n    rate_limit: {rps: " + rps + ", burst: 5}\n"
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := tenants.OpenRegistry(path); err == nil || !strings.Contains(err.Error(), "rate_limit") {
			t.Errorf("rps %s: err = %v, want the rate limit refused", rps, err)
		}
	}
}

// FuzzTenantsFile: no tenants file, however broken, panics the loader, and a
// registry that loads holds only ids the contract allows.
func FuzzTenantsFile(f *testing.F) {
	f.Add([]byte("teams:\n  - id: search\n    cost_center: CC-1\n    allowed_models: [\"anthropic.*\"]\n    rate_limit: {rps: 5, burst: 10}\n"))
	f.Add([]byte("teams: [ {id: "))
	f.Add([]byte("teams:\n  - id: a\n    api_keys: [{id: k1, sha256: \"00\"}]\n    monthly_budget_usd: \"1e9\"\n"))
	f.Add([]byte("teams: [{id: a}]\naliases:\n  - {name: claude, model: anthropic.x, rollout: {model: anthropic.y, percent: 10}, pins: {a: anthropic.x}}\ndeprecations: [{model: claude, after: 2026-01-01}]\nadmins: [{id: adm_1, sha256: \"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\", expires: 2030-01-01T00:00:00Z}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "tenants.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := tenants.OpenRegistry(path); err != nil {
			return
		}
		teams, err := tenants.ListTeams(path)
		if err != nil {
			t.Fatalf("loaded but not listed: %v", err)
		}
		for _, tm := range teams {
			if schemas.CheckID(tm.ID) != nil || (tm.CostCenter != "" && schemas.CheckID(tm.CostCenter) != nil) {
				t.Fatalf("loaded a team with a bad id %q / %q", tm.ID, tm.CostCenter)
			}
		}
	})
}
