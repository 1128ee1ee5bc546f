// Package invoker is the invoke API: it authenticates a team's API key against
// the tenant registry, enforces the team's allowed models, rate limit, quotas
// and budget, calls Amazon Bedrock, and records one usage event per call.
//
// It must never answer a call whose usage event could be lost: the response is
// written only after the event is durable in the stream or the local spill.
// Token counts come from Bedrock (response headers, usage blocks, stream
// metadata), never from estimating text length. Keys are stored only as hashes
// and never appear in events or logs.
package invoker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/invoker/limits"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

// BedrockClient is the part of the Bedrock Runtime client the invoker calls;
// *bedrockruntime.Client implements it.
type BedrockClient interface {
	InvokeModel(ctx context.Context, in *bedrockruntime.InvokeModelInput, optFns ...func(*bedrockruntime.Options)) (*bedrockruntime.InvokeModelOutput, error)
	Converse(ctx context.Context, in *bedrockruntime.ConverseInput, optFns ...func(*bedrockruntime.Options)) (*bedrockruntime.ConverseOutput, error)
	ConverseStream(ctx context.Context, in *bedrockruntime.ConverseStreamInput, optFns ...func(*bedrockruntime.Options)) (*bedrockruntime.ConverseStreamOutput, error)
	InvokeModelWithResponseStream(ctx context.Context, in *bedrockruntime.InvokeModelWithResponseStreamInput, optFns ...func(*bedrockruntime.Options)) (*bedrockruntime.InvokeModelWithResponseStreamOutput, error)
}

// UsageSink records usage events; *emitter.Emitter implements it. Emit returns only
// when the event is durable.
type UsageSink interface {
	Emit(ctx context.Context, e *schemas.Event) error
}

// PriceBook prices an event; *pricing.Book implements it.
type PriceBook interface {
	Cost(e *schemas.Event) (schemas.Costs, error)
}

// Config wires a Server.
type Config struct {
	Tenants *tenants.Registry // required
	Bedrock BedrockClient     // required; see NewBedrockClient
	Usage   UsageSink         // required; see emitter.New
	// Prices prices successful calls for the monthly budget. A team with a
	// budget may call only models with a price in force: other calls (all of
	// them without a price book) are refused with 503 budget_unenforceable.
	Prices PriceBook
	// Limits counts quotas and budgets (default limits.NewMemory()). Each
	// call reserves the most it can use, bound from its request (bounds.go).
	Limits limits.Limits
	Now    func() time.Time // default time.Now
	// Region is recorded on events; default: the Bedrock client's region.
	Region string
	// MaxBodyBytes limits request bodies (default 4 MiB); larger ones get 413.
	MaxBodyBytes int64
	// CallTimeout bounds one InvokeModel or Converse call (default 60s);
	// StreamTimeout bounds a whole ConverseStream (default 10m).
	CallTimeout   time.Duration
	StreamTimeout time.Duration
	// ReloadInterval is how often the tenants file is checked for changes
	// (default 1s; negative disables reloading).
	ReloadInterval time.Duration
	// Models adds model ids to the catalog /list_foundation_models filters by
	// each team's allow-list (the built-in catalog lists every family's models).
	Models []string
	// Store, when set, answers GET /usage from its compacted daily Parquet
	// (daily/dt=YYYY-MM-DD/); without it /usage answers 501.
	Store UsageStore
	// Report, when set, answers GET /report (admin keys) with the finance
	// page of a month; without it /report answers 501.
	Report ReportFunc
	// TenantsReadOnly, when set, says why the admin API may not change the
	// tenants file here (for example a copy of an S3 object): its changes
	// answer 501 with that reason; reads still work.
	TenantsReadOnly string

	Logger *slog.Logger
	// Registry receives the server's metrics, served at /metrics (default: a
	// registry of its own).
	Registry *prometheus.Registry
}

// Server is the invoke API, an http.Handler.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	stop    chan struct{}
	metrics *metrics.Invoker
	known   map[string]struct{} // models a metric label may name
	// usage caches compacted days for GET /usage; usageSlots bounds the
	// reads it does at once.
	usage      usageCache
	usageSlots chan struct{}
	watching   chan struct{}  // closed when the tenants watch has stopped
	direct     *directInvoker // InvokeModel without the SDK's middleware; nil: through the SDK
}

// Validate reports the first thing wrong with cfg; zero values take defaults.
func (cfg *Config) Validate() error {
	switch {
	case cfg.Tenants == nil:
		return errors.New("invoker: no tenant registry")
	case cfg.Bedrock == nil:
		return errors.New("invoker: no Bedrock client")
	case cfg.Usage == nil:
		return errors.New("invoker: no usage sink")
	}
	return nil
}

