package schemas

import (
	"reflect"
	"strings"
	"testing"
)

var parseCorpus = []string{
	`{"schema_version":1,"event_id":"e1","request_id":"r1","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3}`,
	`{"schema_version":1,"event_id":"e1","request_id":"r1","timestamp":"2026-11-25T10:00:00.123Z","team_id":"a","cost_center":"cc","model_id":"us.anthropic.claude-3-5-haiku-20241022-v1:0","operation":"Converse","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3,"cache_read_input_tokens":7,"cache_write_input_tokens":9,"region":"us-east-1","api_key_id":"key_1","pricing_tier":"batch"}`,
	` { "schema_version" : 1 , "event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00.1Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"denied","input_tokens":0,"output_tokens":0,"latency_ms":0,"image_count":2,"image_height":512,"image_width":512,"image_steps":30,"image_quality":"premium","extra":"ignored"} `,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00+01:00","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3}`,
	`{"schema_version":1,"event_id":"e\u0041","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3}`,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-02-30T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3}`,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1.5,"output_tokens":2,"latency_ms":3}`,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":-1,"output_tokens":2,"latency_ms":3}`,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3,"nested":{"a":[1,2]}}`,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2}`,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3}trailing`,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":01,"output_tokens":2,"latency_ms":3}`,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":null,"model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3}`,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3,"TEAM_ID":"b"}`,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3,"team_id":"b"}`,
	`{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a\xff","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3}`,
	`{}`, `[]`, ``, `{"a":1}`,
}

// TestFastPathAgreesWithGeneral: whenever the fast decoder accepts a record it
// must give exactly what encoding/json gives.
func TestFastPathAgreesWithGeneral(t *testing.T) {
	fast := 0
	for _, in := range parseCorpus {
		checkAgree(t, []byte(in))
		if _, ok := parseFast([]byte(in), plainString); ok {
			fast++
		}
	}
	if fast < 3 {
		t.Fatalf("the fast path took only %d records of the corpus", fast)
	}
}

func checkAgree(t *testing.T, in []byte) {
	t.Helper()
	got, gotErr := ParseEvent(in)
	want, wantErr := parseGeneral(in)
	if (gotErr == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseEvent(%s) = %+v, %v; general path %+v, %v", in, got, gotErr, want, wantErr)
	}
	var d Decoder
	viaDecoder, decErr := d.Parse(in)
	if (decErr == nil) != (wantErr == nil) || !reflect.DeepEqual(viaDecoder, want) {
		t.Fatalf("Decoder.Parse(%s) = %+v, %v; general path %+v, %v", in, viaDecoder, decErr, want, wantErr)
	}
	if gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("ParseEvent(%s) error %q, general path %q", in, gotErr, wantErr)
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, in := range parseCorpus {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if strings.Contains(string(in), "\x00") {
			return
		}
		checkAgree(t, in)
	})
}

func BenchmarkParseEvent(b *testing.B) {
	in := []byte(parseCorpus[1])
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		if _, err := ParseEvent(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseEventGeneral(b *testing.B) {
	in := []byte(parseCorpus[1])
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		if _, err := parseGeneral(in); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOneDecoderBehaviour: a field named twice or in other letter case, and
// text that is not valid UTF-8, are refused by both decoders alike, with the
// field named (encoding/json alone would take the last value, or match the
// name case-insensitively, and keep invalid bytes).
func TestOneDecoderBehaviour(t *testing.T) {
	base := `{"schema_version":1,"event_id":"e","request_id":"r","timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3`
	for in, field := range map[string]string{
		base + `,"TEAM_ID":"b"}`: "TEAM_ID",
		base + `,"team_id":"b"}`: "team_id",
		base + `,"Status":"x"}`:  "Status",
		strings.Replace(base, `"team_id":"a"`, "\"team_id\":\"a\xff\"", 1) + "}": "team_id",
	} {
		_, err := ParseEvent([]byte(in))
		fe, ok := err.(*FieldError)
		if !ok || fe.Field != field {
			t.Errorf("%s: err = %v, want a FieldError on %s", in[len(in)-20:], err, field)
		}
		checkAgree(t, []byte(in))
	}
}
