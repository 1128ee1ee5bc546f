package bedrocklocal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Request headers that steer one call; Bedrock ignores them.
const (
	// HeaderInjectError names a Bedrock exception (e.g. ThrottlingException)
	// the call fails with. ModelStreamErrorException on a streaming call fails
	// the stream halfway, after some events were sent.
	HeaderInjectError = "X-Meter-Inject-Error"
	// HeaderLatency overrides Config.Latency for the call (a Go duration, "20ms").
	HeaderLatency = "X-Meter-Latency"
	// HeaderOmitTrail ("true") answers the call but writes no CloudTrail
	// record, as if CloudTrail had lost it.
	HeaderOmitTrail = "X-Meter-Omit-Trail"
)

// PromptInjectMarker, followed by an exception name and "]]", anywhere in a
// prompt's text injects that exception like HeaderInjectError does, e.g.
// "[[meter-inject:ThrottlingException]]". It reaches the server through
// clients that forward only the prompt.
const PromptInjectMarker = "[[meter-inject:"

// Config configures a Server. The zero value is usable.
type Config struct {
	// Latency is added before the first byte of every runtime answer
	// (the model's "thinking time"); StreamInterval between stream events.
	Latency        time.Duration
	StreamInterval time.Duration

	// Region and AccountID are the server's AWS region and account; they
	// appear in CloudTrail records and trail file paths.
	// Defaults: us-east-1 and 123456789012.
	Region    string
	AccountID string

	// TrailDir, when set, receives CloudTrail log files (see the package doc).
	// A file is delivered every TrailBatch records (default 100), every
	// TrailInterval when set, on Flush and on Close.
	TrailDir      string
	TrailBatch    int
	TrailInterval time.Duration
	// InvocationLogDir, when set, receives model invocation log records
	// (gzipped JSON lines, AWSLogs/<account>/BedrockModelInvocationLogs/...),
	// delivered like the trail files (TrailBatch, TrailInterval, Flush, Close).
	InvocationLogDir string

	// FailEvery > 0 fails every FailEvery-th runtime call (counting from 1)
	// with the exception FailWith (default ThrottlingException).
	FailEvery int
	FailWith  string
	// ErrorRates maps exception names to the probability that a runtime call
	// fails with it, drawn from a generator seeded with Seed.
	ErrorRates map[string]float64
	Seed       uint64

	// CacheTTL is how long a cached prompt prefix stays readable (default 5m).
	CacheTTL time.Duration

	// ExtraModels adds base model ids to the catalog; each must start with a
	// known family's prefix (e.g. "anthropic.claude-").
	ExtraModels []string
	// ApplicationProfiles maps application inference profile and provisioned
	// model ids or ARNs to the base model ids they serve.
	ApplicationProfiles map[string]string
	// Users maps access key ids to IAM user names for CloudTrail's
	// userIdentity (default "bedrock-local"). Keys starting with ASIA are
	// temporary credentials and map to "role/session".
	Users map[string]string

	// LookupRetention caps the records LookupEvents can return (default
	// 50000, oldest dropped first). LookupRate > 0 limits LookupEvents calls
	// per second, answering ThrottlingException beyond it.
	LookupRetention int
	LookupRate      float64

	// Now is the clock for event times, trail delivery and the prompt cache
	// (default time.Now).
	Now func() time.Time
}

