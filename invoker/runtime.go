package invoker

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/meter-dev/meter/schemas"
)

// RuntimePrefix is where Bedrock Runtime's own routes are served: an app keeps
// its AWS SDK and sets AWS_ENDPOINT_URL_BEDROCK_RUNTIME=https://HOST/bedrock
// and AWS_BEARER_TOKEN_BEDROCK to its team key. The SDKs keep the endpoint's
// path and URL-encode the model id (an inference profile ARN's "/" as %2F),
// which the route's {modelId} receives decoded.
const RuntimePrefix = "/bedrock"

// runtimeRoutes registers InvokeModel, InvokeModelWithResponseStream, Converse
// and ConverseStream with Bedrock's paths, bodies, headers, error shapes and,
// for the streams, the application/vnd.amazon.eventstream framing.
func (s *Server) runtimeRoutes() {
	s.mux.HandleFunc(RuntimePrefix+"/model/{modelId}/invoke", s.method(http.MethodPost, s.handleRuntimeInvoke))
	s.mux.HandleFunc(RuntimePrefix+"/model/{modelId}/invoke-with-response-stream", s.method(http.MethodPost, s.handleRuntimeInvokeStream))
	s.mux.HandleFunc(RuntimePrefix+"/model/{modelId}/converse", s.method(http.MethodPost, s.handleRuntimeConverse))
	s.mux.HandleFunc(RuntimePrefix+"/model/{modelId}/converse-stream", s.method(http.MethodPost, s.handleRuntimeConverseStream))
	s.mux.HandleFunc(RuntimePrefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeCallError(w, &call{runtime: true}, &apiError{status: http.StatusNotFound, code: "not_found",
			msg: "meter serves InvokeModel, InvokeModelWithResponseStream, Converse and ConverseStream; no route " + r.URL.Path})
	})
}

// writeCallError answers a failed call in the shape its route speaks:
// Bedrock's (x-amzn-ErrorType and {"message"}) on the runtime routes, the
// API's {"error": {"code", "message"}} elsewhere.
func writeCallError(w http.ResponseWriter, c *call, e *apiError) {
	if c == nil || !c.runtime {
		writeError(w, e)
		return
	}
	if e.status == http.StatusTooManyRequests || (e.status == http.StatusServiceUnavailable && e.retryAfter > 0) {
		secs := max(int64(e.retryAfter/time.Second), 1)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	w.Header().Set("x-amzn-ErrorType", runtimeErrorType(e.status))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]string{"message": e.msg})
}

// runtimeErrorType names the Bedrock Runtime exception an SDK maps a status
// to: AccessDeniedException, ThrottlingException and the others are typed
// errors in every SDK.
func runtimeErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "UnrecognizedClientException"
	case http.StatusForbidden:
		return "AccessDeniedException"
	case http.StatusNotFound:
		return "ResourceNotFoundException"
	case http.StatusTooManyRequests:
		return "ThrottlingException"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailableException"
	case http.StatusGatewayTimeout:
		return "ModelTimeoutException"
	case http.StatusBadGateway, http.StatusInternalServerError:
		return "InternalServerException"
	}
	return "ValidationException"
}

// runtimeCall starts a call on a runtime route: the key, the team, the model
// allow-list, the body and the limits. It answers the request itself when it
// returns false.
func (s *Server) runtimeCall(w http.ResponseWriter, r *http.Request, op string) (*call, []byte, bool) {
	c := &call{op: op, modelID: r.PathValue("modelId"), runtime: true}
	if !s.admit(w, r, c) {
		return c, nil, false
	}
	body, ok := s.readBody(w, r, c)
	if ok && (op == "InvokeModel" || op == "InvokeModelWithResponseStream") {
		ok = s.callerHeaderMetadata(w, r, c)
	}
	return c, body, ok
}

// invokeHeaders are the request headers of InvokeModel that meter passes on:
// a media type such as application/json (parameters included), at most 128
// characters; anything else is taken as application/json.
func invokeHeaders(r *http.Request) (contentType, accept *string) {
	contentType, accept = aws.String("application/json"), aws.String("application/json")
	if v := r.Header.Get("Content-Type"); mediaType.MatchString(v) {
		contentType = aws.String(v)
	}
	if v := r.Header.Get("Accept"); v != "*/*" && mediaType.MatchString(v) {
		accept = aws.String(v)
	}
	return contentType, accept
}

var mediaType = regexp.MustCompile(`^[A-Za-z0-9!#$&^_.+-]{1,48}/[A-Za-z0-9!#$&^_.+-]{1,48}(;[ A-Za-z0-9!#$&^_.+=-]{0,30})?$`)

// imageOf reads an image model's requested size from its native body, so the
// reservation and the event carry it.
func imageOf(c *call, body []byte) {
	fam := familyOf(c.modelID)
	if fam == nil || fam.modality != ModalityImage || fam.image == nil {
		return
	}
	var native map[string]any
	if json.Unmarshal(body, &native) == nil {
		is := fam.image(native)
		c.image = &is
	}
}

