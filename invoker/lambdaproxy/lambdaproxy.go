// Package lambdaproxy serves an http.Handler from AWS Lambda: API Gateway REST
// proxy events (payload 1.0) and Lambda function URL events (payload 2.0, the
// shape API Gateway HTTP APIs send too), each answered with a buffered
// response once the handler has returned.
//
// It translates events to and from net/http and nothing else: whatever the
// handler promises before it returns (the invoker's usage event being durable)
// holds before the invocation returns, because the response is built only
// after ServeHTTP is done. Server-sent events are delivered whole, at the end;
// a function URL in RESPONSE_STREAM mode can use lambdaurl.Wrap instead.
package lambdaproxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

// Handler returns a Lambda handler that serves h to both event shapes,
// telling them apart by their fields (httpMethod for API Gateway REST,
// requestContext.http for function URLs and HTTP APIs).
func Handler(h http.Handler) lambda.Handler {
	return handler{apigw: APIGateway(h), url: FunctionURL(h)}
}

type handler struct {
	apigw func(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error)
	url   func(context.Context, events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error)
}

// Invoke implements lambda.Handler.
func (x handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	var shape struct {
		HTTPMethod     string `json:"httpMethod"`
		RequestContext struct {
			HTTP struct {
				Method string `json:"method"`
			} `json:"http"`
		} `json:"requestContext"`
	}
	if err := json.Unmarshal(payload, &shape); err != nil {
		return nil, fmt.Errorf("lambdaproxy: event is not JSON: %w", err)
	}
	switch {
	case shape.HTTPMethod != "":
		var ev events.APIGatewayProxyRequest
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("lambdaproxy: API Gateway proxy event: %w", err)
		}
		resp, err := x.apigw(ctx, ev)
		if err != nil {
			return nil, err
		}
		return json.Marshal(resp)
	case shape.RequestContext.HTTP.Method != "":
		var ev events.LambdaFunctionURLRequest
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("lambdaproxy: function URL event: %w", err)
		}
		resp, err := x.url(ctx, ev)
		if err != nil {
			return nil, err
		}
		return json.Marshal(resp)
	}
	return nil, errors.New("lambdaproxy: neither an API Gateway proxy event (httpMethod) nor a function URL event (requestContext.http)")
}

// APIGateway adapts h to API Gateway REST proxy integration events.
func APIGateway(h http.Handler) func(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	return func(ctx context.Context, ev events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
		q := url.Values{}
		for k, vs := range ev.MultiValueQueryStringParameters {
			q[k] = append(q[k], vs...)
		}
		for k, v := range ev.QueryStringParameters {
			if _, ok := q[k]; !ok {
				q.Set(k, v)
			}
		}
		hdr := http.Header{}
		for k, vs := range ev.MultiValueHeaders {
			for _, v := range vs {
				hdr.Add(k, v)
			}
		}
		for k, v := range ev.Headers {
			if hdr.Get(k) == "" {
				hdr.Set(k, v)
			}
		}
		req, err := newRequest(ctx, ev.HTTPMethod, ev.Path, q.Encode(), hdr, ev.Body, ev.IsBase64Encoded, ev.RequestContext.Identity.SourceIP)
		if err != nil {
			return events.APIGatewayProxyResponse{}, err
		}
		w := serve(h, req)
		body, b64 := w.body()
		single := make(map[string]string, len(w.header))
		for k, vs := range w.header {
			single[k] = strings.Join(vs, ", ")
		}
		return events.APIGatewayProxyResponse{StatusCode: w.status, Headers: single, MultiValueHeaders: w.header,
			Body: body, IsBase64Encoded: b64}, nil
	}
}

// FunctionURL adapts h to Lambda function URL events (buffered invoke mode).
func FunctionURL(h http.Handler) func(context.Context, events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	return func(ctx context.Context, ev events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
		hdr := http.Header{}
		for k, v := range ev.Headers {
			hdr.Set(k, v)
		}
		if len(ev.Cookies) > 0 {
			hdr.Set("Cookie", strings.Join(ev.Cookies, "; "))
		}
		path := ev.RawPath
		if path == "" {
			path = ev.RequestContext.HTTP.Path
		}
		req, err := newRequest(ctx, ev.RequestContext.HTTP.Method, path, ev.RawQueryString, hdr, ev.Body, ev.IsBase64Encoded, ev.RequestContext.HTTP.SourceIP)
		if err != nil {
			return events.LambdaFunctionURLResponse{}, err
		}
		w := serve(h, req)
		body, b64 := w.body()
		single := make(map[string]string, len(w.header))
		var cookies []string
		for k, vs := range w.header {
			if k == "Set-Cookie" {
				cookies = vs
				continue
			}
			single[k] = strings.Join(vs, ", ")
		}
		return events.LambdaFunctionURLResponse{StatusCode: w.status, Headers: single, Body: body, IsBase64Encoded: b64, Cookies: cookies}, nil
	}
}

func newRequest(ctx context.Context, method, path, rawQuery string, hdr http.Header, body string, b64 bool, sourceIP string) (*http.Request, error) {
	raw := []byte(body)
	if b64 {
		var err error
		if raw, err = base64.StdEncoding.DecodeString(body); err != nil {
			return nil, fmt.Errorf("lambdaproxy: body flagged base64 does not decode: %w", err)
		}
	}
	if path == "" {
		path = "/"
	}
	u := &url.URL{Path: path, RawQuery: rawQuery}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("lambdaproxy: %s %s: %w", method, path, err)
	}
	req.Header = hdr
	req.Host = hdr.Get("Host")
	req.RequestURI = u.RequestURI()
	if sourceIP != "" {
		req.RemoteAddr = sourceIP + ":0"
	}
	return req, nil
}

func serve(h http.Handler, req *http.Request) *bufferedResponse {
	w := &bufferedResponse{header: http.Header{}}
	h.ServeHTTP(w, req)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w
}

// bufferedResponse collects a handler's whole response. Flush is a no-op so
// handlers that stream (server-sent events) still run to their end.
type bufferedResponse struct {
	header http.Header
	status int
	buf    bytes.Buffer
}

func (w *bufferedResponse) Header() http.Header { return w.header }

func (w *bufferedResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *bufferedResponse) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.buf.Write(p)
}

func (w *bufferedResponse) Flush() {}

// body returns the response body as Lambda carries it: text as is, anything
// else base64-encoded.
func (w *bufferedResponse) body() (string, bool) {
	if w.buf.Len() == 0 {
		return "", false
	}
	if isText(w.header.Get("Content-Type")) {
		return w.buf.String(), false
	}
	return base64.StdEncoding.EncodeToString(w.buf.Bytes()), true
}

func isText(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/json" || strings.HasSuffix(mt, "+json") ||
		mt == "application/yaml" || mt == "application/xml"
}