// Server is a Bedrock Runtime compatible model server. It is an http.Handler
// serving the runtime routes and, on requests carrying X-Amz-Target, the
// CloudTrail LookupEvents API.
type Server struct {
	cfg    Config
	models map[string]*model
	mux    *http.ServeMux
	trail  *trail
	invlog *logDelivery
	lookup http.Handler
	pngs   pngCache

	calls atomic.Int64

	mu    sync.Mutex // guards rng and cache
	rng   splitmix64
	cache map[string]time.Time

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and returns a Server. Call Close to deliver the trail
// records still buffered.
func New(cfg Config) (*Server, error) {
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.AccountID == "" {
		cfg.AccountID = "123456789012"
	}
	if cfg.TrailBatch <= 0 {
		cfg.TrailBatch = 100
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 5 * time.Minute
	}
	if cfg.LookupRetention <= 0 {
		cfg.LookupRetention = 50000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FailWith == "" {
		cfg.FailWith = "ThrottlingException"
	}
	if _, ok := errorStatus[cfg.FailWith]; !ok {
		return nil, fmt.Errorf("bedrocklocal: FailWith %q is not a Bedrock exception name", cfg.FailWith)
	}
	var rateSum float64
	for kind, rate := range cfg.ErrorRates {
		if _, ok := errorStatus[kind]; !ok {
			return nil, fmt.Errorf("bedrocklocal: ErrorRates key %q is not a Bedrock exception name", kind)
		}
		if rate < 0 || math.IsNaN(rate) {
			return nil, fmt.Errorf("bedrocklocal: ErrorRates[%s] = %v is not a probability", kind, rate)
		}
		rateSum += rate
	}
	if rateSum > 1 {
		return nil, fmt.Errorf("bedrocklocal: ErrorRates add up to %v, more than 1", rateSum)
	}
	models, unplaced := catalog(cfg.ExtraModels)
	if len(unplaced) > 0 {
		return nil, fmt.Errorf("bedrocklocal: ExtraModels %s match no model family prefix", strings.Join(unplaced, ", "))
	}
	for profile, base := range cfg.ApplicationProfiles {
		if _, ok := models[base]; !ok {
			return nil, fmt.Errorf("bedrocklocal: ApplicationProfiles[%s] = %q is not a known base model id", profile, base)
		}
	}

	s := &Server{
		cfg:    cfg,
		models: models,
		rng:    splitmix64(cfg.Seed),
		cache:  make(map[string]time.Time),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	s.trail = newTrail(cfg)
	s.invlog = newLogDelivery(cfg)
	s.lookup = &lookupHandler{trail: s.trail, now: cfg.Now, limit: newLimiter(cfg.LookupRate)}

	s.mux = http.NewServeMux()
	for _, op := range operations {
		s.mux.HandleFunc("POST /model/{modelId}/"+op.path, s.runtime(op))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{kind: "UnknownOperationException", message: "Unknown operation " + r.Method + " " + r.URL.Path})
	})

	go s.deliverLoop()
	return s, nil
}

// ServeHTTP routes CloudTrail API calls by their X-Amz-Target header and
// everything else to the Bedrock Runtime routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") != "" {
		s.lookup.ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// CloudTrailHandler returns the CloudTrail API alone (LookupEvents), for a
// listener of its own.
func (s *Server) CloudTrailHandler() http.Handler { return s.lookup }

// Flush delivers the buffered CloudTrail records as one trail file now.
func (s *Server) Flush() error { return errors.Join(s.trail.flush(), s.invlog.flush()) }

// Close stops periodic delivery and delivers the buffered CloudTrail
// records. It does not stop an http.Server serving s.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.closeErr = errors.Join(s.trail.deliveryErr(), s.trail.flush(), s.invlog.deliveryErr(), s.invlog.flush())
	})
	return s.closeErr
}

func (s *Server) deliverLoop() {
	defer close(s.done)
	if s.cfg.TrailInterval <= 0 {
		<-s.stop
		return
	}
	t := time.NewTicker(s.cfg.TrailInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.trail.flushBackground()
			s.invlog.flushBackground()
		case <-s.stop:
			return
		}
	}
}

// operation is one Bedrock Runtime API.
type operation struct {
	name     string // API and CloudTrail eventName
	path     string // route suffix after /model/{modelId}/
	stream   bool
	converse bool
}

var operations = []operation{
	{name: "InvokeModel", path: "invoke"},
	{name: "InvokeModelWithResponseStream", path: "invoke-with-response-stream", stream: true},
	{name: "Converse", path: "converse", converse: true},
	{name: "ConverseStream", path: "converse-stream", stream: true, converse: true},
}

