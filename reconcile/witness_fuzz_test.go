package reconcile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzInvocationLog: no invocation log object, however malformed, panics the
// reader or goes unaccounted: every non-blank line becomes a record in the
// window, an issue with its line number, or a record outside the window; a
// kept record has a request id and token counts that are not negative.
func FuzzInvocationLog(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "invocationlogs", "2026-11-25.jsonl"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	for _, line := range bytes.Split(data, []byte("\n")) {
		f.Add(line)
	}
	f.Add([]byte("{not json\n\n{\"requestId\":\"r\",\"timestamp\":\"2026-11-25T00:00:00Z\",\"input\":{\"inputTokenCount\":-1}}"))
	from, to := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var res InvocationLogResult
		ParseInvocationLog("k.json", bytes.NewReader(raw), from, to, &res)
		lines := 0
		for _, l := range bytes.Split(raw, []byte("\n")) {
			if len(bytes.TrimSpace(l)) > 0 {
				lines++
			}
		}
		if len(res.Records)+len(res.Issues) > lines {
			t.Fatalf("%d records and %d issues from %d lines", len(res.Records), len(res.Issues), lines)
		}
		for _, r := range res.Records {
			if r.RequestID == "" || r.Input < 0 || r.Output < 0 || r.CacheRead < 0 || r.CacheWrite < 0 || r.Time.Before(from) || !r.Time.Before(to) {
				t.Fatalf("kept %+v", r)
			}
			if r.Line < 1 || r.Line > bytes.Count(raw, []byte("\n"))+1 {
				t.Fatalf("record line %d", r.Line)
			}
		}
		for _, is := range res.Issues {
			if is.Key != "k.json" || is.Line < 1 || is.Reason == "" {
				t.Fatalf("issue %+v", is)
			}
		}
	})
}
