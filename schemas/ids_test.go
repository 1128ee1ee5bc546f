package schemas_test

import (
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/schemas"
)

func TestIdentifiersAreCheckedWhereEventsEnter(t *testing.T) {
	ok := schemas.Event{SchemaVersion: 1, EventID: "e1", RequestID: "r1", Timestamp: time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC),
		TeamID: "search", CostCenter: "CC-1001", ModelID: "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
		Operation: "InvokeModel", Status: "success", InputTokens: 10}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a good event: %v", err)
	}
	for _, c := range []struct {
		field string
		edit  func(*schemas.Event)
	}{
		{"team_id", func(e *schemas.Event) { e.TeamID = "=HYPERLINK(\"http://x\")" }},
		{"team_id", func(e *schemas.Event) { e.TeamID = "-team" }},
		{"team_id", func(e *schemas.Event) { e.TeamID = strings.Repeat("a", 65) }},
		{"cost_center", func(e *schemas.Event) { e.CostCenter = "@SUM(A1)" }},
		{"cost_center", func(e *schemas.Event) { e.CostCenter = "cc\nnext" }},
		{"model_id", func(e *schemas.Event) { e.ModelID = "anthropic.claude,=1+1" }},
		{"model_id", func(e *schemas.Event) { e.ModelID = strings.Repeat("m", 2049) }},
		{"request_id", func(e *schemas.Event) { e.RequestID = "=cmd" }},
		{"request_id", func(e *schemas.Event) { e.RequestID = strings.Repeat("r", 257) }},
		{"input_tokens", func(e *schemas.Event) { e.InputTokens = 5_000_000_000_000_000_000 }},
		{"image_count", func(e *schemas.Event) { e.ImageCount = 1 << 40 }},
		{"latency_ms", func(e *schemas.Event) { e.LatencyMS = 1 << 50 }},
	} {
		e := ok
		c.edit(&e)
		err := e.Validate()
		if fe, isField := err.(*schemas.FieldError); !isField || fe.Field != c.field {
			t.Errorf("%s edited: err = %v, want a FieldError on %s", c.field, err, c.field)
		}
	}
}

func TestNeutralizeCell(t *testing.T) {
	for in, want := range map[string]string{"=1+1": "'=1+1", "+1": "'+1", "-2": "'-2", "@x": "'@x", "\tx": "'\tx", "\rx": "'\rx",
		"search": "search", "": "", "a=b": "a=b"} {
		if got := schemas.NeutralizeCell(in); got != want {
			t.Errorf("NeutralizeCell(%q) = %q, want %q", in, got, want)
		}
	}
}
