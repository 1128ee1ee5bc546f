// Command invoker is the invoke API as an AWS Lambda function (runtime
// provided.al2023, arm64 or amd64, built as bootstrap with -tags lambda.norpc).
// The same handler serves API Gateway REST proxy events and function URL
// events (buffered), told apart by their shape.
//
// Configuration, from the environment:
//
//	METER_TENANTS  tenant registry YAML: a path packaged with the function
//	               (e.g. /var/task/tenants.yaml) or s3://BUCKET/KEY, read at
//	               cold start. Required.
//	METER_STREAM   usage stream: kinesis://NAME (or file://DIR for tests). Required.
//	METER_SPILL    where usage events go when the stream cannot take them,
//	               to be re-driven later: s3://BUCKET/PREFIX (recommended;
//	               shared by all instances, each re-drives what it finds) or
//	               file://DIR. Default file:///tmp/meter-spill, which is lost
//	               with the instance: set an S3 prefix in production.
//	METER_PRICES   price CSV for monthly budgets: a path or s3://BUCKET/KEY (default: shipped prices).
//	METER_STORE    store (s3://BUCKET/PREFIX) whose compacted daily Parquet
//	               answers GET /usage; unset, /usage answers 501.
//	METER_RESPONSE_STREAM  "1": serve a function URL in RESPONSE_STREAM mode
//	               (lambdaurl): converse-stream and the /bedrock streaming
//	               routes reach the client as the model writes them. Unset:
//	               buffered answers to API Gateway REST and function URL events.
//	METER_LIMITS   where quotas and budgets are counted:
//	               dynamodb://TABLE[?lease=15m&unavailable=closed|open], shared
//	               by every instance (the table of infra/limits-table.json).
//	               Unset, each instance counts alone ("memory"), so N
//	               concurrent instances could spend N times a budget: set it
//	               whenever a team has quotas or a budget.
//
// Every call's usage event is durable in the stream or the spill before the
// handler returns, so nothing is pending when Lambda freezes the instance.
// Bedrock, Kinesis and S3 clients take region, credentials and endpoints the
// standard SDK way.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdaurl"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/meter-dev/meter/internal/config"
	"github.com/meter-dev/meter/internal/gcpolicy"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/invoker/lambdaproxy"
	"github.com/meter-dev/meter/invoker/limits"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx := context.Background()
	gcpolicy.Apply()
	fn, err := setup(ctx, os.Getenv, log, metrics.NewEMF(os.Stdout))
	if err != nil {
		log.Error("invoker cold start failed", "err", err)
		os.Exit(1)
	}
	if os.Getenv("METER_RESPONSE_STREAM") == "1" {
		// The invocation ends when ServeHTTP has returned, so the usage event
		// is durable before Lambda freezes the instance, as in buffered mode.
		lambdaurl.Start(flushing{fn.server}, lambda.WithEnableSIGTERM(func() { fn.close() }))
		return
	}
	lambda.StartWithOptions(fn.handler, lambda.WithEnableSIGTERM(func() { fn.close() }))
}

// function is the wired invoker of one Lambda instance.
type function struct {
	handler lambda.Handler
	emitter *emitter.Emitter
	server  *invoker.Server
	closers []func() error
}

func (f *function) close() {
	f.server.Close()
	f.emitter.Close()
	for _, c := range f.closers {
		c()
	}
}

