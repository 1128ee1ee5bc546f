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
//
// Every call's usage event is durable in the stream or the spill before the
// handler returns, so nothing is pending when Lambda freezes the instance.
// Bedrock, Kinesis and S3 clients take region, credentials and endpoints the
// standard SDK way.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdaurl"

	"github.com/meter-dev/meter/internal/config"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/emitter"
	"github.com/meter-dev/meter/invoker/lambdaproxy"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx := context.Background()
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
	f.server, err = invoker.New(invoker.Config{Tenants: reg, Bedrock: br, Usage: emfSink{f.emitter, emf}, Prices: book, Store: usageStore,
		ReloadInterval: -1, CallTimeout: 25 * time.Second, Logger: log,
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
