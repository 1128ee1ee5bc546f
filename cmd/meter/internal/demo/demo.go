// Package demo runs the whole pipeline on one machine with nothing installed:
// the Bedrock-compatible local model server, the invoke API on 127.0.0.1, the
// embedded stream and store on disk, real HTTP traffic from several teams, then
// aggregation, the day's compaction and reconciliation against the model
// server's CloudTrail records. It checks its own result: the chargeback must
// equal, team by team and model by model, what the invoke API answered.
package demo

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/atomicfile"
	"github.com/meter-dev/meter/internal/awshttp"
	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/reconcile"
	"github.com/meter-dev/meter/report"
	"github.com/meter-dev/meter/schemas"
)

// Config sets up a demo run.
type Config struct {
	// Dir holds the stream, store, trail files and tenantsPath; it is created if needed.
	Dir string
	Out io.Writer // the results
	Log io.Writer // progress
	Now func() time.Time
}

// Result is what the demo measured, for tests.
type Result struct {
	Sent       map[Key]*Tally // what the invoke API answered, per team and model
	Chargeback []aggregator.ChargebackRow
	Reconcile  schemas.ReconciliationSummary
	Day        string
	StoreDir   string
	ReportPath string // the finance page of the month to date
}

// Key identifies a team's use of a model.
type Key struct{ Team, Model string }

// Tally counts the answers of one team and model.
type Tally struct {
	Success, Denied, Throttled, Other int64
	InputTokens, OutputTokens         int64
}

type team struct {
	id, costCenter string
	models         []string
	rps            float64
	burst          int
	key            string
}

// The demo's teams and what they may use.
var teams = []team{
	{id: "search", costCenter: "CC-1001", models: []string{"anthropic.*", "us.anthropic.*", "amazon.titan-embed-text-v2:0"}, rps: 200, burst: 50},
	{id: "support", costCenter: "CC-2002", models: []string{"meta.llama3-8b-instruct-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"}, rps: 20, burst: 10},
	{id: "analytics", costCenter: "CC-3003", models: []string{"amazon.titan-text-express-v1", "mistral.*", "amazon.titan-embed-text-v2:0"}, rps: 200, burst: 50},
}

type call struct {
	team       *team
	model      string
	embeddings bool
	converse   bool
	prompt     string
}

