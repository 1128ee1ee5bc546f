// Package testenv starts the local servers integration tests run against.
// It changes no process-wide state: each helper returns an endpoint, and the
// test decides how to point a client at it.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// KinesaliteInstall is the command that installs the local Kinesis server.
const KinesaliteInstall = "npm install --prefix .tools/node kinesalite@3.3.3"

// Region and credentials a local server accepts; any values work.
const (
	LocalRegion    = "us-east-1"
	LocalAccessKey = "local"
	LocalSecretKey = "local"
)

// kinesaliteScript binds kinesalite to loopback (its CLI cannot) on the port
// in argv[3] (0 picks a free one) and prints the port it got.
const kinesaliteScript = `
const path = require('path');
const k = require(path.join(process.argv[2], 'kinesalite'))({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100});
const server = k.listen(Number(process.argv[3]), '127.0.0.1', () => {
  console.log('LISTENING ' + server.address().port);
});
server.on('error', (err) => { console.error(err.message); process.exit(1); });
`

// Kinesalite is a running local Kinesis (kinesalite, in memory).
type Kinesalite struct {
	t           testing.TB
	node        string
	nodeModules string
	script      string

	mu     sync.Mutex
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *lockedBuffer
}

// StartKinesalite starts kinesalite on a free loopback port and stops it at
// the end of the test. It skips the test, loudly, when Node.js or kinesalite
// is not installed.
func StartKinesalite(t testing.TB) *Kinesalite {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, fmt.Sprintf("\n%s\nSKIPPING: Node.js (node) is not on PATH, so the local Kinesis (kinesalite) cannot run.\n"+
			"Install Node.js, then from the repository root: %s\n%s", banner, KinesaliteInstall, banner))
	}
	modules, err := findNodeModules("kinesalite")
	if err != nil {
		skipOrFail(t, fmt.Sprintf("\n%s\nSKIPPING: kinesalite is not installed (%v).\n"+
			"From the repository root run: %s\n(or set METER_NODE_MODULES to a node_modules directory holding it)\n%s",
			banner, err, KinesaliteInstall, banner))
	}
	script := filepath.Join(t.TempDir(), "kinesalite.js")
	if err := os.WriteFile(script, []byte(kinesaliteScript), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &Kinesalite{t: t, node: node, nodeModules: modules, script: script}
	t.Cleanup(k.Stop)
	if err := k.start(0); err != nil {
		t.Fatalf("starting kinesalite: %v", err)
	}
	return k
}

const banner = "********************************************************************************"

// Endpoint is the server's URL, for AWS_ENDPOINT_URL_KINESIS or a client's BaseEndpoint.
func (k *Kinesalite) Endpoint() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return fmt.Sprintf("http://127.0.0.1:%d", k.port)
}

// Port is the loopback port the server listens on; Restart keeps it.
func (k *Kinesalite) Port() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.port
}

// Stop kills the server. Data is lost: kinesalite keeps it in memory.
func (k *Kinesalite) Stop() {
	k.mu.Lock()
	cmd, exited := k.cmd, k.exited
	k.cmd = nil
	k.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart stops the server if it runs and starts a fresh, empty one on the same port.
func (k *Kinesalite) Restart() {
	k.t.Helper()
	k.Stop()
	port := k.Port()
	var err error
	// The port was just released; binding it again may take a moment.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err = k.start(port); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		k.t.Fatalf("restarting kinesalite on port %d: %v", port, err)
	}
}

func (k *Kinesalite) start(port int) error {
	ns, err := startNodeServer("kinesalite", k.node, k.script, k.nodeModules, strconv.Itoa(port))
	if err != nil {
		return err
	}
	port, cmd, exited, logs := ns.port, ns.cmd, ns.exited, ns.logs
	k.mu.Lock()
	k.port, k.cmd, k.exited, k.logs = port, cmd, exited, logs
	k.mu.Unlock()
	// Make sure it answers requests, not just that it bound the port.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		callCtx, c := context.WithTimeout(ctx, time.Second)
		_, err := k.Client().ListStreams(callCtx, &kinesis.ListStreamsInput{})
		c()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kinesalite on port %d does not answer: %w", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Client returns a Kinesis client for this server with fixed local
// credentials and region, independent of the environment.
func (k *Kinesalite) Client() *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:       LocalRegion,
		BaseEndpoint: aws.String(k.Endpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider(LocalAccessKey, LocalSecretKey, ""),
	})
}

// Env returns the environment variables that point the SDK's default
// configuration at this server, for t.Setenv or a child process.
func (k *Kinesalite) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL_KINESIS":  k.Endpoint(),
		"AWS_REGION":                LocalRegion,
		"AWS_ACCESS_KEY_ID":         LocalAccessKey,
		"AWS_SECRET_ACCESS_KEY":     LocalSecretKey,
		"AWS_EC2_METADATA_DISABLED": "true",
	}
}

// CreateStream creates a stream with the given number of shards and waits
// until it is ACTIVE.
func (k *Kinesalite) CreateStream(t testing.TB, name string, shards int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := k.Client()
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(int32(shards))}); err != nil {
		t.Fatalf("creating stream %s: %v", name, err)
	}
	k.WaitActive(t, name)
}

// WaitActive waits until the stream is ACTIVE (after creating or resharding it).
func (k *Kinesalite) WaitActive(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := k.Client()
	for {
		out, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("stream %s not ACTIVE within 30s: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logs returns what the current server process printed.
func (k *Kinesalite) Logs() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.logs == nil {
		return ""
	}
	return k.logs.String()
}

// findNodeModules finds a node_modules directory holding pkg: $METER_NODE_MODULES,
// then, from the working directory up to the repository root (the directory
// with go.mod), DIR/node_modules and DIR/.tools/node/node_modules, then
// /work/main/.tools/node/node_modules.
func findNodeModules(pkg string) (string, error) {
	var tried []string
	has := func(dir string) bool {
		tried = append(tried, dir)
		_, err := os.Stat(filepath.Join(dir, pkg, "package.json"))
		return err == nil
	}
	if dir := os.Getenv("METER_NODE_MODULES"); dir != "" {
		if has(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("METER_NODE_MODULES=%s has no %s", dir, pkg)
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; {
			for _, cand := range []string{filepath.Join(dir, "node_modules"), filepath.Join(dir, ".tools", "node", "node_modules")} {
				if has(cand) {
					return cand, nil
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if dir := "/work/main/.tools/node/node_modules"; has(dir) {
		return dir, nil
	}
	return "", fmt.Errorf("no %s in %s", pkg, strings.Join(tried, ", "))
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
