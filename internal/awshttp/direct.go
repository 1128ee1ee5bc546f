package awshttp

// Pieces of meter's direct request paths (invoker/bedrockdirect.go for
// InvokeModel, internal/stream/kinesis_direct.go for PutRecords): requests
// the SDK would send, built and signed without its middleware stack, whose
// error answers are handed back to the SDK so that errors stay the SDK's.

import (
	"context"
	"net/http"
	"net/url"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/auth"
	"github.com/aws/smithy-go/metrics"
	"github.com/aws/smithy-go/tracing"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Client is what decides whether a direct path may stand in for an SDK
// client's middleware stack: the options every SDK client has, read by each
// direct path from its client's Options.
type Client struct {
	Retryer              aws.Retryer
	Credentials          aws.CredentialsProvider
	AuthSchemePreference []string
	APIOptions           int  // len(Options.APIOptions)
	OwnResolver          bool // a v1 resolver, or a v2 one not of the SDK's default type
	Interceptors         smithyhttp.InterceptorRegistry
	ClientLogMode        aws.ClientLogMode
	TracerProvider       any
	MeterProvider        any
	HTTPClient, Signer   any
	Region               string
}

// Refusal is why the client's middleware would do work a direct path does
// not (so the SDK's path is kept), or "" when a direct path may serve it.
func (c Client) Refusal() string {
	switch {
	case c.Retryer == nil || c.Retryer.MaxAttempts() != 1:
		return "the client retries"
	case c.Credentials == nil || aws.IsCredentialsProvider(c.Credentials, (*aws.AnonymousCredentials)(nil)):
		return "the client does not sign with SigV4"
	case len(c.AuthSchemePreference) > 0 && c.AuthSchemePreference[0] != "sigv4":
		return "the client prefers another auth scheme"
	case c.APIOptions > 0:
		return "the client has extra middleware"
	case c.OwnResolver:
		return "the client has its own endpoint resolver"
	case hasInterceptors(c.Interceptors):
		return "the client has interceptors"
	case c.ClientLogMode != 0:
		return "the client logs requests"
	case !isType(c.TracerProvider, &tracing.NopTracerProvider{}) || !isType(c.MeterProvider, metrics.NopMeterProvider{}):
		return "the client traces or meters calls"
	case c.HTTPClient == nil || c.Signer == nil:
		return "the client has no HTTP client or signer"
	}
	if _, err := url.Parse("https://" + c.Region); c.Region == "" || err != nil {
		return "the client's region is not a host name"
	}
	return ""
}

// IsDefaultResolver reports whether an SDK client's v2 endpoint resolver is
// of the type of the SDK's own (def).
func IsDefaultResolver(r, def any) bool {
	return r != nil && reflect.TypeOf(r) == reflect.TypeOf(def)
}

// SigV4Scope is the signing name and region an endpoint's SigV4 auth option
// names, else service and region.
func SigV4Scope(props *smithy.Properties, service, region string) (string, string) {
	opts, _ := auth.GetAuthOptions(props)
	for _, ao := range opts {
		if ao.SchemeID != auth.SchemeIDSigV4 {
			continue
		}
		if n, ok := smithyhttp.GetSigV4SigningName(&ao.SignerProperties); ok && n != "" {
			service = n
		}
		if r, ok := smithyhttp.GetSigV4SigningRegion(&ao.SignerProperties); ok && r != "" {
			region = r
		}
	}
	return service, region
}

// hasInterceptors reports whether an SDK client's interceptor registry holds
// any interceptor (the SDK copies it with empty, non-nil slices).
func hasInterceptors(r smithyhttp.InterceptorRegistry) bool {
	v := reflect.ValueOf(r)
	for i := 0; i < v.NumField(); i++ {
		if v.Field(i).Len() > 0 {
			return true
		}
	}
	return false
}

// isType reports whether v is nil or of the same type as want (an SDK
// default such as its no-op tracer provider).
func isType(v, want any) bool {
	return v == nil || reflect.TypeOf(v) == reflect.TypeOf(want)
}

// Skew is an SDK client's clock skew correction: the server's clock minus
// ours, learned from every answer's Date header and added to the signing time.
type Skew struct {
	Disabled bool // the client's DisableClockSkewCorrection
	ns       atomic.Int64
}

// SigningTime is the time to sign a request with.
func (s *Skew) SigningTime() time.Time {
	t := time.Now()
	if !s.Disabled {
		t = t.Add(time.Duration(s.ns.Load()))
	}
	return t.UTC()
}

// Learn records the skew an answer shows, by the SDK's rule
// (RecordResponseTiming): from the Date header, unless the answer came from a
// cache (Age) or the call took longer than 15 minutes.
func (s *Skew) Learn(resp *http.Response, sent time.Time) {
	if s.Disabled || resp == nil || resp.Header.Get("Age") != "" {
		return
	}
	date := resp.Header.Get("Date")
	if date == "" {
		return
	}
	now := time.Now()
	server, err := smithyhttp.ParseTime(date)
	if err != nil || now.Sub(sent) > 15*time.Minute {
		return
	}
	s.ns.Store(int64(server.Sub(now)))
}

// Replay lets an SDK client make a call whose answer (or failed send) is
// already in hand: pass Context as the call's context and Client as its
// HTTPClient, and the SDK deserializes, wraps and classifies the answer
// exactly as if it had sent the request itself.
type Replay struct {
	Context context.Context
	Client  Doer
}

// NewReplay prepares a replay of resp (or sendErr) for a call made with ctx.
// The replayed call runs to its send; if ctx was done when the answer came,
// the replay's context is done from the send on, with ctx's cause, as the
// SDK would have seen it.
func NewReplay(ctx context.Context, resp *http.Response, sendErr error) Replay {
	rc := &replayContext{Context: context.WithoutCancel(ctx), done: make(chan struct{}), cause: ctx.Err()}
	return Replay{Context: rc, Client: &replayClient{resp: resp, err: sendErr, ctx: rc}}
}

type replayClient struct {
	resp *http.Response
	err  error
	ctx  *replayContext
}

func (c *replayClient) Do(r *http.Request) (*http.Response, error) {
	if c.resp != nil {
		c.resp.Request = r
	}
	c.ctx.end()
	return c.resp, c.err
}

type replayContext struct {
	context.Context
	done  chan struct{}
	cause error // nil: it never ends
	ended atomic.Bool
}

func (c *replayContext) end() {
	if c.cause != nil && c.ended.CompareAndSwap(false, true) {
		close(c.done)
	}
}

func (c *replayContext) Done() <-chan struct{} { return c.done }

func (c *replayContext) Err() error {
	if c.ended.Load() {
		return c.cause
	}
	return nil
}
