package main

// Limits that hold across invoker processes. Real servers on 127.0.0.1: four
// `meter serve` processes (this package built as a binary), sharing one
// limits table in dynalite and one usage stream in kinesalite, in front of
// the local model server (internal/bedrocklocal, in this test's process).
// The usage events go through the pipeline (meter aggregate, meter compact)
// to the chargeback, which is compared with what the limits admitted.

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/invoker/limits"
	"github.com/meter-dev/meter/invoker/tenants"
)

const (
	sonnet    = "anthropic.claude-3-5-sonnet-20240620-v1:0" // 0.003 / 0.015 USD per 1k tokens
	haikuID   = "anthropic.claude-3-haiku-20240307-v1:0"
	leaseTest = 3 * time.Second
)

// cluster is four meter serve processes sharing a limits table and a stream.
type cluster struct {
	t       *testing.T
	dir     string
	dyn     *testenv.Dynalite
	keys    map[string]string
	procs   []*exec.Cmd
	addrs   []string
	held    atomic.Int64 // model calls held in flight now
	release chan struct{}
	table   *limits.DynamoDB
}

func startCluster(t *testing.T, teams []tenants.TeamSpec) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), keys: map[string]string{}, release: make(chan struct{})}
	bin := filepath.Join(c.dir, "meter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building meter: %v\n%s", err, out)
	}
	c.dyn = testenv.StartDynalite(t)
	if err := c.dyn.CreateTable(limits.TableDefinition("meter-limits")); err != nil {
		t.Fatal(err)
	}
	kin := testenv.StartKinesalite(t)
	kin.CreateStream(t, "usage", 2)
	var err error
	c.table, err = limits.NewDynamoDB(limits.DynamoDBConfig{Client: c.dyn.Client(), Table: "meter-limits"})
	if err != nil {
		t.Fatal(err)
	}
	// The model: answers after 30 ms; a prompt containing HOLD waits until
	// the test releases it, so calls stay in flight.
	model, err := bedrocklocal.New(bedrocklocal.Config{Latency: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ms := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), "HOLD") {
			c.held.Add(1)
			<-c.release
			c.held.Add(-1)
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		model.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		select {
		case <-c.release:
		default:
			close(c.release)
		}
		ms.Close()
		model.Close()
	})
	tenantsFile := filepath.Join(c.dir, "tenants.yaml")
	for _, spec := range teams {
		if c.keys[spec.ID], err = tenants.AddTeam(tenantsFile, spec); err != nil {
			t.Fatal(err)
		}
	}
	env := os.Environ()
	for k, v := range kin.Env() {
		env = append(env, k+"="+v)
	}
	for k, v := range c.dyn.Env() {
		env = append(env, k+"="+v)
	}
	env = append(env, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME="+ms.URL)
	for k, v := range kin.Env() { // meter aggregate runs in this process
		t.Setenv(k, v)
	}
	for i := 0; i < 4; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		cmd := exec.Command(bin, "serve", "--tenants", tenantsFile, "--stream", "kinesis://usage", "--listen", addr,
			"--limits", "dynamodb://meter-limits?lease="+leaseTest.String(), "--spill-dir", filepath.Join(c.dir, fmt.Sprintf("spill-%d", i)), "--quiet")
		cmd.Env = env
		cmd.Stderr = &lockedWriter{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c.procs, c.addrs = append(c.procs, cmd), append(c.addrs, addr)
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
	}
	for i, addr := range c.addrs {
		for deadline := time.Now().Add(30 * time.Second); ; {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("meter serve %d not ready: %v\n%s", i, err, c.procs[i].Stderr.(*lockedWriter).String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedWriter) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type answer struct {
	status     int
	code, msg  string
	retryAfter int
	in, out    int64
}

var client = &http.Client{Timeout: 30 * time.Second}

// converse makes one Converse call of team through instance i.
func (c *cluster) converse(i int, team, model, prompt string, maxTokens int) answer {
	body, _ := json.Marshal(map[string]any{
		"messages":        []any{map[string]any{"role": "user", "content": []any{map[string]any{"text": prompt}}}},
		"inferenceConfig": map[string]any{"maxTokens": maxTokens},
	})
	req, _ := http.NewRequest("POST", "http://"+c.addrs[i]+"/model/"+model+"/converse", strings.NewReader(string(body)))
	req.Header.Set("x-api-key", c.keys[team])
	resp, err := client.Do(req)
	if err != nil {
		return answer{status: -1, msg: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode}
	a.retryAfter, _ = strconv.Atoi(resp.Header.Get("Retry-After"))
	a.in, _ = strconv.ParseInt(resp.Header.Get("x-input-tokens"), 10, 64)
	a.out, _ = strconv.ParseInt(resp.Header.Get("x-output-tokens"), 10, 64)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil {
		a.code, a.msg = e.Error.Code, e.Error.Message
	}
	return a
}

// load runs clients goroutines calling team through the live instances
// until each is refused for good (a 429 whose Retry-After is not 1 second:
// the limit itself, not calls in flight). It returns the successful answers.
func (c *cluster) load(clients int, instances []int, team, model, prompt string, maxTokens int) []answer {
	var mu sync.Mutex
	var ok []answer
	var wg sync.WaitGroup
	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 0; n < 10000; n++ {
				a := c.converse(instances[(g+n)%len(instances)], team, model, prompt, maxTokens)
				switch {
				case a.status == 200:
					mu.Lock()
					ok = append(ok, a)
					mu.Unlock()
				case a.status == 429 && a.retryAfter <= 1:
					time.Sleep(20 * time.Millisecond)
				case a.status == 429:
					return
				default:
					c.t.Errorf("client %d: %d %s %s", g, a.status, a.code, a.msg)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	return ok
}

// cost prices answers of model at its on-demand rates.
func cost(as []answer, inPer1k, outPer1k string) decimal.Decimal {
	sum := decimal.Zero
	for _, a := range as {
		sum = sum.Add(decimal.NewFromInt(a.in).Mul(decimal.RequireFromString(inPer1k)).Add(decimal.NewFromInt(a.out).Mul(decimal.RequireFromString(outPer1k))).Shift(-3))
	}
	return sum
}

// chargeback runs the pipeline over the stream and returns, per team, the
// chargeback's invocations and total cost for today.
func (c *cluster) chargeback(t *testing.T) map[string]struct {
	invocations int64
	cost        decimal.Decimal
} {
	t.Helper()
	store := "file://" + filepath.Join(c.dir, "store")
	if code, out, errs := meter(t, "aggregate", "--stream", "kinesis://usage", "--store", store, "--until-idle", "--quiet"); code != 0 {
		t.Fatalf("aggregate: %s %s", out, errs)
	}
	day := time.Now().UTC().Format("2006-01-02")
	if code, out, errs := meter(t, "compact", "--day", day, "--store", store, "--force"); code != 0 {
		t.Fatalf("compact: %s %s", out, errs)
	}
	f, err := os.Open(filepath.Join(c.dir, "store", "chargeback", "dt="+day, "chargeback-"+day+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) < 1 {
		t.Fatalf("chargeback: %v", err)
	}
	col := map[string]int{}
	for i, name := range recs[0] {
		col[name] = i
	}
	out := map[string]struct {
		invocations int64
		cost        decimal.Decimal
	}{}
	for _, r := range recs[1:] {
		v := out[r[col["team_id"]]]
		n, _ := strconv.ParseInt(r[col["invocations"]], 10, 64)
		v.invocations += n
		v.cost = v.cost.Add(decimal.RequireFromString(r[col["total_cost"]]))
		out[r[col["team_id"]]] = v
	}
	return out
}

func TestLimitsHoldAcrossInvokerProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four invoker processes")
	}
	one := decimal.RequireFromString("1.00")
	half := decimal.RequireFromString("0.50")
	c := startCluster(t, []tenants.TeamSpec{
		{ID: "quota", AllowedModels: []string{"anthropic.*"}, Quotas: &tenants.Quotas{DailyRequests: 1000}},
		{ID: "capped", AllowedModels: []string{"anthropic.*"}, MonthlyBudgetUSD: one.String()},
		{ID: "outage", AllowedModels: []string{"anthropic.*"}, Quotas: &tenants.Quotas{DailyRequests: 50}},
		{ID: "killed", AllowedModels: []string{"anthropic.*"}, MonthlyBudgetUSD: half.String()},
		{ID: "open", AllowedModels: []string{"anthropic.*"}},
	})
	all := []int{0, 1, 2, 3}
	ctx := context.Background()
	// A prompt of 3,000 words: about 0.009 USD of input on Sonnet, bound to
	// 15,128 input tokens and 100 output (about 0.047 USD).
	big := strings.Repeat("word ", 3000)
	var quotaOK, cappedOK []answer

	t.Run("a daily quota of 1,000 requests across four processes admits exactly 1,000", func(t *testing.T) {
		quotaOK = c.load(64, all, "quota", haikuID, "Name three rivers.", 50)
		if len(quotaOK) != 1000 {
			t.Fatalf("%d calls admitted for a quota of 1,000", len(quotaOK))
		}
		a := c.converse(2, "quota", haikuID, "One more.", 50)
		if a.status != 429 || a.code != "daily_request_quota" || !strings.Contains(a.msg, "1000 requests; 0 left") {
			t.Fatalf("after the quota: %+v", a)
		}
	})

	t.Run("a $1.00 budget with 64 clients across four processes", func(t *testing.T) {
		cappedOK = c.load(64, all, "capped", sonnet, big, 100)
		admitted := cost(cappedOK, "0.003", "0.015")
		if admitted.GreaterThan(one) || len(cappedOK) == 0 {
			t.Fatalf("admitted calls spent %s USD of a 1.00 budget (%d calls)", admitted, len(cappedOK))
		}
		spent, err := c.table.Spent(ctx, "capped", time.Now().UTC().Format("2006-01"))
		if err != nil || !spent.Equal(admitted) {
			t.Fatalf("the limits table counts %s USD, the admitted calls cost %s (%v)", spent, admitted, err)
		}
		a := c.converse(1, "capped", sonnet, big, 100)
		if a.status != 429 || a.code != "monthly_budget" || !strings.Contains(a.msg, "of its monthly budget of 1 USD left") {
			t.Fatalf("after the budget: %+v", a)
		}
		t.Logf("%d calls admitted, spending %s USD of 1.00", len(cappedOK), admitted)
	})

	t.Run("store stopped: 503 for limited teams, nothing admitted twice after", func(t *testing.T) {
		for i := 0; i < 20; i++ {
			if a := c.converse(i%4, "outage", haikuID, "Hello.", 20); a.status != 200 {
				t.Fatalf("call %d: %+v", i, a)
			}
		}
		c.dyn.Stop()
		for i := 0; i < 8; i++ {
			a := c.converse(i%4, "outage", haikuID, "Hello.", 20)
			if a.status != 503 || a.code != "limits_unavailable" || !strings.Contains(a.msg, "cannot be reached") {
				t.Fatalf("while the store is down: %+v", a)
			}
		}
		if a := c.converse(0, "open", haikuID, "Hello.", 20); a.status != 200 {
			t.Fatalf("a team without quotas or budget while the store is down: %+v", a)
		}
		c.dyn.Start()
		n := 20 + len(c.load(16, all, "outage", haikuID, "Hello.", 20))
		if n != 50 {
			t.Fatalf("%d calls admitted in all for a quota of 50", n)
		}
	})

	var inflight int
	var boundEach decimal.Decimal
	t.Run("SIGKILL an instance holding reservations: released after the lease", func(t *testing.T) {
		// Eight calls held in the model by instance 0, then instance 0 dies.
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); c.converse(0, "killed", sonnet, "HOLD "+big, 100) }()
		}
		for deadline := time.Now().Add(20 * time.Second); c.held.Load() < 8; {
			if time.Now().After(deadline) {
				t.Fatalf("%d calls reached the model", c.held.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
		inflight = int(c.held.Load())
		c.procs[0].Process.Signal(syscall.SIGKILL)
		c.procs[0].Wait()
		close(c.release)
		wg.Wait()
		counts, err := c.table.Counts(ctx, "killed")
		if err != nil || counts.Reservations != inflight {
			t.Fatalf("after the kill: %+v %v; want %d reservations held", counts, err, inflight)
		}
		boundEach = counts.CostHeld.Div(decimal.NewFromInt(int64(inflight)))
		killedAt := time.Now()
		// While the lease runs, what the dead instance held is not available.
		early := c.load(16, []int{1, 2, 3}, "killed", sonnet, big, 100)
		if time.Since(killedAt) < leaseTest {
			earlyCost := cost(early, "0.003", "0.015")
			if earlyCost.Add(counts.CostHeld).GreaterThan(half) {
				t.Fatalf("spent %s while %s was still reserved by the dead instance", earlyCost, counts.CostHeld)
			}
		}
		time.Sleep(time.Until(killedAt.Add(leaseTest + 500*time.Millisecond)))
		late := c.load(16, []int{1, 2, 3}, "killed", sonnet, big, 100)
		counts, err = c.table.Counts(ctx, "killed")
		if err != nil || counts.Reservations != 0 || counts.Released != inflight {
			t.Fatalf("after the lease: %+v %v; want %d released", counts, err, inflight)
		}
		spent := cost(append(early, late...), "0.003", "0.015")
		if !spent.Equal(counts.Spent) || spent.GreaterThan(half) {
			t.Fatalf("the table counts %s, the calls spent %s, budget %s", counts.Spent, spent, half)
		}
		// The budget was used up to less than one call's bound: what the dead
		// instance held was available again.
		if half.Sub(spent).GreaterThanOrEqual(boundEach) {
			t.Fatalf("spent %s of %s with calls of bound %s refused: the dead instance's reservations were not released", spent, half, boundEach)
		}
	})

	t.Run("the chargeback equals what the limits admitted", func(t *testing.T) {
		cb := c.chargeback(t)
		if got := cb["quota"]; got.invocations != 1000 {
			t.Errorf("chargeback of quota: %+v, want 1000 invocations", got)
		}
		if got, want := cb["capped"], cost(cappedOK, "0.003", "0.015"); got.invocations != int64(len(cappedOK)) || !got.cost.Equal(want) || got.cost.GreaterThan(one) {
			t.Errorf("chargeback of capped: %d calls %s USD; admitted %d calls %s USD", got.invocations, got.cost, len(cappedOK), want)
		}
		if got := cb["outage"]; got.invocations != 50 {
			t.Errorf("chargeback of outage: %+v, want 50 invocations", got)
		}
		// The killed instance's calls in flight were served by the model and
		// never metered: the table and the chargeback both leave them out,
		// so they differ by at most those calls' bounds.
		spent, _ := c.table.Spent(ctx, "killed", time.Now().UTC().Format("2006-01"))
		if got := cb["killed"]; got.cost.Sub(spent).Abs().GreaterThan(boundEach.Mul(decimal.NewFromInt(int64(inflight)))) || got.cost.GreaterThan(half) {
			t.Errorf("chargeback of killed: %s USD; the table counts %s (%d calls in flight at the kill)", got.cost, spent, inflight)
		} else {
			t.Logf("killed: chargeback %s USD, table %s USD, %d calls in flight at the kill", got.cost, spent, inflight)
		}
	})
}

// TestServeRefusesAMissingLimitsTable: a table that does not exist is a
// configuration error, told at start (an unreachable one is not: the server
// starts and refuses limited calls until it can reach it).
func TestServeRefusesAMissingLimitsTable(t *testing.T) {
	d := testenv.StartDynalite(t)
	for k, v := range d.Env() {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	code, out, errs := meter(t, "serve", "--tenants", filepath.Join(dir, "t.yaml"), "--stream", "file://"+dir+"/s",
		"--limits", "dynamodb://no-such-table", "--listen", "127.0.0.1:0")
	if code == 0 || out != "" || !strings.Contains(errs, "limits table does not exist: no-such-table") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