// call is the state of one runtime request.
type call struct {
	op              operation
	requestID       string
	modelID         string // as invoked
	at              time.Time
	start           time.Time
	firstByte       time.Duration
	inferenceRegion string
	started         bool // response headers sent; errors now go in-stream
	metadata        map[string]string
	usage           usage
	served          bool // the model answered: usage is known
}

func (c *call) elapsedMs() int64 { return time.Since(c.start).Milliseconds() }

const maxBody = 25 << 20

func (s *Server) runtime(op operation) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := &call{op: op, requestID: newUUID(), modelID: r.PathValue("modelId"), at: s.cfg.Now(), start: time.Now()}
		w.Header().Set("X-Amzn-RequestId", c.requestID)
		err := s.serve(w, r, c)
		var ae *apiError
		if err != nil {
			if !errors.As(err, &ae) {
				ae = &apiError{kind: "InternalServerException", message: err.Error()}
			}
			if !c.started {
				writeError(w, ae)
			}
		}
		if r.Header.Get(HeaderOmitTrail) != "true" {
			s.trail.add(s.record(r, c, ae))
		}
		if s.cfg.InvocationLogDir != "" && r.Header.Get(HeaderOmitInvocationLog) != "true" {
			s.invlog.add(s.invocationLog(r, c, ae))
		}
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, c *call) error {
	m, region, err := s.resolve(c.modelID)
	if err != nil {
		return err
	}
	c.inferenceRegion = region
	if region == "" {
		c.inferenceRegion = s.inferenceRegion(c)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return validation("Malformed input request: %v, please reformat your input and try again.", err)
	}
	if c.metadata, err = requestMetadata(r, c, body); err != nil {
		return err
	}

	var d *dialect
	var p prompt
	if c.op.converse {
		if m.family.modality != Text {
			return validation("This action doesn't support the model that you provided. Try again with a supported text or chat model.")
		}
		p, err = decodeConverse(body)
	} else {
		d, err = m.family.pickDialect(body)
		if err == nil {
			p, err = d.decode(body)
		}
		if err == nil && c.op.stream && d.stream == nil {
			err = validation("The model is unsupported for streaming.")
		}
	}
	if err != nil {
		return err
	}

	midStream := false
	if kind := s.injection(r, p); kind != "" {
		if !(c.op.stream && kind == "ModelStreamErrorException") {
			return injected(kind)
		}
		midStream = true
	}
	latency := s.cfg.Latency
	if v := r.Header.Get(HeaderLatency); v != "" {
		if latency, err = time.ParseDuration(v); err != nil {
			return validation("%s: %v", HeaderLatency, err)
		}
	}
	if err := sleep(r.Context(), latency); err != nil {
		return err
	}

	a, err := s.answer(m, p)
	if err != nil {
		return err
	}
	c.usage, c.served = a.usage, true
	switch {
	case c.op.converse && c.op.stream:
		return s.writeConverseStream(w, r, c, a, midStream)
	case c.op.converse:
		return writeJSON(w, converseResponse(a, c.elapsedMs()))
	case c.op.stream:
		return s.writeInvokeStream(w, r, c, m, d, p, a, midStream)
	}
	body, err = json.Marshal(d.encode(m, p, a))
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-Bedrock-Input-Token-Count", strconv.Itoa(a.usage.input))
	h.Set("X-Amzn-Bedrock-Output-Token-Count", strconv.Itoa(a.usage.output))
	if a.usage.caching {
		h.Set("X-Amzn-Bedrock-Cache-Read-Input-Token-Count", strconv.Itoa(a.usage.cacheRead))
		h.Set("X-Amzn-Bedrock-Cache-Write-Input-Token-Count", strconv.Itoa(a.usage.cacheWrite))
	}
	h.Set("X-Amzn-Bedrock-Invocation-Latency", strconv.FormatInt(c.elapsedMs(), 10))
	_, err = w.Write(body)
	return err
}

