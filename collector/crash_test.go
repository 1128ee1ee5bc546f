package collector_test

// The real `meter` binary, built here, killed with SIGKILL at random points of
// its work over and over; no server. Whatever a kill interrupts, the day's
// chargeback must come out exact and every request counted once.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/schemas"
)

// buildMeter builds cmd/meter into a temporary directory.
func buildMeter(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meter")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/meter")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/meter: %v\n%s", err, out)
	}
	return bin
}

func TestAggregateSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and aggregates 200,000 events")
	}
	bin := buildMeter(t)
	day := usageDays[0]
	u := generate(t, genOptions{requests: 198_500, days: []string{day}, dupRate: 0.01, dupSpan: 20_000, seed: 3})
	if len(u.events) < 200_000 {
		t.Fatalf("generated %d events, want at least 200,000", len(u.events))
	}
	streamDir, storeDir := filepath.Join(t.TempDir(), "stream"), filepath.Join(t.TempDir(), "store")
	fs, err := stream.OpenFile(streamDir, stream.FileOptions{Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	putAll(t, fs, u.records)
	fs.Close()

	args := []string{"aggregate", "--stream", "file://" + streamDir, "--store", "file://" + storeDir, "--batch", "500", "--quiet"}
	rng := rand.New(rand.NewPCG(3, 3))
	kills := 0
	start := time.Now()
	// At least 20 kills, and on until both shards are mostly read, so that
	// kills land all along the stream, not only near its start.
	for kills < 20 || (readShare(streamDir, storeDir) < 0.8 && kills < 80) {
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Without --until-idle the consumer never exits by itself: every run
		// ends in a kill. It comes at a random point after the run has moved a
		// checkpoint, so that the runs together cover the whole stream.
		// A run that moves nothing for a while has read the whole stream:
		// it is the last one killed.
		from, idle, drained := progress(storeDir), time.After(10*time.Second), false
		for moved := false; !moved && !drained; {
			select {
			case err := <-exited:
				t.Fatalf("meter aggregate exited by itself: %v\n%s", err, stderr.String())
			case <-idle:
				drained = true
			case <-time.After(5 * time.Millisecond):
				moved = progress(storeDir) != from
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("meter aggregate exited by itself: %v\n%s", err, stderr.String())
		case <-time.After(time.Duration(rng.IntN(120)) * time.Millisecond):
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := <-exited
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("meter aggregate ended with %v, not by the kill\n%s", err, stderr.String())
		}
		kills++
		if drained {
			break
		}
	}
	killed := time.Since(start)
	before, share := progress(storeDir), readShare(streamDir, storeDir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append(args, "--until-idle")...).CombinedOutput()
	if err != nil {
		t.Fatalf("final meter aggregate --until-idle: %v\n%s", err, out)
	}
	t.Logf("%d kills in %s, checkpoints then at %s (%.0f%% of the smaller shard read); final run: %s",
		kills, killed.Round(time.Millisecond), before, 100*share, bytes.TrimSpace(out))
	checkpointed, _ := filepath.Glob(filepath.Join(storeDir, "_checkpoints", "aggregator", "*.json"))
	if len(checkpointed) != 2 {
		t.Fatalf("checkpoints: %v", checkpointed)
	}

	st, err := store.OpenFile(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	res := compactAll(t, st, []string{day})[day]
	got := parseChargeback(t, getObject(t, st, schemas.ChargebackCSVKey(day)))
	compareChargeback(t, day, got, u.chargeback())
	counts := countScenario("aggregator SIGKILLed", u.chargeback(), got)
	counts.Faults = fmt.Sprintf("meter aggregate SIGKILLed %d times at random points over %d records (1%% redelivered)", kills, len(u.records))
	testenv.ReportScenario(t, counts)
	m := res.Manifest
	if m.RequestIDs != len(u.requests) || m.RowsRead != len(u.events) {
		for _, in := range m.Inputs {
			t.Logf("input %s %d rows", in.Key, in.Rows)
		}
		t.Errorf("compaction: %d request ids from %d rows; want %d from %d", m.RequestIDs, m.RowsRead, len(u.requests), len(u.events))
	}
	t.Logf("%s: %d invocations, %d input tokens, %d output tokens, total %s USD from %d rows (%d duplicates dropped)",
		day, m.Totals.Invocations, m.Totals.InputTokens, m.Totals.OutputTokens, m.Totals.TotalCost, m.RowsRead, m.DuplicatesDropped)

	// Each request once in the daily table.
	seen := map[string]bool{}
	for _, p := range parquetFiles(t, storeDir, "daily") {
		rows, err := parquetio.ReadFile[schemas.DailyRow](p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if seen[r.RequestID] {
				t.Fatalf("request %s counted twice", r.RequestID)
			}
			seen[r.RequestID] = true
		}
	}
	if len(seen) != len(u.requests) {
		t.Errorf("daily table has %d requests, want %d", len(seen), len(u.requests))
	}
	// Each event once in the raw table: an interrupted batch was rebuilt
	// under its own name, never written again under another.
	rows, files := 0, parquetFiles(t, storeDir, "events")
	for _, p := range files {
		r, err := parquetio.ReadFile[schemas.EventRow](p)
		if err != nil {
			t.Fatal(err)
		}
		rows += len(r)
	}
	if rows != len(u.events) {
		t.Errorf("events table: %d rows in %d files for %d events", rows, len(files), len(u.events))
	}
	var windowRequests int64
	for _, w := range sumWindows(readWindows(t, storeDir)) {
		windowRequests += w.requests
	}
	left, _ := filepath.Glob(filepath.Join(storeDir, "*", "*", ".tmp-*"))
	t.Logf("events table: %d rows in %d files; usage_windows: %d requests for %d (duplicates across a restart count again there); %d temporary files left by kills",
		rows, len(files), windowRequests, len(u.requests), len(left))
	if windowRequests < int64(len(u.requests)) || windowRequests > int64(len(u.events)) {
		t.Errorf("usage_windows counts %d requests: fewer than %d sent or more than %d events", windowRequests, len(u.requests), len(u.events))
	}
}

// progress is the consumer's checkpoints as one string: it changes whenever a
// pending batch is named or a batch is checkpointed.
func progress(storeDir string) string {
	var out []byte
	for _, shard := range []string{stream.ShardName(0), stream.ShardName(1)} {
		data, _ := os.ReadFile(filepath.Join(storeDir, "_checkpoints", "aggregator", shard+".json"))
		var cp collector.Checkpoint
		json.Unmarshal(data, &cp)
		out = append(out, fmt.Sprintf("[%s %s %s]", shard[len(shard)-1:], strings.TrimLeft(cp.Sequence, "0"), strings.TrimLeft(cp.Pending, "0"))...)
	}
	return string(out)
}

// readShare is the least share of a shard's log its checkpoint has passed
// (a file stream's sequence number is the record's offset in the log).
func readShare(streamDir, storeDir string) float64 {
	least := 1.0
	for _, shard := range []string{stream.ShardName(0), stream.ShardName(1)} {
		st, err := os.Stat(filepath.Join(streamDir, shard+".log"))
		if err != nil {
			return 0
		}
		data, _ := os.ReadFile(filepath.Join(storeDir, "_checkpoints", "aggregator", shard+".json"))
		var cp collector.Checkpoint
		json.Unmarshal(data, &cp)
		off, _ := stream.ParseFileSeq(cp.Sequence)
		least = min(least, float64(off)/float64(st.Size()))
	}
	return least
}