func (s *Server) handleRuntimeInvoke(w http.ResponseWriter, r *http.Request) {
	c, body, ok := s.runtimeCall(w, r, "InvokeModel")
	defer s.release(r, c)
	if !ok {
		return
	}
	imageOf(c, body)
	if !s.reserve(w, r, c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.CallTimeout)
	defer cancel()
	contentType, accept := invokeHeaders(r)
	start := time.Now()
	out, hdr, requestID, err := s.invokeModel(ctx, &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(c.modelID), Body: body, ContentType: contentType, Accept: accept, RequestMetadata: c.metadataHeader(),
	})
	c.latency = time.Since(start)
	c.requestID = requestID
	if err != nil {
		s.fail(w, r, c, s.bedrockError(c, err))
		return
	}
	res := result{InputTokens: -1, OutputTokens: -1}
	if fam := familyOf(c.modelID); fam != nil {
		if parsed, err := fam.parse(out.Body); err == nil {
			res = parsed
		}
	}
	ev := s.event(c, schemas.StatusSuccess)
	ev.InputTokens = tokenCount(hdr, "X-Amzn-Bedrock-Input-Token-Count", res.InputTokens)
	ev.OutputTokens = tokenCount(hdr, "X-Amzn-Bedrock-Output-Token-Count", res.OutputTokens)
	ev.CacheReadInputTokens = tokenCount(hdr, "X-Amzn-Bedrock-Cache-Read-Input-Token-Count", -1)
	ev.CacheWriteInputTokens = tokenCount(hdr, "X-Amzn-Bedrock-Cache-Write-Input-Token-Count", -1)
	if c.image != nil {
		ev.ImageCount, ev.ImageHeight, ev.ImageWidth, ev.ImageSteps, ev.ImageQuality = int64(len(res.Images)), c.image.Height, c.image.Width, c.image.Steps, c.image.Quality
	}
	if !s.finish(w, r, c, ev) {
		return
	}
	setRuntimeHeaders(w, ev)
	w.Header().Set("Content-Type", aws.ToString(out.ContentType))
	w.WriteHeader(http.StatusOK)
	w.Write(out.Body)
}

// setRuntimeHeaders sets the headers Bedrock answers InvokeModel with, from
// the metered event, and meter's own.
func setRuntimeHeaders(w http.ResponseWriter, ev *schemas.Event) {
	setUsageHeaders(w, ev)
	w.Header().Set("x-amzn-RequestId", ev.RequestID)
	w.Header().Set("X-Amzn-Bedrock-Input-Token-Count", strconv.FormatInt(ev.InputTokens, 10))
	w.Header().Set("X-Amzn-Bedrock-Output-Token-Count", strconv.FormatInt(ev.OutputTokens, 10))
	w.Header().Set("X-Amzn-Bedrock-Invocation-Latency", strconv.FormatInt(ev.LatencyMS, 10))
	if ev.CacheReadInputTokens > 0 {
		w.Header().Set("X-Amzn-Bedrock-Cache-Read-Input-Token-Count", strconv.FormatInt(ev.CacheReadInputTokens, 10))
	}
	if ev.CacheWriteInputTokens > 0 {
		w.Header().Set("X-Amzn-Bedrock-Cache-Write-Input-Token-Count", strconv.FormatInt(ev.CacheWriteInputTokens, 10))
	}
}

func (s *Server) handleRuntimeConverse(w http.ResponseWriter, r *http.Request) {
	c, body, ok := s.runtimeCall(w, r, "Converse")
	defer s.release(r, c)
	if !ok {
		return
	}
	s.converse(w, r, c, body)
}

func (s *Server) handleRuntimeConverseStream(w http.ResponseWriter, r *http.Request) {
	c, body, ok := s.runtimeCall(w, r, "ConverseStream")
	defer s.release(r, c)
	if !ok {
		return
	}
	s.converseStream(w, r, c, body)
}

// eventWriter writes a stream's events to the client as
// application/vnd.amazon.eventstream messages, the framing the AWS SDKs
// decode. It stops writing once the client has gone; the caller keeps reading
// Bedrock's stream to its end, so the call is metered in full.
type eventWriter struct {
	w    http.ResponseWriter
	r    *http.Request
	rc   *http.ResponseController
	enc  *eventstream.Encoder
	buf  bytes.Buffer
	gone bool
}

func newEventWriter(w http.ResponseWriter, r *http.Request, requestID string) *eventWriter {
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.Header().Set("x-amzn-RequestId", requestID)
	w.Header().Set("x-request-id", requestID)
	w.WriteHeader(http.StatusOK)
	ew := &eventWriter{w: w, r: r, rc: http.NewResponseController(w), enc: eventstream.NewEncoder()}
	ew.rc.Flush()
	return ew
}