// New validates cfg, fills in defaults and starts reloading the tenants file.
// Call Close to stop reloading.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Limits == nil {
		cfg.Limits = limits.NewMemory()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Region == "" {
		if c, ok := cfg.Bedrock.(*bedrockruntime.Client); ok {
			cfg.Region = c.Options().Region
		}
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 60 * time.Second
	}
	if cfg.StreamTimeout <= 0 {
		cfg.StreamTimeout = 10 * time.Minute
	}
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, log: log, mux: http.NewServeMux(), stop: make(chan struct{}), usageSlots: make(chan struct{}, 2)}
	s.known = s.knownModels()
	if c, ok := cfg.Bedrock.(*bedrockruntime.Client); ok {
		var why string
		if s.direct, why = newDirectInvoker(context.Background(), c); s.direct == nil {
			log.Info("InvokeModel goes through the SDK's middleware", "reason", why)
		}
	}
	s.opsRoutes()
	s.mux.HandleFunc("/invoke_model", s.method(http.MethodPost, s.handleInvoke))
	s.mux.HandleFunc("/list_foundation_models", s.method(http.MethodGet, s.handleList))
	s.mux.HandleFunc("/model/{model_id}/converse", s.method(http.MethodPost, s.handleConverse))
	s.mux.HandleFunc("/model/{model_id}/converse-stream", s.method(http.MethodPost, s.handleConverseStream))
	s.mux.HandleFunc("/openapi.json", s.method(http.MethodGet, s.handleOpenAPI))
	s.mux.HandleFunc("/usage", s.method(http.MethodGet, s.handleUsage))
	s.runtimeRoutes()
	s.adminRoutes()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{status: http.StatusNotFound, code: "not_found", msg: "no route " + r.URL.Path})
	})
	if cfg.ReloadInterval > 0 && cfg.Tenants.Path() != "" {
		s.watching = make(chan struct{})
		go func() {
			defer close(s.watching)
			cfg.Tenants.Watch(s.stop, cfg.ReloadInterval, log)
		}()
	}
	return s, nil
}

// Close stops reloading the tenants file. It does not close the usage sink.
func (s *Server) Close() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	if s.watching != nil {
		<-s.watching
	}
	// Keys' last use, kept in memory, is persisted beside the tenants file.
	if err := s.cfg.Tenants.FlushLastUsed(); err != nil {
		s.log.Warn("persisting keys' last use", "err", err)
	}
	return nil
}

// NewBedrockClient builds a Bedrock Runtime client the standard SDK way:
// region, credentials and endpoint (AWS_ENDPOINT_URL_BEDROCK_RUNTIME) from the
// environment and shared config. It makes one attempt per call, whatever the
// options say: every Bedrock attempt has its own request id and CloudTrail
// record, so an SDK retry would be a call nobody metered. Throttles reach the
// caller as 429 with Retry-After instead, and the caller retries.
func NewBedrockClient(ctx context.Context, optFns ...func(*config.LoadOptions) error) (*bedrockruntime.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx, optFns...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS config: %w", err)
	}
	return bedrockruntime.NewFromConfig(cfg, func(o *bedrockruntime.Options) { o.RetryMaxAttempts = 1 }), nil
}

// ServeHTTP implements http.Handler. A panic becomes a 500 JSON error; the
// stack goes to the log, never to the client.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("handler panic", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			writeError(w, &apiError{status: http.StatusInternalServerError, code: "internal_error", msg: "internal error"})
		}
	}()
	s.mux.ServeHTTP(w, r)
}

func (s *Server) method(m string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m {
			w.Header().Set("Allow", m)
			writeError(w, &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", msg: r.Method + " is not allowed here; use " + m})
			return
		}
		h(w, r)
	}
}

// apiError is a user-visible failure: its HTTP status and code, and the status
// of the usage event it leaves ("" for none).
type apiError struct {
	status      int
	code        string
	msg         string
	retryAfter  time.Duration
	eventStatus string
}

func (e *apiError) Error() string { return e.msg }

