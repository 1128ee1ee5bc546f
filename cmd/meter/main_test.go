package main

// These tests run the CLI in-process on the embedded stream and store (file://
// locations in temporary folders); no server is needed.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func meter(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func eventLine(req, event, ts string, in, out int) string {
	b, _ := json.Marshal(map[string]any{"schema_version": 1, "event_id": event, "request_id": req, "timestamp": ts,
		"team_id": "team-a", "cost_center": "CC-1", "model_id": "anthropic.claude-3-haiku-20240307-v1:0",
		"operation": "InvokeModel", "status": "success", "input_tokens": in, "output_tokens": out, "latency_ms": 40})
	return string(b)
}

// TestPutAggregateCompact is the walking skeleton on files: duplicates, a
// malformed line and an event of another day go in; the chargeback counts each
// request once, ignores the other day, and the malformed line is quarantined
// with its line number and reason.
func TestPutAggregateCompact(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i := 0; i < 50; i++ {
		lines = append(lines, eventLine(fmt.Sprintf("req-%03d", i), fmt.Sprintf("ev-%03d", i), fmt.Sprintf("2026-11-20T%02d:15:00Z", i%24), 1000+i, 200))
	}
	lines = append(lines, eventLine("req-007", "ev-007-again", "2026-11-20T07:15:00Z", 1007, 200)) // duplicate, new event id
	lines = append(lines, eventLine("req-011", "ev-011-again", "2026-11-20T11:15:00Z", 1011, 200))
	lines = append(lines, `{"schema_version":1,"event_id":"x","request_id":"req-bad","timestamp":"2026-11-20T01:00:00Z","team_id":"team-a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":"many","output_tokens":1,"latency_ms":1}`)
	lines = append(lines, eventLine("req-next-day", "ev-next", "2026-11-21T00:00:01Z", 5000, 5000))
	in := filepath.Join(dir, "usage.jsonl")
	os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	streamURI, storeURI := "file://"+filepath.Join(dir, "stream"), "file://"+filepath.Join(dir, "store")

	code, out, errs := meter(t, "put", "--stream", streamURI, in)
	if code != 0 || !strings.Contains(out, "put 53 events") || !strings.Contains(out, "1 malformed") || !strings.Contains(errs, "line 53") {
		t.Fatalf("put: %d %q %q", code, out, errs)
	}
	code, out, errs = meter(t, "aggregate", "--stream", streamURI, "--store", storeURI, "--until-idle", "--quiet")
	if code != 0 || !strings.Contains(out, "1 quarantined") || !strings.Contains(out, "54 records") {
		t.Fatalf("aggregate: %d %q %q", code, out, errs)
	}
	code, out, errs = meter(t, "compact", "--day", "2026-11-20", "--store", storeURI)
	if code != 0 || !strings.Contains(out, "2 duplicates dropped") {
		t.Fatalf("compact: %d %q %q", code, out, errs)
	}
	f, err := os.Open(filepath.Join(dir, "store/chargeback/dt=2026-11-20/chargeback-2026-11-20.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(recs) != 2 {
		t.Fatalf("chargeback: %v %v", recs, err)
	}
	row := map[string]string{}
	for i, c := range recs[0] {
		row[c] = recs[1][i]
	}
	// 50 requests, input 1000..1049 = 51225 tokens, output 50 x 200; Claude 3 Haiku
	// at 0.00025 / 0.00125 per 1k: 0.01280625 + 0.0125.
	want := map[string]string{"day": "2026-11-20", "team_id": "team-a", "invocations": "50", "input_tokens": "51225",
		"output_tokens": "10000", "input_cost": "0.01280625", "output_cost": "0.0125", "total_cost": "0.02530625"}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("chargeback %s = %q, want %q", k, row[k], v)
		}
	}
	// The malformed line is in quarantine with its line number and reason.
	q, _ := filepath.Glob(filepath.Join(dir, "store/quarantine/dt=*/*.jsonl"))
	if len(q) != 1 {
		t.Fatalf("quarantine objects: %v", q)
	}
	data, _ := os.ReadFile(q[0])
	var entry struct {
		Line   int    `json:"line"`
		Origin string `json:"origin"`
		Reason string `json:"reason"`
		Record string `json:"record"`
	}
	if err := json.Unmarshal(data, &entry); err != nil || entry.Line != 53 || entry.Origin != "usage.jsonl" ||
		!strings.Contains(entry.Reason, "input_tokens") || !strings.Contains(entry.Record, "req-bad") {
		t.Fatalf("quarantine entry %s: %+v %v", data, entry, err)
	}
	// A rerun over the same inputs is byte-identical.
	before, _ := os.ReadFile(filepath.Join(dir, "store/chargeback/dt=2026-11-20/chargeback-2026-11-20.csv"))
	if code, _, errs := meter(t, "compact", "--day", "2026-11-20", "--store", storeURI); code != 0 {
		t.Fatalf("rerun: %s", errs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "store/chargeback/dt=2026-11-20/chargeback-2026-11-20.csv"))
	if !bytes.Equal(before, after) {
		t.Fatalf("rerun changed the CSV:\n%s\n%s", before, after)
	}
}

