package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/meter-dev/meter/internal/stream"
)

// Many batches, checked on several goroutines, still land in the stream in
// input order, each line keyed by its request_id or, when malformed, by its
// origin and line number, and every malformed line is reported once.
func TestPutLinesKeepsOrderAcrossBatches(t *testing.T) {
	const n = 2*putBatchEntries + 1234
	var in strings.Builder
	wantKeys := make([]string, 0, n)
	bad := map[int]bool{}
	for i := 1; i <= n; i++ {
		if i%9973 == 0 {
			fmt.Fprintf(&in, "{\"not\": \"an event %d\"}\n", i)
			wantKeys = append(wantKeys, fmt.Sprintf("malformed/input.jsonl:%d", i))
			bad[i] = true
			continue
		}
		if i%5000 == 0 {
			in.WriteString("\n") // a blank line is skipped, not sent
			wantKeys = append(wantKeys, "")
			continue
		}
		fmt.Fprintf(&in, `{"schema_version":1,"event_id":"e-%d","request_id":"r-%d","timestamp":"2026-11-20T01:00:00Z","team_id":"team-a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":%d,"output_tokens":1,"latency_ms":1}`+"\n", i, i, i)
		wantKeys = append(wantKeys, fmt.Sprintf("r-%d", i))
	}
	ctx := context.Background()
	uri := "file://" + t.TempDir()
	p, closeP, err := stream.OpenProducer(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	res, err := putLines(ctx, p, strings.NewReader(in.String()), "input.jsonl")
	closeP()
	if err != nil {
		t.Fatal(err)
	}
	if res.blank != n/5000 || len(res.malformed) != len(bad) || res.events != n-n/5000-len(bad) {
		t.Fatalf("events %d, blank %d, malformed %d", res.events, res.blank, len(res.malformed))
	}
	for _, m := range res.malformed {
		if !bad[m.line] {
			t.Errorf("line %d reported malformed", m.line)
		}
		delete(bad, m.line)
	}

	src, closeS, err := stream.OpenSource(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	defer closeS()
	shards, err := src.Shards(ctx)
	if err != nil || len(shards) != 1 {
		t.Fatalf("shards %v, %v", shards, err)
	}
	it, err := src.Open(ctx, shards[0].ID, stream.Start{Kind: stream.TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var got []string
	for {
		recs, err := it.Next(ctx, 10_000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			got = append(got, r.PartitionKey)
		}
	}
	k := 0
	for _, want := range wantKeys {
		if want == "" {
			continue
		}
		if k >= len(got) || got[k] != want {
			t.Fatalf("record %d: key %q, want %q", k, got[min(k, len(got)-1)], want)
		}
		k++
	}
	if k != len(got) {
		t.Fatalf("%d records in the stream, %d lines sent", len(got), k)
	}
}