func (ew *eventWriter) write(msg eventstream.Message) {
	if ew.gone {
		return
	}
	if ew.r.Context().Err() != nil {
		ew.gone = true
		return
	}
	ew.buf.Reset()
	if err := ew.enc.Encode(&ew.buf, msg); err != nil {
		ew.gone = true
		return
	}
	if _, err := ew.w.Write(ew.buf.Bytes()); err != nil {
		ew.gone = true
		return
	}
	if err := ew.rc.Flush(); err != nil {
		ew.gone = true
	}
}

// event writes one event of type name with a JSON payload.
func (ew *eventWriter) event(name string, payload any) {
	b, _ := json.Marshal(payload)
	ew.write(eventstream.Message{Headers: eventstream.Headers{
		{Name: ":event-type", Value: eventstream.StringValue(name)},
		{Name: ":content-type", Value: eventstream.StringValue("application/json")},
		{Name: ":message-type", Value: eventstream.StringValue("event")},
	}, Payload: b})
}

// exception ends the stream with one of the stream's modelled exceptions
// (in Bedrock's stream unions: internalServerException,
// modelStreamErrorException, throttlingException, validationException,
// serviceUnavailableException).
func (ew *eventWriter) exception(name, message string) {
	b, _ := json.Marshal(map[string]string{"message": message})
	ew.write(eventstream.Message{Headers: eventstream.Headers{
		{Name: ":exception-type", Value: eventstream.StringValue(name)},
		{Name: ":content-type", Value: eventstream.StringValue("application/json")},
		{Name: ":message-type", Value: eventstream.StringValue("exception")},
	}, Payload: b})
}

func (ew *eventWriter) fail(e *apiError) { ew.exception(streamException(e), e.msg) }

func (ew *eventWriter) left() bool { return ew.gone }

// streamException names the stream exception for an error answer.
func streamException(e *apiError) string {
	switch e.status {
	case http.StatusTooManyRequests:
		return "throttlingException"
	case http.StatusBadRequest:
		return "validationException"
	case http.StatusServiceUnavailable:
		return "serviceUnavailableException"
	case http.StatusBadGateway:
		return "modelStreamErrorException"
	}
	return "internalServerException"
}

// invocationMetrics is what Bedrock appends to the last chunk of an
// InvokeModelWithResponseStream answer: the call's token counts.
type invocationMetrics struct {
	InputTokenCount           *int64 `json:"inputTokenCount"`
	OutputTokenCount          *int64 `json:"outputTokenCount"`
	CacheReadInputTokenCount  *int64 `json:"cacheReadInputTokenCount"`
	CacheWriteInputTokenCount *int64 `json:"cacheWriteInputTokenCount"`
}

func (s *Server) handleRuntimeInvokeStream(w http.ResponseWriter, r *http.Request) {
	c, body, ok := s.runtimeCall(w, r, "InvokeModelWithResponseStream")
	defer s.release(r, c)
	if !ok {
		return
	}
	if !s.reserve(w, r, c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.StreamTimeout)
	defer cancel()
	contentType, accept := invokeHeaders(r)
	start := time.Now()
	out, err := s.cfg.Bedrock.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{
		ModelId: aws.String(c.modelID), Body: body, ContentType: contentType, Accept: accept, RequestMetadata: c.metadataHeader(),
	}, withBufferedBody)
	if err != nil {
		c.latency = time.Since(start)
		c.requestID = errorRequestID(err)
		s.fail(w, r, c, s.bedrockError(c, err))
		return
	}
	c.requestID, _ = awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	es := out.GetStream()
	defer es.Close()
	if ct := aws.ToString(out.ContentType); ct != "" {
		w.Header().Set("X-Amzn-Bedrock-Content-Type", ct)
	}
	ew := newEventWriter(w, r, c.requestID)
	var metrics *invocationMetrics
	var last []byte
	for ev := range es.Events() {
		chunk, ok := ev.(*types.ResponseStreamMemberChunk)
		if !ok {
			continue
		}
		var m struct {
			Metrics *invocationMetrics `json:"amazon-bedrock-invocationMetrics"`
		}
		if json.Unmarshal(chunk.Value.Bytes, &m) == nil && m.Metrics != nil {
			// The chunk with the call's metrics ends the answer: it goes
			// out once the call's usage is durable.
			metrics, last = m.Metrics, chunk.Value.Bytes
			continue
		}
		ew.event("chunk", map[string][]byte{"bytes": chunk.Value.Bytes})
	}
	c.latency = time.Since(start)
	ev := s.event(c, schemas.StatusSuccess)
	if metrics != nil {
		ev.InputTokens, ev.OutputTokens = aws.ToInt64(metrics.InputTokenCount), aws.ToInt64(metrics.OutputTokenCount)
		ev.CacheReadInputTokens, ev.CacheWriteInputTokens = aws.ToInt64(metrics.CacheReadInputTokenCount), aws.ToInt64(metrics.CacheWriteInputTokenCount)
	}
	var lastChunk any
	if last != nil {
		lastChunk = map[string][]byte{"bytes": last}
	}
	s.endStream(r, c, ew, ev, es.Err(), metrics != nil, "chunk", lastChunk)
}
