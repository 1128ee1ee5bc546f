package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersityGWInstall is the command that installs the local S3 server (about a
// minute to build).
const VersityGWInstall = "go install github.com/versity/versitygw/cmd/versitygw@latest"

// VersityGW is a running local S3 server (versitygw, posix backend in a
// temporary directory) with one empty bucket.
type VersityGW struct {
	port   int
	dir    string
	bucket string
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *lockedBuffer
}

// StartVersityGW starts versitygw on a free loopback port, creates a bucket
// and kills the server by its PID at the end of the test. It skips the test,
// loudly, when versitygw is not installed, unless METER_REQUIRE_SERVERS is
// set, when it fails instead.
func StartVersityGW(t testing.TB) *VersityGW {
	t.Helper()
	bin, err := findVersityGW()
	if err != nil {
		msg := fmt.Sprintf("\n%s\nSKIPPING: the local S3 server versitygw is not installed (%v).\n"+
			"Install it with: %s\n%s", banner, err, VersityGWInstall, banner)
		skipOrFail(t, msg)
	}
	g := &VersityGW{dir: t.TempDir(), bucket: "meter-test-" + randomHex(6)}
	t.Cleanup(g.stop)
	// A free port can be taken between choosing and binding it: try a few.
	for attempt := 0; ; attempt++ {
		err = g.start(bin, FreePort(t))
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("starting versitygw: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := g.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(g.bucket)}); err != nil {
		t.Fatalf("creating bucket %s on versitygw: %v\n%s", g.bucket, err, g.logs.String())
	}
	return g
}

// findVersityGW looks on PATH, then in $GOBIN and $(go env GOPATH)/bin.
func findVersityGW() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, p := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("not on PATH nor in %s", strings.Join(dirs, ", "))
}

func (g *VersityGW) start(bin string, port int) error {
	data := filepath.Join(g.dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	// Global flags go before the backend name.
	cmd := exec.Command(bin,
		"--port", "127.0.0.1:"+strconv.Itoa(port),
		"--access", LocalAccessKey, "--secret", LocalSecretKey,
		"--region", LocalRegion, "--quiet",
		"posix", data)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	g.port, g.cmd, g.exited, g.logs = port, cmd, exited, logs
	// Ready when it answers an authenticated request.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		callCtx, c := context.WithTimeout(ctx, time.Second)
		_, err := g.Client().ListBuckets(callCtx, &s3.ListBucketsInput{})
		c()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			g.cmd = nil
			return fmt.Errorf("versitygw on port %d exited: %s", port, strings.TrimSpace(logs.String()))
		case <-ctx.Done():
			g.stop()
			return fmt.Errorf("versitygw on port %d does not answer: %w\n%s", port, err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (g *VersityGW) stop() {
	if g.cmd == nil {
		return
	}
	_ = g.cmd.Process.Kill()
	<-g.exited
	g.cmd = nil
}

// Endpoint is the server's URL, for AWS_ENDPOINT_URL_S3 or a client's BaseEndpoint.
func (g *VersityGW) Endpoint() string { return fmt.Sprintf("http://127.0.0.1:%d", g.port) }

// Bucket is the bucket created for the test.
func (g *VersityGW) Bucket() string { return g.bucket }

// Dir is the posix backend's directory: each bucket is a folder in it.
func (g *VersityGW) Dir() string { return filepath.Join(g.dir, "data") }

// Logs returns what the server printed.
func (g *VersityGW) Logs() string { return g.logs.String() }

// Client returns an S3 client for this server with fixed local credentials
// and region, independent of the environment.
func (g *VersityGW) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       LocalRegion,
		BaseEndpoint: aws.String(g.Endpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider(LocalAccessKey, LocalSecretKey, ""),
		UsePathStyle: true,
	})
}

// Env returns the environment variables that point the SDK's default
// configuration at this server, for SetEnv or a child process.
func (g *VersityGW) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL_S3":       g.Endpoint(),
		"AWS_REGION":                LocalRegion,
		"AWS_ACCESS_KEY_ID":         LocalAccessKey,
		"AWS_SECRET_ACCESS_KEY":     LocalSecretKey,
		"AWS_SESSION_TOKEN":         "",
		"AWS_PROFILE":               "",
		"AWS_EC2_METADATA_DISABLED": "true",
	}
}

// SetEnv sets Env for the rest of the test (t.Setenv: not with t.Parallel),
// so code that loads the SDK's default configuration reaches this server.
func (g *VersityGW) SetEnv(t testing.TB) {
	t.Helper()
	for k, v := range g.Env() {
		t.Setenv(k, v)
	}
}

// URI returns s3://BUCKET/prefix for the test's bucket.
func (g *VersityGW) URI(prefix string) string { return "s3://" + g.bucket + "/" + prefix }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