// Run runs the demo.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	started := cfg.Now()
	step := func(format string, a ...any) {
		fmt.Fprintf(cfg.Log, "[%5.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, a...))
	}
	dirs := map[string]string{}
	for _, d := range []string{"stream", "store", "cloudtrail", "invocationlogs", "spill"} {
		dirs[d] = filepath.Join(cfg.Dir, d)
		if err := os.MkdirAll(dirs[d], 0o755); err != nil {
			return nil, err
		}
	}
	tenantsPath := filepath.Join(cfg.Dir, "tenants.yaml")
	os.Remove(tenantsPath)

	// The model server, with CloudTrail records delivered as trail files and
	// model invocation logs (with the request metadata meter attaches) as S3 objects.
	model, err := bedrocklocal.New(bedrocklocal.Config{TrailDir: dirs["cloudtrail"], InvocationLogDir: dirs["invocationlogs"], TrailBatch: 100})
	if err != nil {
		return nil, err
	}
	modelURL, stopModel, err := listen(model)
	if err != nil {
		return nil, err
	}
	defer stopModel()
	step("model server (Bedrock Runtime protocol) on %s", modelURL)

	// Teams and their keys.
	for i := range teams {
		t := &teams[i]
		t.key, err = tenants.AddTeam(tenantsPath, tenants.TeamSpec{ID: t.id, CostCenter: t.costCenter, AllowedModels: t.models,
			RateLimit: &tenants.RateLimit{RPS: t.rps, Burst: t.burst}})
		if err != nil {
			return nil, err
		}
	}
	reg, err := tenants.OpenRegistry(tenantsPath)
	if err != nil {
		return nil, err
	}
	step("tenants: %d teams in %s (keys stored as SHA-256 only)", len(teams), tenantsPath)

	// The invoke API: real SDK client to the model server, usage to the embedded stream.
	fsStream, err := stream.OpenFile(dirs["stream"], stream.FileOptions{Shards: 2})
	if err != nil {
		return nil, err
	}
	defer fsStream.Close()
	emitter, err := emitter.New(emitter.Config{Producer: fsStream, SpillDir: dirs["spill"]})
	if err != nil {
		return nil, err
	}
	br := bedrockruntime.New(bedrockruntime.Options{Region: "us-east-1", BaseEndpoint: aws.String(modelURL), RetryMaxAttempts: 1,
		HTTPClient:  awshttp.BufferedBody{},
		Credentials: credentials.NewStaticCredentialsProvider("AKIAMETERDEMO0000001", "demo", "")})
	api, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: br, Usage: emitter, Prices: pricing.Default(), Now: cfg.Now, ReloadInterval: -1})
	if err != nil {
		return nil, err
	}
	defer api.Close()
	apiURL, stopAPI, err := listen(api)
	if err != nil {
		return nil, err
	}
	defer stopAPI()
	step("invoke API on %s; usage events to file://%s", apiURL, dirs["stream"])

	// Traffic.
	sent, err := traffic(ctx, apiURL)
	if err != nil {
		return nil, err
	}
	// One call straight to the model server, bypassing metering: reconcile must find it.
	direct, err := br.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String("amazon.titan-text-express-v1"),
		ContentType: aws.String("application/json"), Body: []byte(`{"inputText":"a call nobody metered"}`)})
	if err != nil {
		return nil, fmt.Errorf("direct model call: %w", err)
	}
	_ = direct
	var n, ok, denied, throttled int64
	for _, t := range sent {
		n += t.Success + t.Denied + t.Throttled + t.Other
		ok += t.Success
		denied += t.Denied
		throttled += t.Throttled
	}
	step("sent %d calls from %d teams: %d answered, %d denied (model not allowed), %d throttled (rate limit); plus 1 direct call bypassing the API",
		n, len(teams), ok, denied, throttled)
	if err := emitter.Close(); err != nil {
		return nil, fmt.Errorf("flushing usage events: %w", err)
	}
	if err := model.Flush(); err != nil {
		return nil, fmt.Errorf("delivering CloudTrail records: %w", err)
	}

	// Aggregate, compact, reconcile.
	st, err := store.OpenFile(dirs["store"])
	if err != nil {
		return nil, err
	}
	cons, err := collector.New(collector.Config{Source: fsStream, Store: st})
	if err != nil {
		return nil, err
	}
	stats, err := cons.Run(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("aggregating: %w", err)
	}
	step("aggregated %d records from 2 shards: %d events, %d quarantined, %d objects written", stats.Records, stats.Events, stats.Quarantined, stats.Objects)
	day := cfg.Now().UTC().Format(schemas.DayLayout)
	comp, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: day, Prices: pricing.Default(), Force: true, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("compacting: %w", err)
	}
	step("compacted %s: %d rows read, %d duplicates dropped, revision %d", day, comp.Manifest.RowsRead, comp.Manifest.DuplicatesDropped, comp.Manifest.Revision)
	all, err := reconcile.RunAll(ctx, reconcile.Config{Day: day, Store: st, CloudTrail: "file://" + dirs["cloudtrail"],
		InvocationLogs: "file://" + dirs["invocationlogs"], Threshold: -1, Now: cfg.Now, DeliveryAllowance: time.Millisecond})
	if err != nil {
		return nil, fmt.Errorf("reconciling: %w", err)
	}
	rep, tokens := *all.CloudTrail, all.Tokens
	step("reconciled against %d CloudTrail records and %d invocation log records", rep.TrailEvents, tokens.LogRecords)

	page, err := report.Build(ctx, report.Config{Store: st, From: day[:8] + "01", To: day, StoreURI: "file://" + dirs["store"], Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("building the report: %w", err)
	}
	var html bytes.Buffer
	if err := page.Write(&html); err != nil {
		return nil, err
	}
	reportPath := filepath.Join(cfg.Dir, "report-"+day[:7]+".html")
	if err := atomicfile.Write(reportPath, &html, 0o644); err != nil {
		return nil, fmt.Errorf("writing the report: %w", err)
	}
	step("wrote the finance page of %s to date", day[:7])

	res := &Result{Sent: sent, Chargeback: comp.Day.Chargeback, Reconcile: rep.Summary(), Day: day, StoreDir: dirs["store"], ReportPath: reportPath}
	printTable(cfg.Out, comp.Day.Chargeback)
	fmt.Fprintf(cfg.Out, "\nReconciliation against CloudTrail (%s):\n%s", day, rep.Human())
	fmt.Fprintf(cfg.Out, "\nTokens against Bedrock's model invocation logs (%s):\n%s", day, tokens.Human())
	fmt.Fprintf(cfg.Out, "\nParquet for Athena:   %s/{events,usage_windows,daily}/dt=%s/\n", dirs["store"], day)
	fmt.Fprintf(cfg.Out, "Chargeback CSV:       %s/%s\n", dirs["store"], schemas.ChargebackCSVKey(day))
	fmt.Fprintf(cfg.Out, "Reconciliation:       %s/reconciliation/dt=%s/\n", dirs["store"], day)
	fmt.Fprintf(cfg.Out, "Finance page (HTML):  %s\n", reportPath)

	problems := verify(sent, comp.Day.Chargeback, rep)
	if tokens.Counts[aggregator.TokensMismatched] != 0 || tokens.Counts[aggregator.TokensUnmetered] != 1 || tokens.Counts[aggregator.TokensUnreadable] != 0 {
		problems = append(problems, fmt.Sprintf("invocation logs: %v, want every metered call matched to the token and only the direct call unmetered", tokens.Counts))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(cfg.Out, "MISMATCH: %s\n", p)
		}
		return res, fmt.Errorf("the chargeback does not match what was sent (%d mismatches)", len(problems))
	}
	fmt.Fprintf(cfg.Out, "\nVerified: for every team and model the chargeback's invocations, input and output tokens, denied and throttled counts equal what the invoke API answered (%d successful calls, %d denied, %d throttled), CloudTrail shows exactly 1 unmetered call: the direct one, and Bedrock's invocation logs confirm every metered call's tokens (joined by request id, carrying meter's event_id as request metadata).\n",
		ok, denied, throttled)
	step("done")
	return res, nil
}

