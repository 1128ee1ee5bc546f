// Package schemas holds the formats users and outside tools depend on: the usage
// event v1, the Parquet tables written to the store, the chargeback and
// reconciliation CSV columns, and the OpenAPI document of the invoke API.
//
// The Go types here are the single source of truth; tests keep the JSON Schema,
// the Parquet schemas and the Athena DDL in step with them. This package does no I/O.
package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SchemaVersion is the usage event version this package reads and writes.
const SchemaVersion = 1

// Operations are the Bedrock runtime operations an event may name.
var Operations = []string{"InvokeModel", "InvokeModelWithResponseStream", "Converse", "ConverseStream"}

// Statuses are the outcomes an event may record.
const (
	StatusSuccess       = "success"
	StatusDenied        = "denied"
	StatusThrottled     = "throttled"
	StatusClientError   = "client_error"
	StatusUpstreamError = "upstream_error"
)

// Statuses lists every valid status.
var Statuses = []string{StatusSuccess, StatusDenied, StatusThrottled, StatusClientError, StatusUpstreamError}

// PricingTiers lists the valid pricing tiers; the empty tier means on_demand.
var PricingTiers = []string{"on_demand", "batch", "provisioned"}

// Event is one usage event: one per model call the invoker handled.
// Prompts and completions are never part of an event.
type Event struct {
	SchemaVersion int       `json:"schema_version"`
	EventID       string    `json:"event_id"`
	RequestID     string    `json:"request_id"`
	Timestamp     time.Time `json:"timestamp"`
	TeamID        string    `json:"team_id"`
	CostCenter    string    `json:"cost_center"`
	ModelID       string    `json:"model_id"`
	Operation     string    `json:"operation"`
	Status        string    `json:"status"`
	InputTokens   int64     `json:"input_tokens"`
	OutputTokens  int64     `json:"output_tokens"`
	LatencyMS     int64     `json:"latency_ms"`

	CacheReadInputTokens  int64  `json:"cache_read_input_tokens,omitempty"`
	CacheWriteInputTokens int64  `json:"cache_write_input_tokens,omitempty"`
	ImageCount            int64  `json:"image_count,omitempty"`
	ImageHeight           int64  `json:"image_height,omitempty"`
	ImageWidth            int64  `json:"image_width,omitempty"`
	ImageSteps            int64  `json:"image_steps,omitempty"`
	ImageQuality          string `json:"image_quality,omitempty"`
	APIKeyID              string `json:"api_key_id,omitempty"`
	Region                string `json:"region,omitempty"`
	PricingTier           string `json:"pricing_tier,omitempty"`
	// ModelAlias is the alias the caller asked for; ModelID is the model it
	// resolved to, the one priced and billed.
	ModelAlias string `json:"model_alias,omitempty"`
}

// Day returns the event's UTC day as YYYY-MM-DD, the value of its dt partition.
func (e *Event) Day() string { return e.Timestamp.UTC().Format(DayLayout) }

// Tier returns the pricing tier, defaulting to on_demand.
func (e *Event) Tier() string {
	if e.PricingTier == "" {
		return "on_demand"
	}
	return e.PricingTier
}

// DayLayout is the layout of day strings (dt partitions, --day flags).
const DayLayout = "2006-01-02"

// MarshalJSON writes the event with its timestamp in RFC 3339 UTC, millisecond precision.
func (e Event) MarshalJSON() ([]byte, error) { return e.AppendJSON(make([]byte, 0, 384)), nil }

// AppendJSON appends the event's JSON (what MarshalJSON returns) to b: the
// fields in declaration order, the optional ones only when set, the timestamp
// last, strings escaped as encoding/json escapes them.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"schema_version":`...)
	b = strconv.AppendInt(b, int64(e.SchemaVersion), 10)
	b = appendField(b, "event_id", e.EventID)
	b = appendField(b, "request_id", e.RequestID)
	b = appendField(b, "team_id", e.TeamID)
	b = appendField(b, "cost_center", e.CostCenter)
	b = appendField(b, "model_id", e.ModelID)
	b = appendField(b, "operation", e.Operation)
	b = appendField(b, "status", e.Status)
	b = appendInt(b, "input_tokens", e.InputTokens, false)
	b = appendInt(b, "output_tokens", e.OutputTokens, false)
	b = appendInt(b, "latency_ms", e.LatencyMS, false)
	b = appendInt(b, "cache_read_input_tokens", e.CacheReadInputTokens, true)
	b = appendInt(b, "cache_write_input_tokens", e.CacheWriteInputTokens, true)
	b = appendInt(b, "image_count", e.ImageCount, true)
	b = appendInt(b, "image_height", e.ImageHeight, true)
	b = appendInt(b, "image_width", e.ImageWidth, true)
	b = appendInt(b, "image_steps", e.ImageSteps, true)
	for _, f := range [...]struct{ name, v string }{{"image_quality", e.ImageQuality}, {"api_key_id", e.APIKeyID},
		{"region", e.Region}, {"pricing_tier", e.PricingTier}, {"model_alias", e.ModelAlias}} {
		if f.v != "" {
			b = appendField(b, f.name, f.v)
		}
	}
	b = append(b, `,"timestamp":"`...)
	b = e.Timestamp.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	return append(b, `"}`...)
}