// TestBadInput: bad command lines exit non-zero with one clear line and damage nothing.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	storeURI := "file://" + filepath.Join(dir, "store")
	os.MkdirAll(filepath.Join(dir, "store/chargeback/dt=2026-11-20"), 0o755)
	keep := filepath.Join(dir, "store/chargeback/dt=2026-11-20/chargeback-2026-11-20.csv")
	os.WriteFile(keep, []byte("day,team_id\n2026-11-20,a\n"), 0o644)
	badPrices := filepath.Join(dir, "prices.csv")
	os.WriteFile(badPrices, []byte("model_id,effective_from,input_per_1k,output_per_1k\nm,2026-01-01,cheap,0.1\n"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"compact", "--day", "2026-11-20", "--store", storeURI, "--frobnicate"}, "flag provided but not defined: -frobnicate"},
		{[]string{"compact", "--day", "2026-02-30", "--store", storeURI}, `--day "2026-02-30" is not a date`},
		{[]string{"compact", "--store", storeURI}, "--day is required"},
		{[]string{"put", "--stream", "file://" + dir + "/s", filepath.Join(dir, "missing.jsonl")}, "missing.jsonl: no such file"},
		{[]string{"compact", "--day", "2026-11-20", "--store", storeURI, "--prices", badPrices}, `line 2: input_per_1k "cheap"`},
		{[]string{"compact", "--day", "2026-11-20", "--store", "/not/a/uri"}, `want file://DIR or s3://BUCKET/PREFIX`},
		{[]string{"aggregate", "--stream", "ftp://x", "--store", storeURI}, "want file://DIR or kinesis://STREAM_NAME"},
		{[]string{"nonsense"}, `unknown command "nonsense"`},
		{[]string{"replay", "--day", "2026-11-20"}, "flag --stream is required"}, {[]string{"report"}, "flag --store is required"},
		{[]string{"serve", "--tenants", filepath.Join(dir, "t.yaml"), "--stream", "file://" + dir + "/s", "--tls-cert", filepath.Join(dir, "c.pem")}, "--tls-cert and --tls-key go together"},
		{[]string{"serve", "--tenants", filepath.Join(dir, "t.yaml"), "--stream", "file://" + dir + "/s", "--limits", "redis://x"}, "want memory or dynamodb://TABLE"},
		{[]string{"serve", "--tenants", filepath.Join(dir, "t.yaml"), "--stream", "file://" + dir + "/s", "--limits", "dynamodb://limits?lease=soon"}, "lease must be a duration"},
		{[]string{"serve", "--tenants", filepath.Join(dir, "t.yaml"), "--stream", "file://" + dir + "/s", "--tls-cert", filepath.Join(dir, "c.pem"), "--tls-key", filepath.Join(dir, "k.pem")}, "c.pem"},
	}
	for _, c := range cases {
		code, out, errs := meter(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 || out != "" {
			t.Errorf("meter %s: exit %d, stdout %q, stderr %q; want non-zero and one line containing %q", strings.Join(c.args, " "), code, out, errs, c.want)
		}
	}
	if got, _ := os.ReadFile(keep); string(got) != "day,team_id\n2026-11-20,a\n" {
		t.Fatalf("an earlier output was changed: %q", got)
	}
}