func writeError(w http.ResponseWriter, e *apiError) {
	if e.status == http.StatusTooManyRequests || (e.status == http.StatusServiceUnavailable && e.retryAfter > 0) {
		secs := int64(math.Ceil(e.retryAfter.Seconds()))
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	writeJSON(w, e.status, map[string]any{"error": map[string]string{"code": e.code, "message": e.msg}})
}

// writeJSON answers v as JSON (what json.Encoder writes: HTML-safe, one
// trailing newline) with its Content-Length, in one write.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	json.NewEncoder(&buf).Encode(v)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(buf.Len())}
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// call is the state of one request on its way to a usage event.
type call struct {
	op        string
	modelID   string
	principal *tenants.Principal
	team      *tenants.Team
	requestID string // Bedrock's, once known
	latency   time.Duration
	ticket    *limits.Ticket
	body      []byte         // what Bedrock receives: the call's reservation is bound by it
	image     *imageSettings // an image model's requested size, steps and quality
	begun     time.Time      // when the call arrived
	// runtime marks a call on Bedrock Runtime's own routes (/bedrock/...):
	// its errors take Bedrock's shape, so that the AWS SDKs map them.
	runtime bool
	// callID is x-meter-call-id (the client's, or eventID); eventID is
	// minted before the call; alias is the alias asked for (see aliases.go).
	callID, eventID, alias string
	// callerMetadata is what an app sent itself as request metadata (runtime
	// InvokeModel routes); meter's own keys are sent over it (metadata.go).
	callerMetadata map[string]string
}

// event builds the call's usage event. Calls that never reached Bedrock get a
// generated request id so the event still has a unique dedup key.
func (s *Server) event(c *call, status string) *schemas.Event {
	rid := c.requestID
	if rid == "" {
		rid = newID()
	}
	return &schemas.Event{
		SchemaVersion: schemas.SchemaVersion, EventID: c.eventIDOf(), RequestID: rid, ModelAlias: c.alias, Timestamp: s.cfg.Now().UTC(),
		TeamID: c.team.ID, CostCenter: c.team.CostCenter, ModelID: c.modelID, Operation: c.op, Status: status,
		LatencyMS: c.latency.Milliseconds(), APIKeyID: c.principal.KeyID, Region: s.cfg.Region, PricingTier: "on_demand",
	}
}

// fail meters a failed call (when it names a team and a model) and answers it.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, c *call, e *apiError) {
	if c.ticket != nil {
		s.cfg.Limits.Settle(r.Context(), c.ticket, limits.Usage{})
		c.ticket = nil
	}
	if e.eventStatus != "" && c != nil && c.team != nil && c.modelID != "" {
		ev := s.event(c, e.eventStatus)
		if err := s.cfg.Usage.Emit(r.Context(), ev); err != nil {
			s.log.Error("recording usage of a failed call", "request_id", ev.RequestID, "err", err)
		} else {
			s.count(c, ev.Status)
		}
		w.Header().Set("x-request-id", ev.RequestID)
	}
	s.log.Info("call refused", "op", c.op, "model_id", c.modelID, "status", e.status, "code", e.code)
	writeCallError(w, c, e)
}

// release returns an unsettled reservation (the handler failed unexpectedly),
// so a panic cannot leave a team's limits blocked.
func (s *Server) release(r *http.Request, c *call) {
	if c.ticket != nil {
		s.cfg.Limits.Settle(context.WithoutCancel(r.Context()), c.ticket, limits.Usage{})
		c.ticket = nil
	}
}

// admit authenticates the key, resolves the team and checks the model against
// the allow-list. It answers the request itself when it returns nil.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, c *call) bool {
	c.begun = time.Now()
	if !s.beginCall(w, r, c) {
		return false
	}
	p, err := s.cfg.Tenants.AuthenticateAt(apiKey(r), s.cfg.Now())
	if err != nil {
		// No tenant to meter against: an unknown key is logged, not metered.
		s.log.Warn("unknown API key", "path", r.URL.Path, "remote", r.RemoteAddr)
		writeCallError(w, c, keyError(err))
		return false
	}
	c.principal, c.team = p, p.Team
	requested := r.Header.Get("team_id")
	team, err := s.cfg.Tenants.Resolve(p, requested)
	if err != nil {
		s.fail(w, r, c, &apiError{status: http.StatusForbidden, code: "team_not_allowed", eventStatus: schemas.StatusDenied,
			msg: fmt.Sprintf("this key may not act for team %q", requested)})
		return false
	}
	c.team = team
	if c.modelID == "" {
		if c.op != "" {
			s.fail(w, r, c, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: "model_id is required"})
			return false
		}
		return true
	}
	if err := schemas.CheckModelID(c.modelID); err != nil {
		// No Bedrock model has such an id: refused before it reaches an
		// event, a log line's label or a CSV cell.
		s.fail(w, r, c, &apiError{status: http.StatusBadRequest, code: "bad_model_id", msg: "model id " + err.Error()})
		return false
	}
	if !s.resolveModel(w, c) {
		return false
	}
	if !team.Allows(c.modelID) && (c.alias == "" || !team.Allows(c.alias)) {
		s.fail(w, r, c, &apiError{status: http.StatusForbidden, code: "model_not_allowed", eventStatus: schemas.StatusDenied,
			msg: fmt.Sprintf("team %s may not invoke model %s", team.ID, c.modelID)})
		return false
	}
	return true
}