func writeJSON(w http.ResponseWriter, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(body)
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// resolve maps a model id as invoked (base id, cross-region inference
// profile, or ARN) to its base model. For a cross-region profile it also
// returns "" so the caller picks the inference region; otherwise the
// server's region.
func (s *Server) resolve(id string) (*model, string, error) {
	notFound := &apiError{kind: "ResourceNotFoundException", message: "Model not found: the provided model identifier " + strconv.Quote(id) + " is not served here."}
	if base, ok := s.cfg.ApplicationProfiles[id]; ok {
		return s.models[base], s.cfg.Region, nil
	}
	ref := id
	if strings.HasPrefix(id, "arn:") {
		parts := strings.SplitN(id, ":", 6)
		if len(parts) != 6 || parts[2] != "bedrock" {
			return nil, "", validation("The provided model identifier is invalid.")
		}
		kind, name, _ := strings.Cut(parts[5], "/")
		switch kind {
		case "foundation-model", "inference-profile":
			ref = name
		default: // application-inference-profile, provisioned-model, ...
			if base, ok := s.cfg.ApplicationProfiles[name]; ok {
				return s.models[base], s.cfg.Region, nil
			}
			return nil, "", notFound
		}
	}
	geo, base := splitProfile(ref)
	m, ok := s.models[base]
	if !ok {
		return nil, "", notFound
	}
	if geo != "" {
		return m, "", nil
	}
	return m, s.cfg.Region, nil
}

// inferenceRegion picks the region a cross-region profile call ran in.
func (s *Server) inferenceRegion(c *call) string {
	geo, _ := splitProfile(c.modelID[strings.LastIndex(c.modelID, "/")+1:])
	regions := geoRegions[geo]
	if len(regions) == 0 {
		return s.cfg.Region
	}
	if slices.Contains(regions, s.cfg.Region) && seedOf(c.requestID)%2 == 0 {
		return s.cfg.Region
	}
	return regions[seedOf(c.requestID, "region")%uint64(len(regions))]
}

// injection returns the exception this call must fail with, or "".
func (s *Server) injection(r *http.Request, p prompt) string {
	n := s.calls.Add(1)
	if kind := r.Header.Get(HeaderInjectError); kind != "" {
		if _, ok := errorStatus[kind]; ok {
			return kind
		}
		return "ValidationException"
	}
	for _, t := range p.texts {
		if i := strings.Index(t, PromptInjectMarker); i >= 0 {
			rest := t[i+len(PromptInjectMarker):]
			if kind, _, ok := strings.Cut(rest, "]]"); ok {
				if _, known := errorStatus[kind]; known {
					return kind
				}
			}
		}
	}
	if s.cfg.FailEvery > 0 && n%int64(s.cfg.FailEvery) == 0 {
		return s.cfg.FailWith
	}
	if len(s.cfg.ErrorRates) > 0 {
		s.mu.Lock()
		x := float64(s.rng.next()>>11) / float64(1<<53)
		s.mu.Unlock()
		kinds := make([]string, 0, len(s.cfg.ErrorRates))
		for k := range s.cfg.ErrorRates {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			if x -= s.cfg.ErrorRates[k]; x < 0 {
				return k
			}
		}
	}
	return ""
}

// embedDims are the default vector sizes that differ from 1024.
var embedDims = map[string]int{
	"amazon.titan-embed-text-v1":    1536,
	"amazon.titan-embed-g1-text-02": 1536,
}

// answer generates the result and the usage the server reports for it.
func (s *Server) answer(m *model, p prompt) (answer, error) {
	switch m.family.modality {
	case Embedding:
		dims := p.dims
		if dims == 0 {
			dims = 1024
			if d, ok := embedDims[m.id]; ok {
				dims = d
			}
		}
		a := answer{id: fmt.Sprintf("%016x", seedOf(append([]string{m.id}, p.inputs...)...))}
		for _, in := range p.inputs {
			a.embeddings = append(a.embeddings, embed(m.id, in, dims, p.normalize))
		}
		a.usage.input = countTokens(p.texts...)
		return a, nil
	case Image:
		a := answer{id: fmt.Sprintf("%016x", seedOf(append([]string{m.id}, p.texts...)...))}
		for i := range p.images {
			seed := p.seed
			if seed == 0 {
				seed = int64(seedOf(a.id) % 4294967295)
			}
			seed += int64(i)
			img, err := s.pngs.image(p.width, p.height, seedOf(a.id, strconv.FormatInt(seed, 10)))
			if err != nil {
				return answer{}, err
			}
			a.images = append(a.images, img)
			a.seeds = append(a.seeds, seed)
		}
		a.usage.input = countTokens(p.texts...)
		return a, nil
	}
	limit := p.maxTokens
	if limit <= 0 {
		limit = m.family.maxTokens
	}
	a := generateText(m.id, p, limit)
	a.usage = s.promptUsage(m, p)
	a.usage.output = len(a.words)
	return a, nil
}

// promptUsage splits the prompt's tokens into uncached input and the cache
// prefix, which is written on the first call that carries it and read by the
// calls within CacheTTL after the last use.
func (s *Server) promptUsage(m *model, p prompt) usage {
	u := usage{input: countTokens(p.texts...)}
	if !m.family.caching || p.cacheUpTo == 0 {
		return u
	}
	prefix := countTokens(p.texts[:p.cacheUpTo]...)
	u.caching = true
	if prefix == 0 {
		return u
	}
	key := strconv.FormatUint(seedOf(append([]string{m.id}, p.texts[:p.cacheUpTo]...)...), 16)
	now := s.cfg.Now()
	s.mu.Lock()
	exp, ok := s.cache[key]
	hit := ok && now.Before(exp)
	s.cache[key] = now.Add(s.cfg.CacheTTL)
	if len(s.cache) > 10000 {
		for k, e := range s.cache {
			if !now.Before(e) {
				delete(s.cache, k)
			}
		}
	}
	s.mu.Unlock()
	u.input -= prefix
	if hit {
		u.cacheRead = prefix
	} else {
		u.cacheWrite = prefix
	}
	return u
}

// invocationMetrics is the amazon-bedrock-invocationMetrics object of the
// last InvokeModelWithResponseStream chunk.
func invocationMetrics(c *call, u usage) map[string]any {
	m := map[string]any{
		"inputTokenCount":   u.input,
		"outputTokenCount":  u.output,
		"invocationLatency": c.elapsedMs(),
		"firstByteLatency":  c.firstByte.Milliseconds(),
	}
	if u.caching {
		m["cacheReadInputTokenCount"] = u.cacheRead
		m["cacheWriteInputTokenCount"] = u.cacheWrite
	}
	return m
}

func (s *Server) writeInvokeStream(w http.ResponseWriter, r *http.Request, c *call, m *model, d *dialect, p prompt, a answer, midStream bool) error {
	chunks := d.stream(m, p, a)
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.Header().Set("X-Amzn-Bedrock-Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	c.started = true
	ew := newEventWriter(w)
	for i, ch := range chunks {
		if i > 0 {
			if err := sleep(r.Context(), s.cfg.StreamInterval); err != nil {
				return err
			}
		} else {
			c.firstByte = time.Since(c.start)
		}
		if midStream && i == len(chunks)/2 {
			return ew.exception("modelStreamErrorException", map[string]any{
				"message": errorMessage["ModelStreamErrorException"], "originalStatusCode": 500,
			})
		}
		if i == len(chunks)-1 {
			ch["amazon-bedrock-invocationMetrics"] = invocationMetrics(c, a.usage)
		}
		payload, err := json.Marshal(ch)
		if err != nil {
			return err
		}
		if err := ew.event("chunk", map[string]any{"bytes": payload}); err != nil {
			return err
		}
	}
	return nil
}
