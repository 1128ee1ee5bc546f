package stream

// The direct PutRecords path. Every group commit of the invoker's usage
// events is one PutRecords, and through the SDK each runs the whole
// middleware stack again (at one client against kinesalite, about a quarter
// of the invoker's CPU). For a *kinesis.Client whose options leave that stack
// nothing to do, the producer builds the request the SDK would send (Kinesis'
// JSON 1.1 protocol), resolves the endpoint with the client's own rules (once
// per account id the credentials carry), signs it with the client's own
// signer, credentials and clock skew correction, and sends it through the
// client's own HTTP client. Error answers and failed sends are handed back to
// the SDK, so errors stay the SDK's; kinesis_direct_test.go holds both paths
// equal against kinesalite.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/meter-dev/meter/internal/awshttp"
)

// directPut makes PutRecords calls for one Kinesis client with one attempt
// each (the producer's own loop is the retry policy).
type directPut struct {
	sdk    *kinesis.Client
	opts   kinesis.Options
	client kinesis.HTTPClient
	signer kinesis.HTTPSignerV4
	skew   awshttp.Skew
	agent  string
	eps    sync.Map // account id -> *kinesisEndpoint
}

type kinesisEndpoint struct {
	url             *url.URL
	headers         http.Header
	service, region string
}

// newDirectPut returns the direct path for c with optFns applied per call,
// or nil and the reason the SDK path is kept.
func newDirectPut(c *kinesis.Client, optFns ...func(*kinesis.Options)) (*directPut, string) {
	o := c.Options()
	for _, fn := range optFns {
		fn(&o)
	}
	if o.AccountIDEndpointMode == aws.AccountIDEndpointModeRequired {
		return nil, "the client requires account-based endpoints"
	}
	if why := (awshttp.Client{Retryer: o.Retryer, Credentials: o.Credentials, AuthSchemePreference: o.AuthSchemePreference,
		APIOptions: len(o.APIOptions), Interceptors: o.Interceptors, ClientLogMode: o.ClientLogMode,
		OwnResolver:    o.EndpointResolver != nil || !awshttp.IsDefaultResolver(o.EndpointResolverV2, kinesis.NewDefaultEndpointResolverV2()),
		TracerProvider: o.TracerProvider, MeterProvider: o.MeterProvider, HTTPClient: o.HTTPClient, Signer: o.HTTPSignerV4,
		Region: o.Region}).Refusal(); why != "" {
		return nil, why
	}
	d := &directPut{sdk: c, opts: o, client: o.HTTPClient, signer: o.HTTPSignerV4,
		agent: "aws-sdk-go-v2 os/" + runtime.GOOS + " lang/go#" + runtime.Version() + " api/kinesis meter/direct"}
	d.skew.Disabled = o.DisableClockSkewCorrection
	if _, err := d.endpoint(context.Background(), ""); err != nil {
		return nil, "the endpoint does not resolve: " + err.Error()
	}
	return d, ""
}

// endpoint resolves the endpoint for calls by account (the SDK binds the
// credentials' account id unless account-based endpoints are disabled).
func (d *directPut) endpoint(ctx context.Context, account string) (*kinesisEndpoint, error) {
	if d.opts.AccountIDEndpointMode == aws.AccountIDEndpointModeDisabled {
		account = ""
	}
	if ep, ok := d.eps.Load(account); ok {
		return ep.(*kinesisEndpoint), nil
	}
	o := d.opts
	params := kinesis.EndpointParameters{
		Region:                aws.String(o.Region),
		UseDualStack:          aws.Bool(o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateEnabled),
		UseFIPS:               aws.Bool(o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled),
		Endpoint:              o.BaseEndpoint,
		AccountIdEndpointMode: aws.String(string(o.AccountIDEndpointMode)),
		OperationType:         aws.String("data"),
	}
	if account != "" {
		params.AccountId = aws.String(account)
	}
	r, err := o.EndpointResolverV2.ResolveEndpoint(ctx, params)
	if err != nil {
		return nil, err
	}
	ep := &kinesisEndpoint{url: &r.URI, headers: r.Headers.Clone(), service: "kinesis", region: o.Region}
	if o.EndpointOptions.DisableHTTPS {
		u := *ep.url
		u.Scheme = "http"
		ep.url = &u
	}
	ep.service, ep.region = awshttp.SigV4Scope(&r.Properties, ep.service, ep.region)
	d.eps.Store(account, ep)
	return ep, nil
}