// apiKey is the caller's team key: the x-api-key header, or a bearer token
// (Authorization: Bearer KEY, as the AWS SDKs send a Bedrock API key).
func apiKey(r *http.Request) string {
	if k := r.Header.Get("x-api-key"); k != "" {
		return k
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return ""
}

// readBody reads the request body within the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, c *call) ([]byte, bool) {
	size := r.ContentLength
	if size > s.cfg.MaxBodyBytes {
		size = -1 // MaxBytesReader refuses it, reading no more than the limit
	}
	body, err := readSized(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), size)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, r, c, &apiError{status: http.StatusRequestEntityTooLarge, code: "payload_too_large", eventStatus: schemas.StatusClientError,
				msg: fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxBodyBytes)})
		} else {
			s.fail(w, r, c, &apiError{status: http.StatusBadRequest, code: "bad_request", eventStatus: schemas.StatusClientError, msg: "reading request body: " + err.Error()})
		}
		return nil, false
	}
	c.body = body
	return body, true
}

// readSized reads r to its end into a buffer of the size the sender
// declared (size < 0: unknown), growing it only if more arrives.
func readSized(r io.Reader, size int64) ([]byte, error) {
	if size <= 0 {
		return io.ReadAll(r)
	}
	buf := make([]byte, size)
	n, err := io.ReadFull(r, buf)
	if err != nil {
		return buf[:n], err
	}
	var extra [1]byte
	for {
		n, err := r.Read(extra[:])
		if n > 0 { // more than declared
			rest, err := io.ReadAll(r)
			return append(append(buf, extra[0]), rest...), err
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// reserve checks the team's limits just before the Bedrock call. A team with
// a budget may call a model only when the call can be priced: otherwise its
// spend could not be counted and the budget would silently not hold. That
// refusal is a policy decision, metered as denied (zero cost) and answered
// 503 budget_unenforceable, since only an operator adding a price can lift it.
func (s *Server) reserve(w http.ResponseWriter, r *http.Request, c *call) bool {
	if !s.usageAccepting(w, r, c) {
		return false
	}
	now := s.cfg.Now()
	est, err := s.bound(c, now)
	if err != nil {
		s.fail(w, r, c, &apiError{status: http.StatusServiceUnavailable, code: "budget_unenforceable", eventStatus: schemas.StatusDenied,
			msg: fmt.Sprintf("team %s has a monthly budget, and model %s cannot be priced to count against it: %v", c.team.ID, c.modelID, err)})
		return false
	}
	t, err := s.cfg.Limits.Admit(r.Context(), c.team, now, est)
	if err != nil {
		var le *limits.Error
		if errors.As(err, &le) {
			s.metrics.Refused(c.team.ID, le.Reason)
			s.fail(w, r, c, &apiError{status: http.StatusTooManyRequests, code: le.Reason, msg: le.Message, retryAfter: le.RetryAfter, eventStatus: schemas.StatusThrottled})
		} else {
			s.log.Error("limits backend", "team_id", c.team.ID, "err", err)
			s.metrics.Refused(c.team.ID, "limits_unavailable")
			s.fail(w, r, c, &apiError{status: http.StatusServiceUnavailable, code: "limits_unavailable", retryAfter: time.Second, eventStatus: schemas.StatusUpstreamError,
				msg: fmt.Sprintf("team %s has quotas or a budget, and the store that counts them cannot be reached; the call was not made (retry later)", c.team.ID)})
		}
		return false
	}
	c.ticket = t
	return true
}

// settle counts a finished call's event against the team's limits. A call
// that cannot be priced after all (its model had a price when it was
// admitted, but not for everything the event carries, such as cache tokens)
// counts at its reservation rather than as free.
func (s *Server) settle(ctx context.Context, c *call, ev *schemas.Event) {
	if c.ticket == nil {
		return
	}
	u := limits.Usage{Tokens: ev.InputTokens + ev.OutputTokens + ev.CacheReadInputTokens + ev.CacheWriteInputTokens, Cost: decimal.Zero, At: ev.Timestamp}
	if s.cfg.Prices != nil && ev.Status == schemas.StatusSuccess {
		costs, err := s.cfg.Prices.Cost(ev)
		switch {
		case err == nil:
			u.Cost = costs.Total()
		case c.team.MonthlyBudgetUSD != nil:
			u.Cost = c.ticket.Reserved()
			s.log.Error("pricing a call for the budget; counting its reservation", "team_id", c.team.ID, "model_id", ev.ModelID,
				"request_id", ev.RequestID, "reserved_usd", u.Cost.String(), "err", err)
		default:
			s.log.Warn("pricing a call", "model_id", ev.ModelID, "err", err)
		}
	}
	s.cfg.Limits.Settle(ctx, c.ticket, u)
	c.ticket = nil
}

// finish counts a successful call's event against the limits, then makes it
// durable. It reports false (after answering 503) when the event could not be
// recorded.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, c *call, ev *schemas.Event) bool {
	s.settle(r.Context(), c, ev)
	if err := s.cfg.Usage.Emit(r.Context(), ev); err != nil {
		s.log.Error("usage event not recorded; withholding the answer", "request_id", ev.RequestID, "err", err)
		writeCallError(w, c, &apiError{status: http.StatusServiceUnavailable, code: "usage_not_recorded", retryAfter: time.Second,
			msg: "the call's usage could not be recorded; try again"})
		return false
	}
	s.count(c, ev.Status)
	return true
}

type invokeBody struct {
	Inputs     *string        `json:"inputs"`
	Parameters map[string]any `json:"parameters"`
}

func (s *Server) handleInvoke(w http.ResponseWriter, r *http.Request) {
	c := &call{op: "InvokeModel", modelID: r.URL.Query().Get("model_id")}
	defer s.release(r, c)
	if !s.admit(w, r, c) {
		return
	}
	body, ok := s.readBody(w, r, c)
	if !ok {
		return
	}
	var in invokeBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil || in.Inputs == nil {
		msg := `body must be {"inputs": "<prompt>", "parameters": {...}}`
		if err != nil {
			msg += ": " + err.Error()
		}
		s.fail(w, r, c, &apiError{status: http.StatusBadRequest, code: "bad_request", eventStatus: schemas.StatusClientError, msg: msg})
		return
	}
	fam := familyOf(c.modelID)
	if fam == nil {
		s.fail(w, r, c, &apiError{status: http.StatusBadRequest, code: "unsupported_model", eventStatus: schemas.StatusClientError,
			msg: fmt.Sprintf("no request mapping for model %s; call /model/{model_id}/converse instead", c.modelID)})
		return
	}
	wantEmbedding := strings.EqualFold(strings.TrimSpace(r.Header.Get("embeddings")), "true")
	if wantEmbedding && fam.modality != ModalityEmbedding {
		s.fail(w, r, c, &apiError{status: http.StatusBadRequest, code: "bad_request", eventStatus: schemas.StatusClientError,
			msg: fmt.Sprintf("embeddings: true but %s is not an embedding model", c.modelID)})
		return
	}
	native, raw, err := fam.nativeBody(*in.Inputs, in.Parameters)
	if err != nil {
		s.fail(w, r, c, &apiError{status: http.StatusBadRequest, code: "bad_request", eventStatus: schemas.StatusClientError, msg: err.Error()})
		return
	}
	if fam.modality == ModalityImage {
		is := fam.image(native)
		c.image = &is
	}
	c.body = raw
	if !s.reserve(w, r, c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.CallTimeout)
	defer cancel()
	start := time.Now()
	out, hdr, requestID, err := s.invokeModel(ctx, &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(c.modelID), Body: raw, ContentType: aws.String("application/json"), Accept: aws.String("application/json"),
		RequestMetadata: c.metadataHeader(),
	})
	c.latency = time.Since(start)
	c.requestID = requestID
	if err != nil {
		s.fail(w, r, c, s.bedrockError(c, err))
		return
	}
	res, perr := fam.parse(out.Body)
	ev := s.event(c, schemas.StatusSuccess)
	ev.InputTokens = tokenCount(hdr, "X-Amzn-Bedrock-Input-Token-Count", res.InputTokens)
	ev.OutputTokens = tokenCount(hdr, "X-Amzn-Bedrock-Output-Token-Count", res.OutputTokens)
	ev.CacheReadInputTokens = tokenCount(hdr, "X-Amzn-Bedrock-Cache-Read-Input-Token-Count", -1)
	ev.CacheWriteInputTokens = tokenCount(hdr, "X-Amzn-Bedrock-Cache-Write-Input-Token-Count", -1)
	if c.image != nil && perr == nil {
		is := c.image
		ev.ImageCount, ev.ImageHeight, ev.ImageWidth, ev.ImageSteps, ev.ImageQuality = int64(len(res.Images)), is.Height, is.Width, is.Steps, is.Quality
	}
	if perr != nil {
		// Bedrock served (and billed) the call; its tokens are metered even
		// though the answer cannot be passed on.
		ev.Status = schemas.StatusUpstreamError
		if !s.finish(w, r, c, ev) {
			return
		}
		w.Header().Set("x-request-id", ev.RequestID)
		writeError(w, &apiError{status: http.StatusBadGateway, code: "upstream_error", msg: "unreadable model response: " + perr.Error()})
		return
	}
	if !s.finish(w, r, c, ev) {
		return
	}
	// The answer is a list of one-key objects, as structs (no map per item).
	var payload any
	switch fam.modality {
	case ModalityEmbedding:
		payload = [1]struct {
			Embedding []float64 `json:"embedding"`
		}{{res.Embedding}}
	case ModalityImage:
		items := make([]struct {
			Image string `json:"image"`
		}, len(res.Images))
		for i, img := range res.Images {
			items[i].Image = img
		}
		payload = items
	default:
		items := make([]struct {
			GeneratedText string `json:"generated_text"`
		}, len(res.Texts))
		for i, t := range res.Texts {
			items[i].GeneratedText = t
		}
		payload = items
	}
	setUsageHeaders(w, ev)
	writeJSON(w, http.StatusOK, payload)
}

func setUsageHeaders(w http.ResponseWriter, ev *schemas.Event) {
	h := w.Header() // canonical names set directly: x-request-id and so on
	h["X-Request-Id"] = []string{ev.RequestID}
	h["X-Input-Tokens"] = []string{strconv.FormatInt(ev.InputTokens, 10)}
	h["X-Output-Tokens"] = []string{strconv.FormatInt(ev.OutputTokens, 10)}
}

func (s *Server) handleConverse(w http.ResponseWriter, r *http.Request) {
	c := &call{op: "Converse", modelID: r.PathValue("model_id")}
	defer s.release(r, c)
	if !s.admit(w, r, c) {
		return
	}
	body, ok := s.readBody(w, r, c)
	if !ok {
		return
	}
	s.converse(w, r, c, body)
}

// converse makes an admitted Converse call and answers it in Bedrock's
// Converse response shape, on this API's route or the runtime one.
func (s *Server) converse(w http.ResponseWriter, r *http.Request, c *call, body []byte) {
	req, err := parseConverse(body)
	var in *bedrockruntime.ConverseInput
	if err == nil {
		in, err = req.input(c.modelID)
	}
	if err != nil {
		s.fail(w, r, c, &apiError{status: http.StatusBadRequest, code: "bad_request", eventStatus: schemas.StatusClientError, msg: err.Error()})
		return
	}
	if !s.reserve(w, r, c) {
		return
	}
	in.RequestMetadata = c.metadataMap(req.RequestMetadata)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.CallTimeout)
	defer cancel()
	start := time.Now()
	out, err := s.cfg.Bedrock.Converse(ctx, in)
	c.latency = time.Since(start)
	if err != nil {
		c.requestID = errorRequestID(err)
		s.fail(w, r, c, s.bedrockError(c, err))
		return
	}
	c.requestID, _ = awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	ev := s.event(c, schemas.StatusSuccess)
	setTokens(ev, out.Usage)
	if !s.finish(w, r, c, ev) {
		return
	}
	if c.runtime {
		w.Header().Set("x-amzn-RequestId", ev.RequestID)
	}
	setUsageHeaders(w, ev)
	writeJSON(w, http.StatusOK, converseResponseJSON(out))
}

