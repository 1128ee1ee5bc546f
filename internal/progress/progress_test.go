package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPlainLinesAreSpacedAndQuietIsSilent(t *testing.T) {
	var buf bytes.Buffer
	clock := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	r := New(&buf, "meter compact", false)
	r.started, r.now = clock, func() time.Time { return clock }
	for i := 1; i <= 100; i++ {
		clock = clock.Add(time.Second)
		r.Update(int64(i), 100, "objects", "")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 10 || !strings.Contains(lines[0], "meter compact: 1/100 objects (1%)") || !strings.Contains(lines[0], "left") {
		t.Fatalf("%d lines: %q", len(lines), lines)
	}
	if strings.Contains(buf.String(), "\r") {
		t.Error("a plain output got terminal control characters")
	}
	buf.Reset()
	q := New(&buf, "meter compact", true)
	q.Update(5, 10, "objects", "")
	q.Done()
	if buf.Len() != 0 {
		t.Errorf("quiet wrote %q", buf.String())
	}
}
