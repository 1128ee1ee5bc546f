package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/infra/athena"
)

// jsonFields lists a struct's JSON field names in order.
func jsonFields(v any) []string {
	var out []string
	t := reflect.TypeOf(v)
	for i := 0; i < t.NumField(); i++ {
		out = append(out, strings.Split(t.Field(i).Tag.Get("json"), ",")[0])
	}
	return out
}

// parquetColumns lists a row type's Parquet column names in order.
func parquetColumns(v any) []string {
	var out []string
	t := reflect.TypeOf(v)
	re := regexp.MustCompile(`name=([a-z_0-9]+)`)
	for i := 0; i < t.NumField(); i++ {
		out = append(out, re.FindStringSubmatch(t.Field(i).Tag.Get("parquet"))[1])
	}
	return out
}

// ddlColumns reads the column names of each table in the shipped Athena DDL.
func ddlColumns(t *testing.T) map[string][]string {
	data := athena.Tables
	out := map[string][]string{}
	tables := regexp.MustCompile(`(?s)CREATE EXTERNAL TABLE IF NOT EXISTS (\w+) \((.*?)\n\)`).FindAllStringSubmatch(string(data), -1)
	for _, m := range tables {
		for _, line := range strings.Split(strings.TrimSpace(m[2]), "\n") {
			out[m[1]] = append(out[m[1]], strings.Trim(strings.Fields(line)[0], "`"))
		}
	}
	return out
}

func TestFormatsStayInStep(t *testing.T) {
	event := jsonFields(Event{})
	var js struct {
		Required   []string                   `json:"required"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(EventJSONSchema, &js); err != nil {
		t.Fatal(err)
	}
	props := make([]string, 0, len(js.Properties))
	for p := range js.Properties {
		props = append(props, p)
	}
	sorted := append([]string(nil), event...)
	sort.Strings(sorted)
	sort.Strings(props)
	if !reflect.DeepEqual(sorted, props) {
		t.Errorf("JSON Schema properties %v != Event fields %v", props, sorted)
	}
	if !reflect.DeepEqual(js.Required, event[:12]) {
		t.Errorf("JSON Schema required %v != the contract's required fields %v", js.Required, event[:12])
	}
	if got := parquetColumns(EventRow{}); !reflect.DeepEqual(got, event) {
		t.Errorf("events Parquet columns %v != Event fields %v", got, event)
	}
	daily := parquetColumns(DailyRow{})
	if !reflect.DeepEqual(daily[:len(event)], event) {
		t.Errorf("daily Parquet columns %v do not start with the Event fields", daily)
	}
	ddl := ddlColumns(t)
	for table, cols := range map[string][]string{"events": event, "daily": daily, "usage_windows": parquetColumns(WindowRow{})} {
		if !reflect.DeepEqual(ddl[table], cols) {
			t.Errorf("Athena DDL %s columns %v != Parquet columns %v", table, ddl[table], cols)
		}
	}
}

func TestParseEventNamesTheBadField(t *testing.T) {
	good := `{"schema_version":1,"event_id":"e1","request_id":"r1","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3}`
	if e, err := ParseEvent([]byte(good)); err != nil || e.InputTokens != 1 || e.Timestamp != time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC) {
		t.Fatalf("good event: %+v %v", e, err)
	}
	cases := map[string]string{
		strings.Replace(good, `"input_tokens":1`, `"input_tokens":"one"`, 1):              "input_tokens",
		strings.Replace(good, `"timestamp":"2026-11-25T10:00:00Z"`, `"timestamp":"x"`, 1): "timestamp",
		strings.Replace(good, `"request_id":"r1",`, ``, 1):                                "request_id",
		strings.Replace(good, `"status":"success"`, `"status":"ok"`, 1):                   "status",
		strings.Replace(good, `"output_tokens":2`, `"output_tokens":-2`, 1):               "output_tokens",
		strings.Replace(good, `"schema_version":1`, `"schema_version":2`, 1):              "schema_version",
		`not json`: "",
	}
	for in, field := range cases {
		_, err := ParseEvent([]byte(in))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("ParseEvent(%s) = %v, want a FieldError on %q", in, err, field)
		}
	}
}

func TestEventJSONRoundTrip(t *testing.T) {
	e := Event{SchemaVersion: 1, EventID: "e", RequestID: "r", Timestamp: time.Date(2026, 11, 25, 10, 0, 0, 123e6, time.UTC),
		TeamID: "a", ModelID: "m", Operation: "Converse", Status: "success", InputTokens: 5, CacheReadInputTokens: 7}
	b, _ := json.Marshal(e)
	if !strings.Contains(string(b), `"timestamp":"2026-11-25T10:00:00.123Z"`) {
		t.Fatalf("timestamp not RFC 3339 UTC millis: %s", b)
	}
	back, err := ParseEvent(b)
	if err != nil || !reflect.DeepEqual(back, e) {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}

func ExampleParseEvent() {
	_, err := ParseEvent([]byte(`{"schema_version":1,"event_id":"e1","request_id":"r1","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":"12","output_tokens":2,"latency_ms":3}`))
	fmt.Println(err)
	// Output: field "input_tokens": want int64, got JSON string
}