// listen serves h on a free loopback port.
func listen(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	// The demo stops its servers only after every call was answered, so Close
	// (not a graceful Shutdown, which waits for dialled-but-unused connections).
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// traffic sends the demo's calls and tallies the answers.
func traffic(ctx context.Context, apiURL string) (map[Key]*Tally, error) {
	search, support, analytics := &teams[0], &teams[1], &teams[2]
	var calls []call
	prompts := []string{
		"Summarise the quarterly revenue report for the board",
		"Write a haiku about cost allocation",
		"Classify this support ticket: my invoice shows the wrong amount",
		"Translate good morning into French and German",
		"List three risks of unmetered model usage",
	}
	for i := 0; i < 60; i++ {
		p := prompts[i%len(prompts)] + " #" + strconv.Itoa(i)
		calls = append(calls,
			call{team: search, model: "anthropic.claude-3-haiku-20240307-v1:0", prompt: p},
			call{team: search, model: "amazon.titan-embed-text-v2:0", embeddings: true, prompt: p},
			call{team: analytics, model: "amazon.titan-text-express-v1", prompt: p},
			call{team: analytics, model: "mistral.mistral-7b-instruct-v0:2", prompt: p},
		)
		if i%3 == 0 {
			calls = append(calls, call{team: search, model: "us.anthropic.claude-3-5-haiku-20241022-v1:0", converse: true, prompt: p})
			calls = append(calls, call{team: support, model: "meta.llama3-8b-instruct-v1:0", prompt: p})
		}
		if i%10 == 0 {
			// Not on analytics' allow-list: denied, and metered as denied.
			calls = append(calls, call{team: analytics, model: "anthropic.claude-3-5-sonnet-20240620-v1:0", prompt: p})
		}
	}
	tallies := map[Key]*Tally{}
	var mu sync.Mutex
	client := &http.Client{Timeout: 30 * time.Second}
	do := func(c call) error {
		status, hdr, err := send(ctx, client, apiURL, c)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		k := Key{c.team.id, c.model}
		t := tallies[k]
		if t == nil {
			t = &Tally{}
			tallies[k] = t
		}
		switch status {
		case http.StatusOK:
			t.Success++
			in, _ := strconv.ParseInt(hdr.Get("x-input-tokens"), 10, 64)
			out, _ := strconv.ParseInt(hdr.Get("x-output-tokens"), 10, 64)
			t.InputTokens += in
			t.OutputTokens += out
		case http.StatusForbidden:
			t.Denied++
		case http.StatusTooManyRequests:
			t.Throttled++
		default:
			t.Other++
		}
		return nil
	}
	// Steady traffic from 8 clients, kept under each team's rate limit.
	work := make(chan call)
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if err := do(c); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for _, c := range calls {
		work <- c
		if c.team == support {
			time.Sleep(60 * time.Millisecond)
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	// A burst from support: 40 calls at once against a burst of 10.
	burst := make(chan error, 40)
	for i := 0; i < 40; i++ {
		go func(i int) {
			burst <- do(call{team: support, model: "anthropic.claude-3-haiku-20240307-v1:0", prompt: "burst call " + strconv.Itoa(i)})
		}(i)
	}
	for i := 0; i < 40; i++ {
		if err := <-burst; err != nil {
			return nil, err
		}
	}
	return tallies, nil
}

// send makes one call the way an app does: the seed-compatible route for
// InvokeModel, or the Converse route.
func send(ctx context.Context, client *http.Client, apiURL string, c call) (int, http.Header, error) {
	var req *http.Request
	var err error
	if c.converse {
		body, _ := json.Marshal(map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"text": c.prompt}}}},
			"inferenceConfig": map[string]any{"maxTokens": 64}})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/model/"+c.model+"/converse", bytes.NewReader(body))
	} else {
		params := map[string]any{"max_tokens": 64}
		if c.embeddings {
			params = map[string]any{}
		}
		body, _ := json.Marshal(map[string]any{"inputs": c.prompt, "parameters": params})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/invoke_model?model_id="+c.model, bytes.NewReader(body))
	}
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("x-api-key", c.team.key)
	req.Header.Set("content-type", "application/json")
	if c.embeddings {
		req.Header.Set("embeddings", "true")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("calling the invoke API: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusTooManyRequests {
		return 0, nil, fmt.Errorf("%s %s: unexpected %d: %s", c.team.id, c.model, resp.StatusCode, data)
	}
	return resp.StatusCode, resp.Header, nil
}

