package invoker

// The direct InvokeModel path. InvokeModel is the invoker's hottest call, and
// the SDK runs it through some twenty middlewares per call (endpoint rules,
// auth scheme resolution, retry bookkeeping, user agent assembly, tracing and
// metrics hooks), which cost the invoker more CPU than everything else it does
// for a call. For a *bedrockruntime.Client whose options leave nothing to
// those middlewares (one attempt, SigV4, the SDK's own endpoint rules, no
// extra middleware, interceptors, logging, tracing or metrics), the invoker
// builds the same HTTP request itself: the endpoint resolved once by the
// client's own EndpointResolverV2 with the parameters the SDK binds, the
// request signed by the client's own HTTPSignerV4 with credentials from the
// client's own provider (retrieved per call, as the SDK does), and sent
// through the client's own HTTPClient. Any other client takes the SDK path.
//
// Only answers that succeed are read here. An error answer, or a request that
// never got one, is handed back to the SDK as the answer to its own call
// (replayClient): the SDK deserializes it, wraps it and retries nothing
// exactly as if it had made the call, so error types, messages and request ids
// are the SDK's by construction. bedrockdirect_test.go holds the two paths
// equal request for request and answer for answer.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go/encoding/httpbinding"

	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/meter-dev/meter/internal/awshttp"
)

// directInvoker makes InvokeModel calls for one SDK client.
type directInvoker struct {
	sdk     *bedrockruntime.Client
	client  bedrockruntime.HTTPClient
	creds   aws.CredentialsProvider
	signer  bedrockruntime.HTTPSignerV4
	base    *url.URL    // the resolved endpoint
	headers http.Header // headers the endpoint rules add
	service string      // SigV4 signing name
	region  string      // SigV4 signing region
	agent   string
	skew    awshttp.Skew // the SDK's clock skew correction

	urls   sync.Map // model id -> *url.URL
	cached atomic.Int64
}

// newDirectInvoker returns the direct path for c, or nil and the reason the
// SDK path is kept.
func newDirectInvoker(ctx context.Context, c *bedrockruntime.Client) (*directInvoker, string) {
	o := c.Options()
	if o.BearerAuthTokenProvider != nil {
		return nil, "the client authenticates with a bearer token"
	}
	if why := (awshttp.Client{Retryer: o.Retryer, Credentials: o.Credentials, AuthSchemePreference: o.AuthSchemePreference,
		APIOptions: len(o.APIOptions), Interceptors: o.Interceptors, ClientLogMode: o.ClientLogMode,
		OwnResolver:    o.EndpointResolver != nil || !awshttp.IsDefaultResolver(o.EndpointResolverV2, bedrockruntime.NewDefaultEndpointResolverV2()),
		TracerProvider: o.TracerProvider, MeterProvider: o.MeterProvider, HTTPClient: o.HTTPClient, Signer: o.HTTPSignerV4,
		Region: o.Region}).Refusal(); why != "" {
		return nil, why
	}
	// The parameters the SDK binds (bindEndpointParams), resolved once: the
	// default rules depend on nothing else.
	params := bedrockruntime.EndpointParameters{
		Region:       aws.String(o.Region),
		UseDualStack: aws.Bool(o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateEnabled),
		UseFIPS:      aws.Bool(o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled),
		Endpoint:     o.BaseEndpoint,
	}
	ep, err := o.EndpointResolverV2.ResolveEndpoint(ctx, params)
	if err != nil {
		return nil, "the endpoint does not resolve: " + err.Error()
	}
	d := &directInvoker{sdk: c, client: o.HTTPClient, creds: o.Credentials, signer: o.HTTPSignerV4,
		base: &ep.URI, headers: ep.Headers.Clone(), service: "bedrock", region: o.Region,
		agent: "aws-sdk-go-v2 os/" + runtime.GOOS + " lang/go#" + runtime.Version() + " api/bedrockruntime meter/direct"}
	d.skew.Disabled = o.DisableClockSkewCorrection
	if o.EndpointOptions.DisableHTTPS {
		u := *d.base
		u.Scheme = "http"
		d.base = &u
	}
	d.service, d.region = awshttp.SigV4Scope(&ep.Properties, d.service, d.region)
	return d, ""
}

// InvokeModel makes the call. On success it returns the output, the answer's
// headers and Bedrock's request id; otherwise the SDK's own error for the
// same answer.
func (d *directInvoker) InvokeModel(ctx context.Context, in *bedrockruntime.InvokeModelInput) (*bedrockruntime.InvokeModelOutput, http.Header, string, error) {
	if in.ModelId == nil || *in.ModelId == "" || ctx.Err() != nil {
		// The SDK's own call: it words these errors.
		return sdkInvokeModel(ctx, d.sdk, in)
	}
	req, err := d.request(ctx, in)
	if err != nil {
		return nil, nil, "", err
	}
	sent := time.Now()
	resp, err := d.client.Do(req)
	d.skew.Learn(resp, sent)
	if err != nil || resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return nil, nil, "", d.sdkError(ctx, in, resp, err)
	}
	size := resp.ContentLength
	if size > 256<<20 {
		size = -1 // grown as it arrives
	}
	body, err := readSized(resp.Body, size)
	resp.Body.Close()
	if err != nil {
		return nil, nil, "", d.sdkError(ctx, in, nil, err)
	}
	out := &bedrockruntime.InvokeModelOutput{Body: body}
	if v := resp.Header.Get("Content-Type"); v != "" {
		out.ContentType = &v
	}
	out.PerformanceConfigLatency = types.PerformanceConfigLatency(resp.Header.Get("X-Amzn-Bedrock-PerformanceConfig-Latency"))
	out.ServiceTier = types.ServiceTierType(resp.Header.Get("X-Amzn-Bedrock-Service-Tier"))
	id := resp.Header.Get("X-Amzn-Requestid")
	if id == "" {
		id = resp.Header.Get("X-Amz-RequestId")
	}
	return out, resp.Header, id, nil
}