// setup wires the invoker from the environment.
func setup(ctx context.Context, getenv func(string) string, log *slog.Logger, emf *metrics.EMF) (*function, error) {
	f := &function{}
	tenantsPath, err := tenantsFile(ctx, getenv("METER_TENANTS"))
	if err != nil {
		return nil, err
	}
	reg, err := tenants.OpenRegistry(tenantsPath)
	if err != nil {
		return nil, fmt.Errorf("METER_TENANTS %s: %w", getenv("METER_TENANTS"), err)
	}
	prod, err := producer(ctx, getenv("METER_STREAM"), f)
	if err != nil {
		return nil, err
	}
	spillURI := getenv("METER_SPILL")
	if spillURI == "" {
		spillURI = "file:///tmp/meter-spill"
		log.Warn("METER_SPILL not set: spilled usage events stay in this instance's /tmp until re-driven; set an s3:// prefix")
	}
	spill, err := store.Open(ctx, spillURI)
	if err != nil {
		return nil, fmt.Errorf("METER_SPILL: %w", err)
	}
	f.emitter, err = emitter.New(emitter.Config{Producer: prod, Spill: spill, RedriveInterval: 2 * time.Second, Logger: log})
	if err != nil {
		return nil, err
	}
	book, err := config.Prices(ctx, getenv("METER_PRICES"))
	if err != nil {
		return nil, fmt.Errorf("METER_PRICES: %w", err)
	}
	var usageStore store.Store
	if u := getenv("METER_STORE"); u != "" {
		if usageStore, err = store.Open(ctx, u); err != nil {
			return nil, fmt.Errorf("METER_STORE: %w", err)
		}
	}
	br, err := invoker.NewBedrockClient(ctx)
	if err != nil {
		return nil, err
	}
	lim, err := openLimits(ctx, getenv("METER_LIMITS"), log, f)
	if err != nil {
		return nil, err
	}
	f.server, err = invoker.New(invoker.Config{Tenants: reg, Bedrock: br, Usage: emfSink{Emitter: f.emitter, emf: emf, limits: limitsStats(lim)}, Prices: book, Store: usageStore,
		Limits: lim, ReloadInterval: -1, CallTimeout: 25 * time.Second, Logger: log,
		// Each instance reads METER_TENANTS once: an admin change made in one
		// would reach neither S3 nor the others. Change the file, then deploy.
		TenantsReadOnly: "in Lambda the tenants are read from METER_TENANTS at cold start; change that file instead"})
	if err != nil {
		f.emitter.Close()
		return nil, err
	}
	f.handler = lambdaproxy.Handler(f.server)
	return f, nil
}

// producer opens the usage stream for writing only, so a cold start does not
// fail while Kinesis is unreachable: events then go to the spill.
func producer(ctx context.Context, uri string, f *function) (stream.Producer, error) {
	if uri == "" {
		return nil, fmt.Errorf("METER_STREAM is required: kinesis://STREAM_NAME")
	}
	p, closeFn, err := stream.OpenProducer(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("METER_STREAM: %w", err)
	}
	f.closers = append(f.closers, closeFn)
	return p, nil
}

// tenantsFile returns a local path of the tenant registry, copying it to /tmp
// first when it lives in S3.
func tenantsFile(ctx context.Context, loc string) (string, error) {
	if loc == "" {
		return "", fmt.Errorf("METER_TENANTS is required: a packaged path or s3://BUCKET/KEY")
	}
	if !strings.HasPrefix(loc, "s3://") {
		return strings.TrimPrefix(loc, "file://"), nil
	}
	data, err := config.Read(ctx, loc)
	if err != nil {
		return "", fmt.Errorf("METER_TENANTS: %w", err)
	}
	path := filepath.Join(os.TempDir(), "meter-tenants.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("METER_TENANTS: %w", err)
	}
	return path, nil
}

// emfSink is the emitter with one CloudWatch EMF line per recorded call:
// calls by status (the dimension), and the usage events that went to the
// spill or were lost with it, so the alarms need no agent. Team, model and
// token counts ride along as properties, not dimensions. A Lambda instance
// handles one call at a time, so the counts' change is this call's.
type emfSink struct {
	*emitter.Emitter
	emf *metrics.EMF
	// limits are the shared limits store's counts since the last event
	// (store errors, leases expired), nil with memory limits.
	limits *limitsDelta
}

