package invoker_test

// Fault scenario against real parts on 127.0.0.1: the invoker's HTTP API, the
// local Bedrock Runtime server reached by the real SDK client, and the
// embedded file stream and file spill on a small tmpfs the test mounts (so
// the disk really fills: the test runs as root, as ./test.sh does in CI).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/invoker/limits"
	"github.com/meter-dev/meter/invoker/tenants"
)

// mountSmallDisk mounts a tmpfs of size bytes on a new directory.
func mountSmallDisk(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		if os.Getenv("METER_REQUIRE_SERVERS") != "" {
			t.Fatalf("mounting a small tmpfs for the full-disk scenario (needs root): %v", err)
		}
		t.Skipf("mounting a small tmpfs needs root: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fillDisk writes path until the disk refuses another byte.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{64 << 10, 4 << 10, 256, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	f.Sync()
}

// TestNoUsageLostOnAFullDisk: the embedded stream and the spill share a disk
// that fills while calls are made. Calls already at Bedrock when it fills
// have their events written into the spill's reserve; new calls are refused
// with 503 usage_unavailable before they reach Bedrock; once room returns,
// calls are served again and the spill drains into the stream. Every answered
// call's event is in the stream: 0 lost; none is recorded twice for one call.
func TestNoUsageLostOnAFullDisk(t *testing.T) {
	disk := mountSmallDisk(t, 4<<20)
	models := startModelServer(t, bedrocklocal.Config{Latency: 5 * time.Millisecond})
	fs, err := stream.OpenFile(filepath.Join(disk, "stream"), stream.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	em, err := emitter.New(emitter.Config{Producer: fs, SpillDir: filepath.Join(disk, "spill"), ReserveBytes: 512 << 10,
		ProbeInterval: 20 * time.Millisecond, RedriveInterval: 50 * time.Millisecond, PutTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	tenantsFile := filepath.Join(t.TempDir(), "tenants.yaml")
	key, err := tenants.AddTeam(tenantsFile, tenants.TeamSpec{ID: "search", AllowedModels: []string{"anthropic.*"}})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := tenants.OpenRegistry(tenantsFile)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: sdkClient(models.URL), Usage: em, Prices: pricing.Default(),
		Limits: limits.NewMemory(), ReloadInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	api := httptest.NewServer(srv)
	defer api.Close()

	var mu sync.Mutex
	answered := map[string]int{} // request id -> 200 answers
	codes := map[string]int{}    // status/code -> calls
	call := func() {
		req, _ := http.NewRequest(http.MethodPost, api.URL+"/invoke_model?model_id="+haiku, strings.NewReader(`{"inputs": "hello there"}`))
		req.Header.Set("x-api-key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		mu.Lock()
		defer mu.Unlock()
		if resp.StatusCode == http.StatusOK {
			answered[resp.Header.Get("x-request-id")]++
			codes["200"]++
			return
		}
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		json.Unmarshal(body, &e)
		codes[fmt.Sprintf("%d %s", resp.StatusCode, e.Error.Code)]++
	}
	load := func(calls int) {
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < calls/8; i++ {
					call()
				}
			}()
		}
		wg.Wait()
	}

	load(80) // a healthy start
	fillDisk(t, filepath.Join(disk, "filler"))
	load(400) // the disk is full
	mu.Lock()
	refused := codes["503 usage_unavailable"]
	mu.Unlock()
	if refused == 0 || em.Ready() {
		t.Fatalf("with the disk full, no call was refused before reaching Bedrock (ready %v): %v", em.Ready(), codes)
	}

	os.Remove(filepath.Join(disk, "filler"))
	for deadline := time.Now().Add(10 * time.Second); !em.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the emitter did not find room again after the disk was freed")
		}
	}
	before := codes["200"]
	load(80)
	if got := codes["200"] - before; got != 80 {
		t.Fatalf("after room returned, %d of 80 calls served: %v", got, codes)
	}
	for deadline := time.Now().Add(10 * time.Second); em.Spilled(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the spill did not drain into the stream")
		}
	}
	if _, err := os.Stat(filepath.Join(disk, "spill", emitter.ReserveFile)); err != nil {
		t.Fatalf("the spill's reserve is not held again: %v", err)
	}

	e := &env{t: t, fs: fs, readFrom: map[string]int{}}
	inStream := map[string]int{}
	for _, ev := range e.newEvents(t) {
		inStream[ev.RequestID]++
	}
	lost, extra, unanswered := 0, 0, 0
	for id := range answered {
		if inStream[id] == 0 {
			lost++
		}
	}
	for id, n := range inStream {
		extra += n - 1
		if answered[id] == 0 {
			unanswered++
		}
	}
	st := em.Stats()
	t.Logf("full disk: %d calls answered, %d refused before Bedrock, other %v; stream holds %d events (%d extra copies, deduplicated by request id); %d spilled; lost %d; emitter lost %d",
		len(answered), refused, codes, len(inStream), extra, st.Spilled, lost, st.Lost)
	testenv.ReportScenario(t, testenv.ScenarioCounts{Scenario: "invoker on a full disk", Sent: len(answered), Charged: len(answered) - lost, Lost: lost + int(st.Lost), DoubleCounted: unanswered,
		Faults: fmt.Sprintf("stream and spill on a 4 MiB tmpfs filled under 8 clients; %d calls refused before reaching Bedrock until room returned", refused)})
	if lost != 0 || st.Lost != 0 {
		t.Fatalf("%d answered calls have no event in the stream (emitter lost %d)", lost, st.Lost)
	}
	if unanswered != 0 {
		t.Fatalf("%d events in the stream belong to no answered call", unanswered)
	}
	for id, n := range answered {
		if n != 1 {
			t.Fatalf("request id %s answered %d times", id, n)
		}
	}
	if codes["503 usage_not_recorded"] != 0 {
		t.Fatalf("calls served by Bedrock were answered 503 without their usage recorded: %v", codes)
	}
}