func setTokens(ev *schemas.Event, u *types.TokenUsage) {
	if u == nil {
		return
	}
	ev.InputTokens = int64(aws.ToInt32(u.InputTokens))
	ev.OutputTokens = int64(aws.ToInt32(u.OutputTokens))
	ev.CacheReadInputTokens = int64(aws.ToInt32(u.CacheReadInputTokens))
	ev.CacheWriteInputTokens = int64(aws.ToInt32(u.CacheWriteInputTokens))
}

// handleConverseStream relays ConverseStream as server-sent events. The Bedrock
// stream is read to its end even when the client goes away, so the usage in
// its final metadata event is always metered; that metadata event is sent to
// the client only after the usage event is durable.
func (s *Server) handleConverseStream(w http.ResponseWriter, r *http.Request) {
	c := &call{op: "ConverseStream", modelID: r.PathValue("model_id")}
	defer s.release(r, c)
	if !s.admit(w, r, c) {
		return
	}
	body, ok := s.readBody(w, r, c)
	if !ok {
		return
	}
	s.converseStream(w, r, c, body)
}

// converseStream makes an admitted ConverseStream call and passes its events
// on as they come: server-sent events on this API's route, Bedrock's event
// stream on the runtime one. A client that leaves early stops getting events;
// the stream is still read to its end and metered in full.
func (s *Server) converseStream(w http.ResponseWriter, r *http.Request, c *call, body []byte) {
	req, err := parseConverse(body)
	var in *bedrockruntime.ConverseStreamInput
	if err == nil {
		in, err = req.streamInput(c.modelID)
	}
	if err != nil {
		s.fail(w, r, c, &apiError{status: http.StatusBadRequest, code: "bad_request", eventStatus: schemas.StatusClientError, msg: err.Error()})
		return
	}
	if !s.reserve(w, r, c) {
		return
	}
	in.RequestMetadata = c.metadataMap(req.RequestMetadata)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.StreamTimeout)
	defer cancel()
	start := time.Now()
	out, err := s.cfg.Bedrock.ConverseStream(ctx, in, withBufferedBody)
	if err != nil {
		c.latency = time.Since(start)
		c.requestID = errorRequestID(err)
		s.fail(w, r, c, s.bedrockError(c, err))
		return
	}
	c.requestID, _ = awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	es := out.GetStream()
	defer es.Close()
	var sink streamSink
	if c.runtime {
		sink = newEventWriter(w, r, c.requestID)
	} else {
		sink = newSSEWriter(w, r, c.requestID)
	}
	var meta *types.ConverseStreamMetadataEvent
	var metaJSON any
	for ev := range es.Events() {
		name, data := streamEventJSON(ev)
		if m, ok := ev.(*types.ConverseStreamOutputMemberMetadata); ok {
			// The metadata event ends the answer: it goes out once the
			// call's usage is durable.
			meta, metaJSON = &m.Value, data
			continue
		}
		if name != "" {
			sink.event(name, data)
		}
	}
	c.latency = time.Since(start)
	ev := s.event(c, schemas.StatusSuccess)
	if meta != nil {
		setTokens(ev, meta.Usage)
	}
	s.endStream(r, c, sink, ev, es.Err(), meta != nil, "metadata", metaJSON)
}

