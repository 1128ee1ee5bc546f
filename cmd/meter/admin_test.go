package main

// TestAdminChangeShowsInTeamList starts `meter serve` in-process on
// 127.0.0.1 in front of the local Bedrock server (internal/bedrocklocal),
// with the embedded stream and store (file://).

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/internal/bedrocklocal"
)

// startServe runs meter serve with args until the test ends and returns its
// base URL.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--listen", addr, "--quiet"}, args...), &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("meter serve exited %d: %s", code, stderr.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("meter serve did not start: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://" + addr
}

func call(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// lastLine is the last line of out, which must be a key alone.
func lastLine(t *testing.T, out string) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestAdminChangeShowsInTeamList: an admin key made by `meter admin add-key`
// (printed once, alone on the last line) changes a team over the admin API
// of a running `meter serve`; after a restart the change holds, and `meter
// team list` shows it. A team key gets 403 on the admin routes, including
// GET /report, which serves the month's finance page from --store.
func TestAdminChangeShowsInTeamList(t *testing.T) {
	dir := t.TempDir()
	model, err := bedrocklocal.New(bedrocklocal.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	ms := httptest.NewServer(model)
	defer ms.Close()
	t.Setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", ms.URL)
	t.Setenv("AWS_REGION", "us-east-1")
	tenantsFile := filepath.Join(dir, "tenants.yaml")

	code, out, errs := meter(t, "admin", "add-key", "--tenants", tenantsFile)
	admin := lastLine(t, out)
	if code != 0 || !strings.HasPrefix(admin, "mka_") || len(admin) != 68 {
		t.Fatalf("admin add-key: %d %q %q", code, out, errs)
	}
	code, out, errs = meter(t, "team", "add", "--tenants", tenantsFile, "--team", "search", "--models", "anthropic.*")
	teamKey := lastLine(t, out)
	if code != 0 || !strings.HasPrefix(teamKey, "mk_") {
		t.Fatalf("team add: %d %q %q", code, out, errs)
	}
	// A day of chargeback in the store for the report.
	storeURI, streamURI := "file://"+filepath.Join(dir, "store"), "file://"+filepath.Join(dir, "stream")
	events := filepath.Join(dir, "usage.jsonl")
	os.WriteFile(events, []byte(eventLine("req-1", "ev-1", "2026-11-20T10:00:00Z", 100, 20)+"\n"), 0o644)
	for _, args := range [][]string{
		{"put", "--stream", "file://" + filepath.Join(dir, "old-stream"), events},
		{"aggregate", "--stream", "file://" + filepath.Join(dir, "old-stream"), "--store", storeURI, "--until-idle", "--quiet"},
		{"compact", "--day", "2026-11-20", "--store", storeURI},
	} {
		if code, out, errs := meter(t, args...); code != 0 {
			t.Fatalf("%v: %d %q %q", args, code, out, errs)
		}
	}

	base := startServe(t, "--tenants", tenantsFile, "--stream", streamURI, "--store", storeURI)
	if code, body := call(t, "PATCH", base+"/admin/teams/search", teamKey, `{"cost_center": "CC-9"}`); code != 403 {
		t.Fatalf("team key on an admin route: %d %s", code, body)
	}
	if code, body := call(t, "GET", base+"/report", teamKey, ""); code != 403 {
		t.Fatalf("team key on /report: %d %s", code, body)
	}
	if code, body := call(t, "GET", base+"/report?month=2026-11", "", ""); code != 401 {
		t.Fatalf("no key on /report: %d %s", code, body)
	}
	code, body := call(t, "GET", base+"/report?month=2026-11", admin, "")
	if code != 200 || !strings.Contains(body, "<html") || !strings.Contains(body, "team-a") {
		t.Fatalf("report: %d %.300s", code, body)
	}
	if code, body := call(t, "GET", base+"/report?month=2020-01", admin, ""); code != 404 {
		t.Fatalf("report of an empty month: %d %s", code, body)
	}
	if code, body := call(t, "PATCH", base+"/admin/teams/search", admin, `{"cost_center": "CC-9", "rate_limit": {"rps": 12, "burst": 20}, "monthly_budget_usd": "99.50"}`); code != 200 {
		t.Fatalf("admin patch: %d %s", code, body)
	}
	code, body = call(t, "POST", base+"/admin/teams", admin, `{"id": "ml", "allowed_models": ["amazon.*"]}`)
	if code != 201 || !strings.Contains(body, `"key":"mk_`) {
		t.Fatalf("admin create: %d %s", code, body)
	}

	// A restart on the same file: the change holds, and the CLI lists it.
	base2 := startServe(t, "--tenants", tenantsFile, "--stream", streamURI, "--store", storeURI)
	if code, body := call(t, "GET", base2+"/admin/teams", admin, ""); code != 200 || !strings.Contains(body, `"cost_center":"CC-9"`) || !strings.Contains(body, `"rps":12`) {
		t.Fatalf("after a restart: %d %s", code, body)
	}
	code, out, errs = meter(t, "team", "list", "--tenants", tenantsFile)
	if code != 0 || !strings.Contains(out, "CC-9") || !strings.Contains(out, "12 rps") || !strings.Contains(out, "99.50") ||
		!strings.Contains(out, "ml ") || !strings.Contains(out, " active ") {
		t.Fatalf("team list: %d %q %q", code, out, errs)
	}

	// Rotation from the CLI with a grace, then a revocation by key id.
	code, out, _ = meter(t, "team", "rotate-key", "--tenants", tenantsFile, "--team", "search", "--grace", "0")
	if code != 0 || !strings.HasPrefix(lastLine(t, out), "mk_") || !strings.Contains(out, "ended at once") {
		t.Fatalf("rotate-key --grace 0: %d %q", code, out)
	}
	code, out, _ = meter(t, "team", "list", "--tenants", tenantsFile, "--team", "search")
	if code != 0 || strings.Count(out, " revoked ") != 1 || strings.Count(out, " active   created") != 1 || strings.Contains(out, "ml ") {
		t.Fatalf("team list --team search after rotation: %q", out)
	}
	code, out, _ = meter(t, "admin", "list", "--tenants", tenantsFile)
	if code != 0 || !strings.Contains(out, "adm_") || strings.Contains(out, admin) {
		t.Fatalf("admin list: %q", out)
	}
}