func appendInt(b []byte, name string, v int64, omitZero bool) []byte {
	if omitZero && v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

func appendField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(v) // what needs escaping is escaped as encoding/json does
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, v...)
	return append(b, '"')
}

// FormatTime renders t the way events carry it: RFC 3339, UTC, milliseconds.
func FormatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// FieldError says which field of an event is wrong and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q: %s", e.Field, e.Reason) }

// wire mirrors Event with pointers for the required fields so that a missing
// field can be told apart from a zero one.
type wire struct {
	SchemaVersion *int    `json:"schema_version"`
	EventID       *string `json:"event_id"`
	RequestID     *string `json:"request_id"`
	Timestamp     *string `json:"timestamp"`
	TeamID        *string `json:"team_id"`
	CostCenter    *string `json:"cost_center"`
	ModelID       *string `json:"model_id"`
	Operation     *string `json:"operation"`
	Status        *string `json:"status"`
	InputTokens   *int64  `json:"input_tokens"`
	OutputTokens  *int64  `json:"output_tokens"`
	LatencyMS     *int64  `json:"latency_ms"`

	CacheReadInputTokens  int64  `json:"cache_read_input_tokens"`
	CacheWriteInputTokens int64  `json:"cache_write_input_tokens"`
	ImageCount            int64  `json:"image_count"`
	ImageHeight           int64  `json:"image_height"`
	ImageWidth            int64  `json:"image_width"`
	ImageSteps            int64  `json:"image_steps"`
	ImageQuality          string `json:"image_quality"`
	APIKeyID              string `json:"api_key_id"`
	Region                string `json:"region"`
	PricingTier           string `json:"pricing_tier"`
	ModelAlias            string `json:"model_alias"`
}

// ParseEvent decodes and validates one JSON event. Errors are *FieldError when a
// field is missing or wrong, so callers can quarantine the record with its reason.
// Unknown fields are ignored so that newer producers do not break older readers.
func ParseEvent(data []byte) (Event, error) {
	if e, ok := parseFast(data, plainString); ok && e.Validate() == nil {
		return e, nil
	}
	return parseGeneral(data)
}