// streamSink is where a stream's events go: server-sent events on this API's
// routes, Bedrock's event stream on the runtime ones. After the client has
// gone it drops what it is given.
type streamSink interface {
	event(name string, data any)
	// fail ends the stream with an error the client can read.
	fail(e *apiError)
	// left reports that the client has gone.
	left() bool
}

// endStream meters a stream that has ended (with metered false when it never
// said how much it used: the call is an upstream error), then, once the usage
// event is durable, sends the event that ends the answer, or the error. A
// client that left early is metered in full all the same.
func (s *Server) endStream(r *http.Request, c *call, sink streamSink, ev *schemas.Event, streamErr error, metered bool, lastName string, last any) {
	if streamErr != nil || !metered {
		ev.Status = schemas.StatusUpstreamError
	}
	if sink.left() {
		s.log.Info("client left a stream early; metering it in full", "request_id", c.requestID)
	}
	if !s.finishStream(r, c, ev) {
		sink.fail(&apiError{status: http.StatusServiceUnavailable, code: "usage_not_recorded", msg: "the call's usage could not be recorded"})
		return
	}
	if streamErr != nil {
		sink.fail(s.bedrockError(c, streamErr))
		return
	}
	if last != nil {
		sink.event(lastName, last)
	}
}

// sseWriter writes server-sent events: `event: NAME` and `data: JSON`.
type sseWriter struct {
	w    http.ResponseWriter
	r    *http.Request
	rc   *http.ResponseController
	gone bool
}

