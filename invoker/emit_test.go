package invoker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

// flakyStream is the real file stream behind a switch that makes it unreachable.
type flakyStream struct {
	*stream.FileStream
	down atomic.Bool
	puts atomic.Int64
}

func (f *flakyStream) Put(ctx context.Context, entries []stream.Entry) error {
	f.puts.Add(1)
	if f.down.Load() {
		return errors.New("stream unreachable")
	}
	return f.FileStream.Put(ctx, entries)
}

func testEvent(i int) *schemas.Event {
	return &schemas.Event{SchemaVersion: 1, EventID: "ev-" + string(rune('a'+i%26)) + time.Now().Format("150405.000000000"),
		RequestID: "req-" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + "-" + time.Now().Format("150405.000000000"),
		Timestamp: time.Now(), TeamID: "t", ModelID: "m", Operation: "InvokeModel", Status: "success", InputTokens: int64(i)}
}

func TestEmitterSpillsAndRedrivesExactlyOncePerRequest(t *testing.T) {
	dir := t.TempDir()
	fs, err := stream.OpenFile(filepath.Join(dir, "stream"), stream.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	fl := &flakyStream{FileStream: fs}
	spill := filepath.Join(dir, "spill")
	em, err := emitter.New(emitter.Config{Producer: fl, SpillDir: spill, RedriveInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	e := &env{t: t, fs: fs, readFrom: map[string]int{}}

	// Healthy: concurrent emits are durable in the stream when Emit returns.
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := em.Emit(context.Background(), testEvent(i)); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if got := len(e.newEvents(t)); got != 50 {
		t.Fatalf("%d events in the stream, want 50", got)
	}
	if fl.puts.Load() >= 50 {
		t.Logf("no group commit happened (%d puts for 50 events)", fl.puts.Load())
	}

	// Down: Emit still returns only once the event is fsynced to the spill.
	fl.down.Store(true)
	var sent []string
	for i := 0; i < 20; i++ {
		ev := testEvent(i)
		sent = append(sent, ev.RequestID)
		if err := em.Emit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(spill, "*.jsonl"))
	if len(files) == 0 {
		t.Fatal("no spill file")
	}
	var spilled []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			ev, err := schemas.ParseEvent([]byte(line))
			if err != nil {
				t.Fatalf("spill line %q: %v", line, err)
			}
			spilled = append(spilled, ev.RequestID)
		}
	}
	if len(spilled) != 20 || !em.Spilled() {
		t.Fatalf("spilled %d events", len(spilled))
	}
	if got := len(e.newEvents(t)); got != 0 {
		t.Fatalf("%d events reached a stream that is down", got)
	}

	// A failed re-drive keeps the spill.
	if _, err := em.Redrive(context.Background()); err == nil {
		t.Fatal("re-drive to a down stream succeeded")
	}
	// Back: the re-driver sends each spilled event once and removes the spill.
	fl.down.Store(false)
	n, err := em.Redrive(context.Background())
	if err != nil || n != 20 {
		t.Fatalf("re-drove %d: %v", n, err)
	}
	got := e.newEvents(t)
	seen := map[string]int{}
	for _, ev := range got {
		seen[ev.RequestID]++
	}
	for _, id := range sent {
		if seen[id] != 1 {
			t.Fatalf("request %s in the stream %d times", id, seen[id])
		}
	}
	if files, _ := filepath.Glob(filepath.Join(spill, "*.jsonl")); len(files) != 0 || em.Spilled() {
		t.Fatalf("spill left behind: %v", files)
	}
	// And new events go to the stream again.
	if err := em.Emit(context.Background(), testEvent(1)); err != nil {
		t.Fatal(err)
	}
	if len(e.newEvents(t)) != 1 {
		t.Fatal("event after recovery not in the stream")
	}
}

func TestEmitterRedrivesSpillLeftByEarlierProcess(t *testing.T) {
	dir := t.TempDir()
	spill := filepath.Join(dir, "spill")
	os.MkdirAll(spill, 0o700)
	ev := testEvent(3)
	line, _ := ev.MarshalJSON()
	// A torn last line, as a crash mid-write leaves it, is skipped.
	os.WriteFile(filepath.Join(spill, "spill-00000000000000000001-000001.jsonl"), append(append(line, '\n'), []byte(`{"schema_vers`)...), 0o600)
	fs, err := stream.OpenFile(filepath.Join(dir, "stream"), stream.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	em, err := emitter.New(emitter.Config{Producer: fs, SpillDir: spill, RedriveInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	e := &env{t: t, fs: fs, readFrom: map[string]int{}}
	deadline := time.Now().Add(5 * time.Second)
	var got []schemas.Event
	for len(got) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		got = e.newEvents(t)
	}
	if len(got) != 1 || got[0].RequestID != ev.RequestID {
		t.Fatalf("events %+v", got)
	}
}

// TestServedCallWaitsForDurableUsage: with the stream down and the spill
// unwritable, the invoker withholds the answer (503) rather than serve a call
// whose usage could be lost.
func TestServedCallWaitsForDurableUsage(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	fl := &flakyStream{FileStream: e.fs}
	fl.down.Store(true)
	spill := filepath.Join(e.dir, "spill2")
	em, err := emitter.New(emitter.Config{Producer: fl, SpillDir: spill, RedriveInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	reg, _ := tenants.OpenRegistry(e.tenants)
	srv, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: e.bedrock, Usage: em})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e.api.Config.Handler = srv

	r := e.invoke("search", haiku, nil, `{"inputs": "hi"}`)
	if r.status != 200 {
		t.Fatalf("spill works: status %d: %s", r.status, r.body)
	}
	em.Redrive(context.Background()) // seals the open spill file; the next spill needs a new one
	// Make the spill unwritable (a file where its directory was), even for root.
	os.RemoveAll(spill)
	os.WriteFile(spill, nil, 0o600)
	r = e.invoke("search", haiku, nil, `{"inputs": "hi"}`)
	if r.status != 503 || r.errorCode(t) != "usage_not_recorded" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}