// putRecordsBody is PutRecords' JSON request.
type putRecordsBody struct {
	Records    []putRecordsEntry `json:"Records"`
	StreamName string            `json:"StreamName"`
}

type putRecordsEntry struct {
	Data            string  `json:"Data"`
	ExplicitHashKey *string `json:"ExplicitHashKey,omitempty"`
	PartitionKey    string  `json:"PartitionKey"`
}

// putRecordsAnswer is PutRecords' JSON answer.
type putRecordsAnswer struct {
	EncryptionType    string
	FailedRecordCount *int32
	Records           []struct {
		ErrorCode, ErrorMessage, SequenceNumber, ShardId *string
	}
}

// PutRecords implements KinesisPutAPI; optFns are the producer's own, already
// applied when the path was chosen.
func (d *directPut) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	body := putRecordsBody{StreamName: aws.ToString(in.StreamName), Records: make([]putRecordsEntry, len(in.Records))}
	simple := in.StreamName != nil && in.StreamARN == nil && in.StreamId == nil && in.DryRun == nil && len(in.Records) > 0 && ctx.Err() == nil
	for i, r := range in.Records {
		if r.Data == nil || r.PartitionKey == nil {
			simple = false
			break
		}
		body.Records[i] = putRecordsEntry{Data: base64.StdEncoding.EncodeToString(r.Data), ExplicitHashKey: r.ExplicitHashKey, PartitionKey: *r.PartitionKey}
	}
	if !simple {
		// The SDK validates and words these, or they need its endpoint rules.
		return d.sdk.PutRecords(ctx, in, optFns...)
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	creds, err := d.opts.Credentials.Retrieve(ctx)
	if err != nil {
		return d.sdk.PutRecords(ctx, in, optFns...) // the SDK words this error
	}
	ep, err := d.endpoint(ctx, creds.AccountID)
	if err != nil {
		return d.sdk.PutRecords(ctx, in, optFns...)
	}
	u := *ep.url
	if u.Path == "" {
		u.Path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	for k, v := range ep.headers {
		req.Header[k] = v
	}
	req.Header["Content-Type"] = []string{"application/x-amz-json-1.1"}
	req.Header["X-Amz-Target"] = []string{"Kinesis_20131202.PutRecords"}
	req.Header["Content-Length"] = []string{strconv.Itoa(len(payload))}
	req.Header["User-Agent"] = []string{d.agent}
	sum := sha256.Sum256(payload)
	if err := d.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), ep.service, ep.region, d.skew.SigningTime()); err != nil {
		return nil, fmt.Errorf("signing the Kinesis request: %w", err)
	}
	sent := time.Now()
	resp, err := d.client.Do(req)
	d.skew.Learn(resp, sent)
	if err != nil || resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return nil, d.sdkError(ctx, in, resp, err, optFns)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ans putRecordsAnswer
	if err == nil {
		err = json.Unmarshal(raw, &ans)
	}
	if err != nil {
		resp.Body = io.NopCloser(bytes.NewReader(raw))
		return nil, d.sdkError(ctx, in, resp, nil, optFns)
	}
	out := &kinesis.PutRecordsOutput{EncryptionType: types.EncryptionType(ans.EncryptionType), FailedRecordCount: ans.FailedRecordCount,
		Records: make([]types.PutRecordsResultEntry, len(ans.Records))}
	for i, r := range ans.Records {
		out.Records[i] = types.PutRecordsResultEntry{ErrorCode: r.ErrorCode, ErrorMessage: r.ErrorMessage, SequenceNumber: r.SequenceNumber, ShardId: r.ShardId}
	}
	return out, nil
}

// sdkError has the SDK make the same call with the answer already in hand.
func (d *directPut) sdkError(ctx context.Context, in *kinesis.PutRecordsInput, resp *http.Response, sendErr error, optFns []func(*kinesis.Options)) error {
	replay := awshttp.NewReplay(ctx, resp, sendErr)
	fns := append(append([]func(*kinesis.Options){}, optFns...), func(o *kinesis.Options) { o.HTTPClient = replay.Client })
	_, err := d.sdk.PutRecords(replay.Context, in, fns...)
	if err == nil {
		err = sendErr
		if err == nil {
			err = errors.New("reading Kinesis' answer failed")
		}
	}
	return err
}