func newSSEWriter(w http.ResponseWriter, r *http.Request, requestID string) *sseWriter {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("x-request-id", requestID)
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, r: r, rc: http.NewResponseController(w)}
	sw.rc.Flush()
	return sw
}

func (sw *sseWriter) event(name string, data any) {
	if sw.gone {
		return
	}
	if sw.r.Context().Err() != nil {
		sw.gone = true
		return
	}
	b, _ := json.Marshal(data)
	if _, err := fmt.Fprintf(sw.w, "event: %s\ndata: %s\n\n", name, b); err != nil {
		sw.gone = true
		return
	}
	if err := sw.rc.Flush(); err != nil {
		sw.gone = true
	}
}

func (sw *sseWriter) fail(e *apiError) {
	sw.event("error", map[string]any{"error": map[string]string{"code": e.code, "message": e.msg}})
}

func (sw *sseWriter) left() bool { return sw.gone }

// finishStream is finish for a stream whose headers are already sent.
func (s *Server) finishStream(r *http.Request, c *call, ev *schemas.Event) bool {
	s.settle(r.Context(), c, ev)
	if err := s.cfg.Usage.Emit(r.Context(), ev); err != nil {
		s.log.Error("usage event of a stream not recorded", "request_id", ev.RequestID, "err", err)
		return false
	}
	s.count(c, ev.Status)
	return true
}