// parseGeneral decodes with encoding/json; it handles every valid input and
// explains every invalid one.
func parseGeneral(data []byte) (Event, error) {
	var w wire
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return Event{}, &FieldError{Field: "", Reason: "not a JSON object"}
	}
	if err := checkKeys(data); err != nil {
		return Event{}, err
	}
	if err := json.Unmarshal(data, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Event{}, &FieldError{Field: te.Field, Reason: fmt.Sprintf("want %s, got JSON %s", te.Type, te.Value)}
		}
		return Event{}, &FieldError{Field: "", Reason: "invalid JSON: " + err.Error()}
	}
	required := []struct {
		name    string
		present bool
	}{
		{"schema_version", w.SchemaVersion != nil}, {"event_id", w.EventID != nil}, {"request_id", w.RequestID != nil},
		{"timestamp", w.Timestamp != nil}, {"team_id", w.TeamID != nil}, {"cost_center", w.CostCenter != nil},
		{"model_id", w.ModelID != nil}, {"operation", w.Operation != nil}, {"status", w.Status != nil},
		{"input_tokens", w.InputTokens != nil}, {"output_tokens", w.OutputTokens != nil}, {"latency_ms", w.LatencyMS != nil},
	}
	for _, r := range required {
		if !r.present {
			return Event{}, &FieldError{Field: r.name, Reason: "required field missing"}
		}
	}
	ts, err := time.Parse(time.RFC3339Nano, *w.Timestamp)
	if err != nil {
		return Event{}, &FieldError{Field: "timestamp", Reason: "not RFC 3339: " + *w.Timestamp}
	}
	e := Event{
		SchemaVersion: *w.SchemaVersion, EventID: *w.EventID, RequestID: *w.RequestID, Timestamp: ts.UTC(),
		TeamID: *w.TeamID, CostCenter: *w.CostCenter, ModelID: *w.ModelID, Operation: *w.Operation,
		Status: *w.Status, InputTokens: *w.InputTokens, OutputTokens: *w.OutputTokens, LatencyMS: *w.LatencyMS,
		CacheReadInputTokens: w.CacheReadInputTokens, CacheWriteInputTokens: w.CacheWriteInputTokens,
		ImageCount: w.ImageCount, ImageHeight: w.ImageHeight, ImageWidth: w.ImageWidth, ImageSteps: w.ImageSteps,
		ImageQuality: w.ImageQuality, APIKeyID: w.APIKeyID, Region: w.Region, PricingTier: w.PricingTier,
		ModelAlias: w.ModelAlias,
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// Validate checks the values of a decoded event and names the first bad field.
func (e *Event) Validate() error {
	switch {
	case e.SchemaVersion != SchemaVersion:
		return &FieldError{"schema_version", fmt.Sprintf("unsupported version %d (want %d)", e.SchemaVersion, SchemaVersion)}
	case e.EventID == "":
		return &FieldError{"event_id", "must not be empty"}
	case e.RequestID == "":
		return &FieldError{"request_id", "must not be empty"}
	case e.Timestamp.IsZero():
		return &FieldError{"timestamp", "must be set"}
	case e.TeamID == "":
		return &FieldError{"team_id", "must not be empty"}
	case e.ModelID == "":
		return &FieldError{"model_id", "must not be empty"}
	}
	if err := e.checkIDs(); err != nil {
		return err
	}
	switch {
	case !contains(Operations, e.Operation):
		return &FieldError{"operation", fmt.Sprintf("%q is not one of %s", e.Operation, strings.Join(Operations, ", "))}
	case !contains(Statuses, e.Status):
		return &FieldError{"status", fmt.Sprintf("%q is not one of %s", e.Status, strings.Join(Statuses, ", "))}
	case e.PricingTier != "" && !contains(PricingTiers, e.PricingTier):
		return &FieldError{"pricing_tier", fmt.Sprintf("%q is not one of %s", e.PricingTier, strings.Join(PricingTiers, ", "))}
	}
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"input_tokens", e.InputTokens}, {"output_tokens", e.OutputTokens}, {"latency_ms", e.LatencyMS},
		{"cache_read_input_tokens", e.CacheReadInputTokens}, {"cache_write_input_tokens", e.CacheWriteInputTokens},
		{"image_count", e.ImageCount}, {"image_height", e.ImageHeight}, {"image_width", e.ImageWidth}, {"image_steps", e.ImageSteps},
	} {
		if n.v < 0 {
			return &FieldError{n.name, fmt.Sprintf("must not be negative (got %d)", n.v)}
		}
	}
	for _, n := range []struct {
		name    string
		v, most int64
	}{
		{"input_tokens", e.InputTokens, MaxTokens}, {"output_tokens", e.OutputTokens, MaxTokens},
		{"cache_read_input_tokens", e.CacheReadInputTokens, MaxTokens}, {"cache_write_input_tokens", e.CacheWriteInputTokens, MaxTokens},
		{"latency_ms", e.LatencyMS, MaxLatencyMS}, {"image_count", e.ImageCount, MaxImages},
		{"image_height", e.ImageHeight, MaxImageSide}, {"image_width", e.ImageWidth, MaxImageSide}, {"image_steps", e.ImageSteps, MaxSteps},
	} {
		if n.v > n.most {
			return &FieldError{n.name, fmt.Sprintf("at most %d (got %d)", n.most, n.v)}
		}
	}
	return nil
}

// checkIDs checks the event's ids by the contract's rules, naming the first bad one.
func (e *Event) checkIDs() error {
	check := func(name, v string, rule func(string) error, optional bool) error {
		if optional && v == "" {
			return nil
		}
		if err := rule(v); err != nil {
			return &FieldError{name, err.Error()}
		}
		return nil
	}
	for _, err := range [...]error{
		check("event_id", e.EventID, checkRef, false), check("request_id", e.RequestID, checkRef, false),
		check("team_id", e.TeamID, CheckID, false), check("cost_center", e.CostCenter, CheckID, true),
		check("api_key_id", e.APIKeyID, CheckID, true), check("model_id", e.ModelID, CheckModelID, false),
		check("region", e.Region, CheckID, true), check("image_quality", e.ImageQuality, CheckID, true),
		check("model_alias", e.ModelAlias, CheckID, true),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
