package metrics

import (
	"encoding/json"
	"io"
	"sort"
	"sync"
	"time"
)

// Value is one metric of an EMF line.
type Value struct {
	Name  string
	Value float64
	Unit  string // CloudWatch unit: Count, Seconds, Milliseconds, None
}

// EMF writes CloudWatch Embedded Metric Format lines: one JSON object per
// line, which the Lambda runtime's log stream carries to CloudWatch, where
// each becomes metrics of Namespace with the given dimensions. Properties
// (team, model, request id) ride along for Logs Insights without becoming
// dimensions, so they cost nothing in metric cardinality.
type EMF struct {
	mu  sync.Mutex
	w   io.Writer
	Now func() time.Time
}

// NewEMF writes EMF lines to w (a Lambda's stdout).
func NewEMF(w io.Writer) *EMF { return &EMF{w: w, Now: time.Now} }

// Write emits one line with values under dimensions dims (names and values)
// and properties props. A nil EMF writes nothing.
func (e *EMF) Write(dims map[string]string, values []Value, props map[string]any) error {
	if e == nil {
		return nil
	}
	names := make([]string, 0, len(dims))
	for k := range dims {
		names = append(names, k)
	}
	sort.Strings(names)
	type metric struct {
		Name string `json:"Name"`
		Unit string `json:"Unit,omitempty"`
	}
	ms := make([]metric, 0, len(values))
	line := map[string]any{}
	for k, v := range props {
		line[k] = v
	}
	for k, v := range dims {
		line[k] = v
	}
	for _, v := range values {
		ms = append(ms, metric{Name: v.Name, Unit: v.Unit})
		line[v.Name] = v.Value
	}
	line["_aws"] = map[string]any{
		"Timestamp": e.Now().UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  Namespace,
			"Dimensions": [][]string{names},
			"Metrics":    ms,
		}},
	}
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err = e.w.Write(append(b, '\n'))
	return err
}
