package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
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

// ParseEMF checks one line against the Embedded Metric Format specification
// (an _aws object with a millisecond Timestamp and CloudWatchMetrics, each
// with a Namespace, Dimensions naming top-level string members and Metrics
// naming top-level numeric members) and returns its metric values by name.
func ParseEMF(line []byte) (map[string]float64, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(line, &doc); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	var aws struct {
		Timestamp         *int64 `json:"Timestamp"`
		CloudWatchMetrics []struct {
			Namespace  string     `json:"Namespace"`
			Dimensions [][]string `json:"Dimensions"`
			Metrics    []struct {
				Name string `json:"Name"`
				Unit string `json:"Unit"`
			} `json:"Metrics"`
		} `json:"CloudWatchMetrics"`
	}
	raw, ok := doc["_aws"]
	if !ok {
		return nil, errors.New("no _aws member")
	}
	if err := json.Unmarshal(raw, &aws); err != nil {
		return nil, fmt.Errorf("_aws: %w", err)
	}
	if aws.Timestamp == nil || *aws.Timestamp <= 0 || len(aws.CloudWatchMetrics) == 0 {
		return nil, errors.New("_aws needs a Timestamp and CloudWatchMetrics")
	}
	out := map[string]float64{}
	for _, d := range aws.CloudWatchMetrics {
		if d.Namespace == "" || len(d.Metrics) == 0 || len(d.Metrics) > 100 {
			return nil, errors.New("a metric directive needs a Namespace and 1 to 100 Metrics")
		}
		for _, set := range d.Dimensions {
			if len(set) > 30 {
				return nil, errors.New("a dimension set has more than 30 dimensions")
			}
			for _, name := range set {
				var v string
				if err := json.Unmarshal(doc[name], &v); err != nil {
					return nil, fmt.Errorf("dimension %s is not a string member", name)
				}
			}
		}
		for _, m := range d.Metrics {
			var v float64
			if err := json.Unmarshal(doc[m.Name], &v); err != nil {
				return nil, fmt.Errorf("metric %s is not a numeric member", m.Name)
			}
			out[m.Name] = v
		}
	}
	return out, nil
}
