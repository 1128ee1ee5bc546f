package invoker_test

// Integration test (bedrocklocal with invocation logs, the invoker's API, the
// file stream, all on 127.0.0.1): every Bedrock call carries the team, its cost
// center and the usage event's event_id as request metadata, so Bedrock's own
// invocation log record of the call names the event meter wrote for it.

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

func TestRequestMetadataNamesTheEvent(t *testing.T) {
	logs := t.TempDir()
	e := newEnv(t, envOpts{
		teams: []tenants.TeamSpec{{ID: "search", CostCenter: "cc-7", AllowedModels: []string{"anthropic.*", "us.anthropic.*"}}},
		model: bedrocklocal.Config{InvocationLogDir: logs, TrailBatch: 1}, // each record delivered as its call ends
	})
	h := map[string]string{"x-api-key": e.keys["search"]}
	calls := []response{
		e.invoke("search", haiku, nil, `{"inputs": "Name three rivers in Europe."}`),
		e.do("POST", "/model/"+haiku+"/converse", h, converseBody),
		e.do("POST", "/model/us."+haiku+"/converse-stream", h, converseBody),
		e.do("POST", "/bedrock/model/"+haiku+"/invoke", h, `{"anthropic_version":"bedrock-2023-05-31","max_tokens":50,"messages":[{"role":"user","content":"hi there"}]}`),
		e.do("POST", "/bedrock/model/"+haiku+"/invoke-with-response-stream", h, `{"anthropic_version":"bedrock-2023-05-31","max_tokens":50,"messages":[{"role":"user","content":"hi again"}]}`),
	}
	for i, r := range calls {
		if r.status != http.StatusOK {
			t.Fatalf("call %d: %d %s", i, r.status, r.body)
		}
	}
	events := map[string]schemas.Event{}
	for _, ev := range e.newEvents(t) {
		events[ev.RequestID] = ev
	}
	e.models.Close() // waits for the model server's handlers, so every record is on disk
	var seen int
	err := filepath.WalkDir(logs, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json.gz") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(zr)
		for sc.Scan() {
			var rec schemas.InvocationLog
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				return err
			}
			ev, ok := events[rec.RequestID]
			if !ok {
				t.Errorf("log record %s (%s) has no usage event", rec.RequestID, rec.Operation)
				continue
			}
			seen++
			want := map[string]string{"team_id": "search", "cost_center": "cc-7", "event_id": ev.EventID}
			for k, v := range want {
				if rec.RequestMetadata[k] != v {
					t.Errorf("%s %s: request metadata %s = %q, want %q", rec.Operation, rec.RequestID, k, rec.RequestMetadata[k], v)
				}
			}
			if rec.Input.InputTokenCount == nil || *rec.Input.InputTokenCount != ev.InputTokens || rec.Output.OutputTokenCount == nil || *rec.Output.OutputTokenCount != ev.OutputTokens {
				t.Errorf("%s: logged tokens %+v %+v, metered %d/%d", rec.Operation, rec.Input, rec.Output, ev.InputTokens, ev.OutputTokens)
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(calls) || len(events) != len(calls) {
		t.Errorf("%d log records joined, %d events, want %d of each", seen, len(events), len(calls))
	}
}

// readLogs returns the invocation log records under dir by request id.
func readLogs(t *testing.T, dir string) map[string]schemas.InvocationLog {
	t.Helper()
	out := map[string]schemas.InvocationLog{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json.gz") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(zr)
		for sc.Scan() {
			var rec schemas.InvocationLog
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				return err
			}
			out[rec.RequestID] = rec
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An app that sends its own request metadata (the AWS SDK's RequestMetadata)
// keeps it, checked by Bedrock's rules; meter's keys replace any it sent.
func TestCallerRequestMetadataIsKept(t *testing.T) {
	logs := t.TempDir()
	e := newEnv(t, envOpts{
		teams: []tenants.TeamSpec{{ID: "search", CostCenter: "cc-7", AllowedModels: []string{"anthropic.*"}}},
		model: bedrocklocal.Config{InvocationLogDir: logs, TrailBatch: 1},
	})
	h := map[string]string{"x-api-key": e.keys["search"]}
	conv := e.do("POST", "/bedrock/model/"+haiku+"/converse", h,
		`{"messages":[{"role":"user","content":[{"text":"hello"}]}],"requestMetadata":{"app":"checkout","team_id":"someone-else"}}`)
	inv := e.do("POST", "/bedrock/model/"+haiku+"/invoke", map[string]string{"x-api-key": e.keys["search"], "X-Amzn-Bedrock-Request-Metadata": `{"trace":"t-1"}`},
		`{"anthropic_version":"bedrock-2023-05-31","max_tokens":50,"messages":[{"role":"user","content":"hi there"}]}`)
	if conv.status != http.StatusOK || inv.status != http.StatusOK {
		t.Fatalf("converse %d %s, invoke %d %s", conv.status, conv.body, inv.status, inv.body)
	}
	many := map[string]string{}
	for i := 0; i < 14; i++ {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	for name, r := range map[string]response{
		"bad header":     e.do("POST", "/bedrock/model/"+haiku+"/invoke", map[string]string{"x-api-key": e.keys["search"], "X-Amzn-Bedrock-Request-Metadata": `{"a":"<b>"}`}, `{}`),
		"not an object":  e.do("POST", "/bedrock/model/"+haiku+"/invoke-with-response-stream", map[string]string{"x-api-key": e.keys["search"], "X-Amzn-Bedrock-Request-Metadata": `[1]`}, `{}`),
		"too many pairs": e.do("POST", "/bedrock/model/"+haiku+"/converse", h, mustJSON(map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"text": "x"}}}}, "requestMetadata": many})),
	} {
		if r.status != http.StatusBadRequest || !strings.Contains(strings.ToLower(string(r.body)), "metadata") {
			t.Errorf("%s: %d %s %v", name, r.status, r.body, r.header)
		}
	}
	e.models.Close()
	recs := readLogs(t, logs)
	events := map[string]schemas.Event{}
	for _, ev := range e.newEvents(t) {
		events[ev.RequestID] = ev
	}
	c := recs[conv.header.Get("x-request-id")]
	if c.RequestMetadata["app"] != "checkout" || c.RequestMetadata["team_id"] != "search" || c.RequestMetadata["event_id"] != events[c.RequestID].EventID {
		t.Errorf("converse metadata %v", c.RequestMetadata)
	}
	i := recs[inv.header.Get("x-request-id")]
	if i.RequestMetadata["trace"] != "t-1" || i.RequestMetadata["cost_center"] != "cc-7" || i.RequestMetadata["event_id"] != events[i.RequestID].EventID || i.RequestID == "" {
		t.Errorf("invoke metadata %v", i.RequestMetadata)
	}
	if len(recs) != 2 {
		t.Errorf("%d log records, want the 2 calls that reached Bedrock", len(recs))
	}
}
