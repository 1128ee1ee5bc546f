// Package alarms is the alarms an operator sets on meter's metrics, as data:
// the deployment (CloudWatch alarms on the Lambdas' EMF metrics) and
// Prometheus rules for meter serve read them from here, and OPERATIONS.md
// says what to do when each fires. A test holds every metric named here to
// the names in internal/metrics.
package alarms

import (
	_ "embed"
	"encoding/json"
)

//go:embed alarms.json
var alarmsJSON []byte

// Alarm is one alarm.
type Alarm struct {
	Name       string            `json:"name"`
	Metric     string            `json:"metric"`
	Source     string            `json:"source"` // emf (CloudWatch, from the Lambdas) or prometheus (meter serve)
	Dimensions map[string]string `json:"dimensions,omitempty"`
	Statistic  string            `json:"statistic,omitempty"`
	Period     int               `json:"period_seconds,omitempty"`
	Periods    int               `json:"evaluation_periods,omitempty"`
	Comparison string            `json:"comparison,omitempty"`
	Threshold  float64           `json:"threshold"`
	Expr       string            `json:"expr,omitempty"` // the Prometheus rule
	Summary    string            `json:"summary"`
}

// All returns every alarm.
func All() ([]Alarm, error) {
	var out []Alarm
	err := json.Unmarshal(alarmsJSON, &out)
	return out, err
}