// maxCachedURLs bounds the per-model URL cache: model ids are checked before
// a call is made, but a caller can still name many.
const maxCachedURLs = 1024

// modelURL is the InvokeModel URL of a model: its path label escaped the
// SDK's way (httpbinding.EscapePath, "/" included) under the endpoint's path.
func (d *directInvoker) modelURL(modelID string) *url.URL {
	if u, ok := d.urls.Load(modelID); ok {
		return u.(*url.URL)
	}
	path := "/model/" + modelID + "/invoke"
	raw := "/model/" + httpbinding.EscapePath(modelID, true) + "/invoke"
	u := *d.base
	u.Path = smithyhttp.JoinPath(d.base.Path, path)
	if d.base.RawPath != "" || raw != path {
		rawBase := d.base.RawPath
		if rawBase == "" {
			rawBase = d.base.Path
		}
		u.RawPath = smithyhttp.JoinPath(rawBase, raw)
	}
	if d.cached.Add(1) <= maxCachedURLs {
		d.urls.Store(modelID, &u)
	}
	return &u
}

// request builds and signs the HTTP request the SDK would send for in.
func (d *directInvoker) request(ctx context.Context, in *bedrockruntime.InvokeModelInput) (*http.Request, error) {
	u := *d.modelURL(*in.ModelId)
	req := (&http.Request{Method: http.MethodPost, URL: &u, Host: u.Host, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, 10), ContentLength: int64(len(in.Body))}).WithContext(ctx)
	body := in.Body
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if len(body) == 0 {
		req.Body, req.GetBody = http.NoBody, nil
	}
	h := req.Header
	for k, v := range d.headers {
		h[k] = v
	}
	set := func(name string, v *string) {
		if v != nil {
			h.Set(name, *v)
		}
	}
	set("Accept", in.Accept)
	set("Content-Type", in.ContentType)
	if in.ContentType == nil && in.Body != nil {
		h.Set("Content-Type", "application/octet-stream") // the SDK's default for a blob payload
	}
	set("X-Amzn-Bedrock-GuardrailIdentifier", in.GuardrailIdentifier)
	set("X-Amzn-Bedrock-GuardrailVersion", in.GuardrailVersion)
	if in.PerformanceConfigLatency != "" {
		h.Set("X-Amzn-Bedrock-PerformanceConfig-Latency", string(in.PerformanceConfigLatency))
	}
	set("X-Amzn-Bedrock-Request-Metadata", in.RequestMetadata)
	if in.ServiceTier != "" {
		h.Set("X-Amzn-Bedrock-Service-Tier", string(in.ServiceTier))
	}
	if in.Trace != "" {
		h.Set("X-Amzn-Bedrock-Trace", string(in.Trace))
	}
	h.Set("User-Agent", d.agent)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	creds, err := d.creds.Retrieve(ctx)
	if err != nil {
		// The SDK words this error: its call, given credentials that fail
		// the same way, fails before it can send anything.
		failing := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return aws.Credentials{}, err })
		_, _, _, err = sdkInvokeModel(ctx, d.sdk, in, func(o *bedrockruntime.Options) { o.Credentials = failing })
		if err == nil {
			err = errors.New("retrieving AWS credentials failed")
		}
		return nil, err
	}
	sum := sha256.Sum256(body)
	if err := d.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), d.service, d.region, d.skew.SigningTime()); err != nil {
		return nil, fmt.Errorf("signing the Bedrock request: %w", err)
	}
	return req, nil
}

// sdkError has the SDK make the same call with the answer (or the transport
// error) already in hand, so the error the invoker classifies is the SDK's.
func (d *directInvoker) sdkError(ctx context.Context, in *bedrockruntime.InvokeModelInput, resp *http.Response, sendErr error) error {
	replay := awshttp.NewReplay(ctx, resp, sendErr)
	_, err := d.sdk.InvokeModel(replay.Context, in, func(o *bedrockruntime.Options) { o.HTTPClient = replay.Client })
	if err == nil {
		// Unreachable for an error answer; a read that failed after a 2xx
		// answer still failed.
		err = sendErr
		if err == nil {
			err = errors.New("reading Bedrock's answer failed")
		}
	}
	return err
}

// invokeModel makes an InvokeModel call by the direct path when the client
// allows one, else through the SDK, and returns the answer's headers and
// Bedrock's request id beside the output (on an error, the id the error
// carries).
func (s *Server) invokeModel(ctx context.Context, in *bedrockruntime.InvokeModelInput) (*bedrockruntime.InvokeModelOutput, http.Header, string, error) {
	if s.direct != nil {
		out, hdr, id, err := s.direct.InvokeModel(ctx, in)
		if err != nil {
			id = errorRequestID(err)
		}
		return out, hdr, id, err
	}
	return sdkInvokeModel(ctx, s.cfg.Bedrock, in)
}

// sdkInvokeModel makes an InvokeModel call through the SDK and returns what
// invokeModel does.
func sdkInvokeModel(ctx context.Context, c BedrockClient, in *bedrockruntime.InvokeModelInput, optFns ...func(*bedrockruntime.Options)) (*bedrockruntime.InvokeModelOutput, http.Header, string, error) {
	out, err := c.InvokeModel(ctx, in, optFns...)
	if err != nil {
		return nil, nil, errorRequestID(err), err
	}
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	return out, rawHeaders(out.ResultMetadata), id, nil
}
