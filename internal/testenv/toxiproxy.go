package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// ToxiproxyInstall is the command test.sh runs to install the TCP fault proxy
// (the upstream binary is called "server"; test.sh renames it).
const ToxiproxyInstall = "GOBIN=$PWD/.tools/bin go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0 && mv .tools/bin/server .tools/bin/toxiproxy-server"

// Toxiproxy is a running toxiproxy-server (Shopify's TCP fault proxy) on
// 127.0.0.1, driven through its HTTP API: proxies between a component and a
// server, and toxics on them (latency, reset_peer, timeout, bandwidth, ...).
type Toxiproxy struct {
	api    string
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *lockedBuffer
}

// StartToxiproxy starts toxiproxy-server on a free loopback port and kills it
// by its PID at the end of the test; skip or fail as for the other servers
// when it is not installed.
func StartToxiproxy(t testing.TB) *Toxiproxy {
	t.Helper()
	bin, err := exec.LookPath("toxiproxy-server")
	if err != nil {
		skipOrFail(t, fmt.Sprintf("\n%s\nSKIPPING: the TCP fault proxy toxiproxy-server is not on PATH.\nInstall it with: %s\n%s",
			banner, ToxiproxyInstall, banner))
	}
	port := FreePort(t)
	tp := &Toxiproxy{api: fmt.Sprintf("http://127.0.0.1:%d", port), logs: &lockedBuffer{}, exited: make(chan struct{})}
	tp.cmd = exec.Command(bin, "-host", "127.0.0.1", "-port", strconv.Itoa(port))
	tp.cmd.Stdout, tp.cmd.Stderr = tp.logs, tp.logs
	if err := tp.cmd.Start(); err != nil {
		t.Fatalf("starting toxiproxy-server: %v", err)
	}
	go func() { tp.cmd.Wait(); close(tp.exited) }()
	t.Cleanup(func() { tp.cmd.Process.Kill(); <-tp.exited })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(tp.api + "/version")
		if err == nil {
			resp.Body.Close()
			return tp
		}
		select {
		case <-tp.exited:
			t.Fatalf("toxiproxy-server exited: %s", tp.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("toxiproxy-server does not answer: %v\n%s", err, tp.logs.String())
		}
	}
}

func (tp *Toxiproxy) call(t testing.TB, method, path string, body any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, tp.api+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("toxiproxy %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("toxiproxy %s %s: %s %s", method, path, resp.Status, out)
	}
}

// Proxy creates a proxy named name from a new loopback port to upstream
// (host:port) and returns the address to dial instead of upstream.
func (tp *Toxiproxy) Proxy(t testing.TB, name, upstream string) string {
	t.Helper()
	listen := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	tp.call(t, http.MethodPost, "/proxies", map[string]any{"name": name, "listen": listen, "upstream": upstream, "enabled": true})
	return listen
}

// Toxic is one fault on a proxy's traffic, as toxiproxy's API names it.
type Toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`   // latency, reset_peer, timeout, bandwidth, slicer, limit_data
	Stream     string         `json:"stream"` // upstream or downstream
	Toxicity   float64        `json:"toxicity"`
	Attributes map[string]int `json:"attributes"`
}

// AddToxic puts a toxic on proxy.
func (tp *Toxiproxy) AddToxic(t testing.TB, proxy string, x Toxic) {
	t.Helper()
	tp.call(t, http.MethodPost, "/proxies/"+proxy+"/toxics", x)
}

// RemoveToxic takes a toxic off proxy.
func (tp *Toxiproxy) RemoveToxic(t testing.TB, proxy, name string) {
	t.Helper()
	tp.call(t, http.MethodDelete, "/proxies/"+proxy+"/toxics/"+name, nil)
}

// SetEnabled opens (true) or cuts (false) a proxy: cut, it closes every
// connection and refuses new ones, as a network partition does.
func (tp *Toxiproxy) SetEnabled(t testing.TB, proxy string, enabled bool) {
	t.Helper()
	tp.call(t, http.MethodPost, "/proxies/"+proxy, map[string]any{"enabled": enabled})
}

// ScenarioCounts is the end of every fault scenario: what was sent, what the
// chargeback charged, what was lost and what was counted twice.
type ScenarioCounts struct {
	Scenario      string `json:"scenario"`
	Sent          int    `json:"sent"`
	Charged       int    `json:"charged"`
	Lost          int    `json:"lost"`
	DoubleCounted int    `json:"double_counted"`
	Faults        string `json:"faults"`
}

// ScenarioMarker starts the log line a fault scenario reports its counts on;
// `go run ./bench/faults` collects these lines into one table.
const ScenarioMarker = "FAULT-SCENARIO "

// ReportScenario logs c on one line for the table, and fails the test when
// anything was lost or counted twice.
func ReportScenario(t testing.TB, c ScenarioCounts) {
	t.Helper()
	b, _ := json.Marshal(c)
	t.Log(ScenarioMarker + string(b))
	if c.Lost != 0 || c.DoubleCounted != 0 {
		t.Errorf("%s: %d lost, %d double-counted", c.Scenario, c.Lost, c.DoubleCounted)
	}
}
