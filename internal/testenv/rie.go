package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RIEModule is the Lambda runtime interface emulator's module, at the version
// test.sh installs into .tools/bin.
const RIEModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

// RIE is a running Lambda runtime interface emulator (aws-lambda-rie) serving
// one function's bootstrap: the real Lambda Runtime API between the
// emulator and the function, and the Invoke API on a loopback port for tests.
type RIE struct {
	url  string
	cmd  *exec.Cmd
	logs *lockedBuffer
}

// BuildBootstrap builds a Lambda main package as an executable named
// bootstrap with the lambda.norpc tag, the way the deployment builds it, for
// this machine's OS and architecture (the emulator runs it here). pkg is a
// package path relative to the test's directory, e.g. ".".
func BuildBootstrap(t testing.TB, pkg string) string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s as a Lambda bootstrap: %v\n%s", pkg, err, b)
	}
	return out
}

// StartRIE starts aws-lambda-rie on two free loopback ports (both listen
// addresses are given: its default is 0.0.0.0:8080) running bootstrap with
// env added to the test's environment, and kills it by its PID at the end of
// the test. It skips the test, loudly, when the emulator is not installed,
// unless METER_REQUIRE_SERVERS is set, when it fails instead.
func StartRIE(t testing.TB, bootstrap string, env map[string]string) *RIE {
	t.Helper()
	bin, err := exec.LookPath("aws-lambda-rie")
	if err != nil {
		skipOrFail(t, fmt.Sprintf("\n%s\nSKIPPING: the Lambda runtime interface emulator is not installed (%v).\n"+
			"Install it with: go install %s\n%s", banner, err, RIEModule, banner))
	}
	for attempt := 0; ; attempt++ {
		r, err := startRIE(t, bin, bootstrap, env)
		if err == nil {
			t.Cleanup(r.stop)
			return r
		}
		if attempt == 2 {
			t.Fatalf("starting aws-lambda-rie: %v", err)
		}
	}
}

func startRIE(t testing.TB, bin, bootstrap string, env map[string]string) (*RIE, error) {
	emu, api := FreePort(t), FreePort(t)
	r := &RIE{url: fmt.Sprintf("http://127.0.0.1:%d/2015-03-31/functions/function/invocations", emu), logs: &lockedBuffer{}}
	r.cmd = exec.Command(bin, "--runtime-interface-emulator-address", "127.0.0.1:"+strconv.Itoa(emu),
		"--runtime-api-address", "127.0.0.1:"+strconv.Itoa(api), "--log-level", "error", bootstrap)
	r.cmd.Dir = filepath.Dir(bootstrap)
	r.cmd.Env = os.Environ()
	for k, v := range env {
		r.cmd.Env = append(r.cmd.Env, k+"="+v)
	}
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the emulator and the function it starts, ended together
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", emu), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return r, nil
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("not listening on 127.0.0.1:%d after 15s: %s", emu, r.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *RIE) stop() {
	if r.cmd.Process != nil {
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		r.cmd.Wait()
	}
}

// Invoke sends one payload through the emulator and returns the function's
// answer. A function error (the runtime's /error call) comes back as the
// error payload with err set.
func (r *RIE) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoking through aws-lambda-rie: %w\n%s", err, r.logs.String())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`"errorType"`)) && bytes.Contains(body, []byte(`"errorMessage"`)) {
		return body, fmt.Errorf("function error (HTTP %d): %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// Logs is what the emulator and the function wrote to stdout and stderr
// (the function's EMF lines and JSON logs among them).
func (r *RIE) Logs() string { return r.logs.String() }

// LogsOnce returns Logs as soon as has holds for them, or after 10 s. The
// emulator relays the function's output on its own, so a line printed during
// an invocation may arrive after Invoke has returned.
func (r *RIE) LogsOnce(has func(logs string) bool) string {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l := r.logs.String(); has(l) || time.Now().After(deadline) {
			return l
		}
	}
}
