package tenants_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meter-dev/meter/invoker/tenants"
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
