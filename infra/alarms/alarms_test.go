package alarms_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/meter-dev/meter/infra/alarms"
	"github.com/meter-dev/meter/internal/metrics"
)

// TestAlarmsNameExistingMetrics: every alarm watches a metric meter emits,
// and OPERATIONS.md has a runbook entry for it.
func TestAlarmsNameExistingMetrics(t *testing.T) {
	all, err := alarms.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 8 {
		t.Fatalf("%d alarms", len(all))
	}
	ops, err := os.ReadFile("../../OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if !slices.Contains(metrics.Names, a.Metric) {
			t.Errorf("alarm %s watches %s, which meter does not emit", a.Name, a.Metric)
		}
		if a.Source != "emf" && a.Source != "prometheus" {
			t.Errorf("alarm %s: source %q", a.Name, a.Source)
		}
		if a.Source == "prometheus" && !strings.Contains(a.Expr, a.Metric) {
			t.Errorf("alarm %s: expression %q does not use %s", a.Name, a.Expr, a.Metric)
		}
		if !strings.Contains(string(ops), "`"+a.Name+"`") {
			t.Errorf("OPERATIONS.md has no runbook for %s", a.Name)
		}
	}
	for _, name := range metrics.Names {
		if !strings.Contains(string(ops), name) {
			t.Errorf("OPERATIONS.md does not describe %s", name)
		}
	}
}
