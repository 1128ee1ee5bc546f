// Package progress shows how far a long command has come, on stderr: on a
// terminal one line rewritten in place a few times a second; elsewhere (a
// log file, a CI job) a plain line every Interval; with quiet, nothing.
// Results never go here: they are the command's stdout.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Interval is how often a plain line is written when stderr is not a terminal.
const Interval = 10 * time.Second

// Reporter writes progress lines for one command.
type Reporter struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	terminal bool
	quiet    bool
	started  time.Time
	last     time.Time
	shown    bool
	now      func() time.Time
}

// New returns a reporter for the command named label writing to w; quiet
// silences it.
func New(w io.Writer, label string, quiet bool) *Reporter {
	return &Reporter{w: w, label: label, terminal: IsTerminal(w), quiet: quiet, started: time.Now(), now: time.Now}
}

// IsTerminal reports whether w is a character device (a terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Update reports done units of total (total 0: unknown) with a note such as
// "1,234 events"; it writes only as often as the output allows.
func (r *Reporter) Update(done, total int64, unit, note string) {
	if r == nil || r.quiet {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	every := Interval
	if r.terminal {
		every = 200 * time.Millisecond
	}
	if now.Sub(r.last) < every || now.Sub(r.started) < time.Second {
		return
	}
	r.last = now
	line := r.line(done, total, unit, note, now)
	if r.terminal {
		fmt.Fprintf(r.w, "\r\033[K%s", line)
		r.shown = true
		return
	}
	fmt.Fprintln(r.w, line)
}

func (r *Reporter) line(done, total int64, unit, note string, now time.Time) string {
	elapsed := now.Sub(r.started)
	rate := float64(done) / elapsed.Seconds()
	s := fmt.Sprintf("%s: %d %s", r.label, done, unit)
	if total > 0 {
		s = fmt.Sprintf("%s: %d/%d %s (%.0f%%)", r.label, done, total, unit, 100*float64(done)/float64(total))
	}
	s += fmt.Sprintf(", %.0f/s", rate)
	if note != "" {
		s += ", " + note
	}
	if total > 0 && done > 0 && done < total {
		left := time.Duration(float64(elapsed) * float64(total-done) / float64(done)).Round(time.Second)
		s += ", about " + left.String() + " left"
	}
	return s
}

// Done ends a terminal's progress line, so what follows starts on a line of its own.
func (r *Reporter) Done() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shown {
		fmt.Fprintln(r.w)
		r.shown = false
	}
}
