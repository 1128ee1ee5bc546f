package emitter_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/schemas"
)

// TestAnEventNoStreamTakesIsDeadLettered: an event over the stream's record
// limit is refused for good, not for now: it is kept with the reason as a
// dead letter, the emitter does not turn degraded, and the next events go
// straight to the stream.
func TestAnEventNoStreamTakesIsDeadLettered(t *testing.T) {
	dir := t.TempDir()
	fs, err := stream.OpenFile(filepath.Join(dir, "stream"), stream.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	spill, err := store.OpenFile(filepath.Join(dir, "spill"))
	if err != nil {
		t.Fatal(err)
	}
	em, err := emitter.New(emitter.Config{Producer: fs, Spill: spill, RedriveInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	ev := func(id, model string) *schemas.Event {
		return &schemas.Event{SchemaVersion: 1, EventID: "e-" + id, RequestID: id, Timestamp: time.Now().UTC(), TeamID: "search",
			ModelID: model, Operation: "InvokeModel", Status: schemas.StatusDenied}
	}
	if err := em.Emit(context.Background(), ev("huge", strings.Repeat("m", 2<<20))); err != nil {
		t.Fatalf("the oversized event: %v", err)
	}
	for i := 0; i < 3; i++ {
		if err := em.Emit(context.Background(), ev("ok-"+string(rune('a'+i)), "anthropic.claude-3-haiku-20240307-v1:0")); err != nil {
			t.Fatal(err)
		}
	}
	if em.Spilled() {
		t.Error("one refused event turned the emitter degraded")
	}
	st := em.Stats()
	if st.DeadLettered != 1 || st.Emitted != 3 || st.Spilled != 0 || st.Lost != 0 {
		t.Errorf("stats %+v; want 1 dead letter and 3 emitted", st)
	}
	letters, err := spill.List(context.Background(), emitter.DeadLetterPrefix)
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters %v, %v", letters, err)
	}
	data, err := store.ReadAll(context.Background(), spill, letters[0].Key)
	if err != nil || !strings.Contains(string(data), "exceeds") || !strings.Contains(string(data), `"partition_key":"huge"`) {
		t.Errorf("dead letter %.200s: %v", data, err)
	}
	// Re-driving leaves dead letters alone.
	if n, err := em.Redrive(context.Background()); err != nil || n != 0 {
		t.Errorf("redrive %d, %v", n, err)
	}
}
