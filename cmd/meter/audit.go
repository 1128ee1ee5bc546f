package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/reconcile"
)

func runBedrockLocal(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bedrock-local", stderr)
	listen := fs.String("listen", "127.0.0.1:8081", "address to listen on")
	trail := fs.String("trail-dir", "", "write CloudTrail log files (gzip JSON, AWSLogs/... layout) under this directory")
	invlogs := fs.String("invocation-log-dir", "", "write Bedrock model invocation logs (gzip JSON lines, AWSLogs/.../BedrockModelInvocationLogs/...) under this directory")
	latency := fs.Duration("latency", 0, "added before every answer, like a model's thinking time")
	failEvery := fs.Int("fail-every", 0, "fail every Nth call with --fail-with")
	failWith := fs.String("fail-with", "ThrottlingException", "exception for --fail-every: ThrottlingException, ValidationException, AccessDeniedException, ModelNotReadyException, InternalServerException")
	region := fs.String("region", "us-east-1", "AWS region the server reports")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	srv, err := bedrocklocal.New(bedrocklocal.Config{TrailDir: *trail, InvocationLogDir: *invlogs, Latency: *latency, FailEvery: *failEvery, FailWith: *failWith,
		Region: *region, TrailInterval: 10 * time.Second})
	if err != nil {
		return usagef("%v", err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	fmt.Fprintf(stdout, "Bedrock-compatible model server on http://%s\n", ln.Addr())
	fmt.Fprintf(stdout, "point the SDK at it: AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://%s (CloudTrail LookupEvents: AWS_ENDPOINT_URL_CLOUDTRAIL, same address)\n", ln.Addr())
	return serveUntil(ctx, ln, srv)
}

// serveUntil serves h on ln until ctx ends, then shuts down gracefully.
func serveUntil(ctx context.Context, ln net.Listener, h http.Handler) error {
	return serveTLSUntil(ctx, ln, h, nil)
}

// serveTLSUntil serves HTTPS when tc is set (HTTP/2 where the client offers
// it), plain HTTP otherwise, until ctx ends.
func serveTLSUntil(ctx context.Context, ln net.Listener, h http.Handler, tc *tls.Config) error {
	hs := invoker.HTTPServer(h, tc)
	errc := make(chan error, 1)
	go func() {
		if tc != nil {
			errc <- hs.ServeTLS(ln, "", "")
			return
		}
		errc <- hs.Serve(ln)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func runReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reconcile", stderr)
	day := fs.String("day", "", "day to reconcile, YYYY-MM-DD (UTC)")
	storeURI := fs.String("store", "", "store holding the usage events: file://DIR or s3://BUCKET/PREFIX")
	trail := fs.String("cloudtrail", "", "CloudTrail source: lookup, s3://BUCKET/PREFIX or file://DIR (optional with --invocation-logs or --bill)")
	threshold := fs.Int("threshold", 0, "exit non-zero (status 3) when more calls than this are unmetered")
	allowance := fs.Duration("delivery-allowance", time.Hour, "calls younger than this are not yet reported unconfirmed")
	w := witnessFlags(fs)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if err := parseDay(*day); err != nil {
		return err
	}
	if *trail == "" && w.logs == "" && w.bill == "" {
		return usagef("--cloudtrail is required (or --invocation-logs or --bill)")
	}
	if err := need("store", *storeURI); err != nil {
		return err
	}
	st, err := openStore(ctx, *storeURI)
	if err != nil {
		return err
	}
	cfg := reconcile.Config{Day: *day, Store: st, CloudTrail: *trail, Threshold: *threshold, DeliveryAllowance: *allowance}
	if err := w.apply(&cfg); err != nil {
		return err
	}
	return reconcileExit(ctx, cfg, stdout)
}