// verify compares the chargeback with what the API answered.
func verify(sent map[Key]*Tally, rows []aggregator.ChargebackRow, rep aggregator.Report) []string {
	var problems []string
	seen := map[Key]bool{}
	for _, r := range rows {
		k := Key{r.TeamID, r.ModelID}
		seen[k] = true
		t := sent[k]
		if t == nil {
			problems = append(problems, fmt.Sprintf("%s/%s is in the chargeback but was never called", k.Team, k.Model))
			continue
		}
		if r.Invocations != t.Success || r.InputTokens != t.InputTokens || r.OutputTokens != t.OutputTokens || r.Denied != t.Denied || r.Throttled != t.Throttled {
			problems = append(problems, fmt.Sprintf("%s/%s: chargeback %d calls %d/%d tokens %d denied %d throttled; API answered %d calls %d/%d tokens %d denied %d throttled",
				k.Team, k.Model, r.Invocations, r.InputTokens, r.OutputTokens, r.Denied, r.Throttled, t.Success, t.InputTokens, t.OutputTokens, t.Denied, t.Throttled))
		}
	}
	for k := range sent {
		if !seen[k] {
			problems = append(problems, fmt.Sprintf("%s/%s was called but is missing from the chargeback", k.Team, k.Model))
		}
	}
	if n := rep.Counts[aggregator.ReconcileUnmetered]; n != 1 {
		problems = append(problems, fmt.Sprintf("reconciliation found %d unmetered calls, want exactly the 1 direct call", n))
	}
	for _, s := range []string{aggregator.ReconcileUnconfirmed, aggregator.ReconcileMismatched} {
		if n := rep.Counts[s]; n != 0 {
			problems = append(problems, fmt.Sprintf("reconciliation found %d %s calls, want 0", n, s))
		}
	}
	return problems
}

// printTable prints the chargeback as a table with a total line.
func printTable(w io.Writer, rows []aggregator.ChargebackRow) {
	var buf bytes.Buffer
	aggregator.WriteChargebackCSV(&buf, rows, 6, 0)
	recs, _ := csv.NewReader(&buf).ReadAll()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := []int{1, 2, 3, 4, 5, 6, 9, 16, 17}
	fmt.Fprintln(w, "Chargeback (USD, exact; shown to 6 places):")
	for _, rec := range recs {
		var cells []string
		for _, c := range cols {
			cells = append(cells, rec[c])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	var total aggregator.ChargebackRow
	for _, r := range rows {
		total.Invocations += r.Invocations
		total.InputTokens += r.InputTokens
		total.OutputTokens += r.OutputTokens
		total.Costs = total.Costs.Add(r.Costs)
		total.Denied += r.Denied
		total.Throttled += r.Throttled
	}
	fmt.Fprintf(tw, "TOTAL\t\t\t%d\t%d\t%d\t%s\t%d\t%d\t\n", total.Invocations, total.InputTokens, total.OutputTokens, total.Costs.Total().StringFixed(6), total.Denied, total.Throttled)
	tw.Flush()
}
