package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// DynaliteInstall is the command that installs the local DynamoDB server.
const DynaliteInstall = "npm install --prefix .tools/node dynalite@4.0.0"

// dynaliteScript binds dynalite to loopback on the port in argv[3] (0 picks a
// free one) and prints the port it got. argv[4], when set, is a directory
// that keeps the tables on disk across restarts.
const dynaliteScript = `
const path = require('path');
const opts = {createTableMs: 0, deleteTableMs: 0, updateTableMs: 0};
if (process.argv[4]) opts.path = process.argv[4];
const d = require(path.join(process.argv[2], 'dynalite'))(opts);
const server = d.listen(Number(process.argv[3]), '127.0.0.1', () => {
  console.log('LISTENING ' + server.address().port);
});
server.on('error', (err) => { console.error(err.message); process.exit(1); });
`

// Dynalite is a running local DynamoDB (dynalite). Its tables live in a
// directory of the test, so Stop and Start (on the same port) keep them:
// a store that goes away and comes back with its data.
type Dynalite struct {
	t           testing.TB
	node        string
	nodeModules string
	script      string
	dataDir     string

	mu     sync.Mutex
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *lockedBuffer
}

// StartDynalite starts dynalite on a free loopback port and stops it at the
// end of the test. It skips the test, loudly, when Node.js or dynalite is not
// installed (fails when METER_REQUIRE_SERVERS is set).
func StartDynalite(t testing.TB) *Dynalite {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, fmt.Sprintf("\n%s\nSKIPPING: Node.js (node) is not on PATH, so the local DynamoDB (dynalite) cannot run.\n"+
			"Install Node.js, then from the repository root: %s\n%s", banner, DynaliteInstall, banner))
	}
	modules, err := findNodeModules("dynalite")
	if err != nil {
		skipOrFail(t, fmt.Sprintf("\n%s\nSKIPPING: dynalite is not installed (%v).\n"+
			"From the repository root run: %s\n(or set METER_NODE_MODULES to a node_modules directory holding it)\n%s",
			banner, err, DynaliteInstall, banner))
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "dynalite.js")
	if err := os.WriteFile(script, []byte(dynaliteScript), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &Dynalite{t: t, node: node, nodeModules: modules, script: script, dataDir: filepath.Join(dir, "data")}
	t.Cleanup(d.Stop)
	if err := d.start(0); err != nil {
		t.Fatalf("starting dynalite: %v", err)
	}
	return d
}

// Endpoint is the server's URL, for AWS_ENDPOINT_URL_DYNAMODB or a client's BaseEndpoint.
func (d *Dynalite) Endpoint() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fmt.Sprintf("http://127.0.0.1:%d", d.port)
}

// Stop kills the server; its tables stay on disk for Start.
func (d *Dynalite) Stop() {
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Start starts the server again on the port it had, with the tables it had.
func (d *Dynalite) Start() {
	d.t.Helper()
	d.mu.Lock()
	port := d.port
	d.mu.Unlock()
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err = d.start(port); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		d.t.Fatalf("restarting dynalite on port %d: %v", port, err)
	}
}

func (d *Dynalite) start(port int) error {
	ns, err := startNodeServer("dynalite", d.node, d.script, d.nodeModules, strconv.Itoa(port), d.dataDir)
	if err != nil {
		return err
	}
	port, cmd, exited, logs := ns.port, ns.cmd, ns.exited, ns.logs
	d.mu.Lock()
	d.port, d.cmd, d.exited, d.logs = port, cmd, exited, logs
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		callCtx, c := context.WithTimeout(ctx, time.Second)
		_, err := d.Client().ListTables(callCtx, &dynamodb.ListTablesInput{})
		c()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("dynalite on port %d does not answer: %w", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Client returns a DynamoDB client for this server with fixed local
// credentials and region, independent of the environment.
func (d *Dynalite) Client() *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       LocalRegion,
		BaseEndpoint: aws.String(d.Endpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider(LocalAccessKey, LocalSecretKey, ""),
	})
}

// Env returns the environment variables that point the SDK's default
// configuration at this server, for t.Setenv or a child process.
func (d *Dynalite) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL_DYNAMODB": d.Endpoint(),
		"AWS_REGION":                LocalRegion,
		"AWS_ACCESS_KEY_ID":         LocalAccessKey,
		"AWS_SECRET_ACCESS_KEY":     LocalSecretKey,
		"AWS_EC2_METADATA_DISABLED": "true",
	}
}

// Logs returns what the current server process printed.
func (d *Dynalite) Logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.logs == nil {
		return ""
	}
	return d.logs.String()
}

// CreateTable creates a table and waits until it is ACTIVE.
func (d *Dynalite) CreateTable(in *dynamodb.CreateTableInput) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := d.Client()
	if _, err := c.CreateTable(ctx, in); err != nil {
		return fmt.Errorf("creating table %s: %w", aws.ToString(in.TableName), err)
	}
	for {
		out, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName})
		if err == nil && out.Table.TableStatus == "ACTIVE" {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("table %s not ACTIVE within 30s: %v", aws.ToString(in.TableName), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