// limitsDelta reads a shared limits store's counts and tells what changed
// since it last did.
type limitsDelta struct {
	stats func() metrics.LimitsStats
	mu    sync.Mutex
	last  metrics.LimitsStats
}

func limitsStats(l limits.Limits) *limitsDelta {
	if s, ok := l.(interface{ Stats() metrics.LimitsStats }); ok {
		return &limitsDelta{stats: s.Stats}
	}
	return nil
}

func (d *limitsDelta) values() []metrics.Value {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.stats()
	v := []metrics.Value{
		{Name: metrics.LimitsStoreErrors, Value: float64(now.StoreErrors - d.last.StoreErrors), Unit: "Count"},
		{Name: metrics.LimitsLeasesExpired, Value: float64(now.LeasesExpired - d.last.LeasesExpired), Unit: "Count"},
		{Name: metrics.LimitsAdmittedOpen, Value: float64(now.AdmittedOpen - d.last.AdmittedOpen), Unit: "Count"},
	}
	d.last = now
	return v
}

func (s emfSink) Emit(ctx context.Context, ev *schemas.Event) error {
	before := s.Stats()
	err := s.Emitter.Emit(ctx, ev)
	after := s.Stats()
	values := []metrics.Value{
		{Name: metrics.UsageSpilled, Value: float64(after.Spilled - before.Spilled), Unit: "Count"},
		{Name: metrics.UsageNotRecorded, Value: float64(after.Lost - before.Lost), Unit: "Count"},
		{Name: metrics.UsageSpillBacklog, Value: float64(after.Backlog), Unit: "Count"},
	}
	if err == nil {
		values = append(values, metrics.Value{Name: metrics.InvokerCalls, Value: 1, Unit: "Count"})
	}
	values = append(values, s.limits.values()...)
	s.emf.Write(map[string]string{"stage": "invoker", "status": ev.Status}, values, map[string]any{
		"team_id": ev.TeamID, "model_id": ev.ModelID, "request_id": ev.RequestID, "operation": ev.Operation,
		"input_tokens": ev.InputTokens, "output_tokens": ev.OutputTokens, "latency_ms": ev.LatencyMS})
	return err
}

// flushing serves h with a response writer that can be flushed: lambdaurl's
// writer has no Flush, yet every Write already goes straight into the
// runtime's response stream (an unbuffered pipe), so a flush has nothing to
// do. Without it the invoker's streaming routes would take the failed flush
// for a client that left.
type flushing struct{ h http.Handler }

func (f flushing) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.h.ServeHTTP(flushWriter{w}, r) }

type flushWriter struct{ http.ResponseWriter }

func (flushWriter) Flush() {}

func (w flushWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// openLimits opens METER_LIMITS: dynamodb://TABLE, or memory when unset.
func openLimits(ctx context.Context, uri string, log *slog.Logger, f *function) (limits.Limits, error) {
	if uri == "" || uri == "memory" {
		log.Warn("METER_LIMITS not set: quotas and budgets are counted per instance; set dynamodb://TABLE")
		return limits.NewMemory(), nil
	}
	table, lease, failOpen, err := limits.ParseURI(uri)
	if err != nil {
		return nil, fmt.Errorf("METER_LIMITS: %w", err)
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("METER_LIMITS: loading AWS config: %w", err)
	}
	l, err := limits.NewDynamoDB(limits.DynamoDBConfig{Client: dynamodb.NewFromConfig(cfg), Table: table, Lease: lease, FailOpen: failOpen, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("METER_LIMITS: %w", err)
	}
	switch err := l.Check(ctx); {
	case errors.Is(err, limits.ErrNoTable):
		return nil, fmt.Errorf("METER_LIMITS: %w", err)
	case err != nil:
		log.Warn("the limits table cannot be reached yet; calls of teams with quotas or budgets are refused until it can", "err", err)
	}
	f.closers = append(f.closers, l.Close)
	return l, nil
}