type modelSummary struct {
	ModelID          string   `json:"modelId"`
	ProviderName     string   `json:"providerName,omitempty"`
	OutputModalities []string `json:"outputModalities,omitempty"`
	InvokeModel      bool     `json:"invokeModelSupported"`
	// An alias's entry says where it points (see aliases.go).
	AliasFor    string          `json:"aliasFor,omitempty"`
	Rollout     *rolloutSummary `json:"rollout,omitempty"`
	PinnedModel string          `json:"pinnedModel,omitempty"`
	Deprecation string          `json:"deprecation,omitempty"`
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	c := &call{}
	if !s.admit(w, r, c) {
		return
	}
	seen := map[string]bool{}
	var list []modelSummary
	add := func(id string) {
		if seen[id] || !c.team.Allows(id) {
			return
		}
		seen[id] = true
		m := modelSummary{ModelID: id}
		if f := familyOf(id); f != nil {
			m.ProviderName, m.OutputModalities, m.InvokeModel = f.provider, []string{string(f.modality)}, true
		}
		list = append(list, m)
	}
	for _, f := range families {
		for _, id := range f.models {
			add(id)
		}
	}
	for _, id := range s.cfg.Models {
		add(id)
	}
	// Exact ids in the allow-list (inference profiles, ARNs) are models too.
	for _, p := range c.team.AllowedModels {
		if !strings.HasSuffix(p, "*") {
			add(p)
		}
	}
	list = s.listAliases(list, c.team)
	sort.Slice(list, func(i, j int) bool { return list[i].ModelID < list[j].ModelID })
	if list == nil {
		list = []modelSummary{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"teamId": c.team.ID, "modelSummaries": list})
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	doc, err := schemas.OpenAPIJSON()
	if err != nil {
		s.log.Error("openapi document", "err", err)
		writeError(w, &apiError{status: http.StatusInternalServerError, code: "internal_error", msg: "OpenAPI document unavailable"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(doc)
}

// rawHeaders returns the HTTP headers of the response behind an SDK output.
func rawHeaders(md middleware.Metadata) http.Header {
	if resp, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response); ok && resp != nil && resp.Response != nil {
		return resp.Header
	}
	return http.Header{}
}

func tokenCount(h http.Header, name string, fallback int64) int64 {
	if v := h.Get(name); v != "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n >= 0 {
			return n
		}
	}
	if fallback < 0 {
		return 0
	}
	return fallback
}

func errorRequestID(err error) string {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.ServiceRequestID()
	}
	return ""
}

// bedrockError maps a Bedrock Runtime error to the API's status, code and the
// usage event's status. This is the one place upstream errors are classified.
// What the caller reads is meter's own sentence: Bedrock's text, the SDK's
// and the network's (addresses, retry counts, IAM principals and accounts)
// go to the log with the request id, never to the caller. Only a validation
// message, which is about the caller's own request, is passed on, with any
// ARN or account number blanked.
func (s *Server) bedrockError(c *call, err error) *apiError {
	s.log.Warn("Bedrock call failed", "op", c.op, "model_id", c.modelID, "request_id", c.requestID, "err", err)
	var (
		throttle *types.ThrottlingException
		quota    *types.ServiceQuotaExceededException
		notReady *types.ModelNotReadyException
		valid    *types.ValidationException
		denied   *types.AccessDeniedException
		notFound *types.ResourceNotFoundException
		mtimeout *types.ModelTimeoutException
		unavail  *types.ServiceUnavailableException
		ne       net.Error
	)
	switch {
	case errors.As(err, &throttle), errors.As(err, &quota), errors.As(err, &notReady):
		return &apiError{status: http.StatusTooManyRequests, code: "upstream_throttled", retryAfter: time.Second,
			eventStatus: schemas.StatusThrottled, msg: "Bedrock throttled the call; retry after a pause"}
	case errors.As(err, &valid):
		return &apiError{status: http.StatusBadRequest, code: "validation_error", eventStatus: schemas.StatusClientError,
			msg: "Bedrock refused the request: " + redactAWS(valid.ErrorMessage())}
	case errors.As(err, &denied):
		return &apiError{status: http.StatusForbidden, code: "upstream_access_denied", eventStatus: schemas.StatusDenied,
			msg: "Bedrock refused meter access to this model; the platform team can grant it"}
	case errors.As(err, &notFound):
		return &apiError{status: http.StatusBadRequest, code: "model_not_found", eventStatus: schemas.StatusClientError,
			msg: "Bedrock has no model " + c.modelID + " in this region"}
	case errors.As(err, &mtimeout), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &apiError{status: http.StatusGatewayTimeout, code: "upstream_timeout", eventStatus: schemas.StatusUpstreamError, msg: "the model did not answer in time"}
	case errors.As(err, &unavail):
		return &apiError{status: http.StatusServiceUnavailable, code: "upstream_unavailable", retryAfter: time.Second, eventStatus: schemas.StatusUpstreamError,
			msg: "Bedrock is unavailable; retry later"}
	}
	return &apiError{status: http.StatusBadGateway, code: "upstream_error", eventStatus: schemas.StatusUpstreamError, msg: "the Bedrock call failed"}
}

var (
	arnPattern     = regexp.MustCompile(`arn:aws[a-zA-Z-]*:[^\s"',]*`)
	accountPattern = regexp.MustCompile(`\b\d{12}\b`)
)

// redactAWS blanks ARNs and account numbers out of a message.
func redactAWS(msg string) string {
	msg = arnPattern.ReplaceAllString(msg, "[arn]")
	return accountPattern.ReplaceAllString(msg, "[account]")
}

// newID returns a random RFC 4122 version 4 UUID.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
