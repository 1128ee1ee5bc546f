package invoker

import (
	"crypto/tls"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/metrics"
)

// usageReadiness is what a usage sink may tell about itself:
// *emitter.Emitter does.
type usageReadiness interface {
	Ready() bool
	Stats() metrics.UsageStats
}

// opsRoutes registers /metrics (Prometheus text), /healthz (alive) and /readyz
// (a valid tenant registry loaded and usage events recordable). They take no
// key and show no key, prompt or caller-chosen string.
func (s *Server) opsRoutes() {
	reg := s.cfg.Registry
	s.metrics = metrics.NewInvoker(reg)
	if u, ok := s.cfg.Usage.(usageReadiness); ok {
		metrics.RegisterUsage(reg, u.Stats)
	}
	metrics.RegisterTenantFailures(reg, s.cfg.Tenants.Failures)
	if l, ok := s.cfg.Limits.(interface{ Stats() metrics.LimitsStats }); ok {
		metrics.RegisterLimits(reg, l.Stats)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("/healthz", s.method(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	}))
	s.mux.HandleFunc("/readyz", s.method(http.MethodGet, s.handleReady))
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	var problems []string
	if !s.cfg.Tenants.Loaded() {
		problems = append(problems, "no valid tenant registry loaded yet")
	}
	if u, ok := s.cfg.Usage.(usageReadiness); ok && !u.Ready() {
		problems = append(problems, "usage events can be neither streamed nor spilled")
	}
	if len(problems) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "problems": problems})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// count records a call whose usage event was recorded.
func (s *Server) count(c *call, status string) {
	if c.team == nil {
		return
	}
	var total time.Duration
	if !c.begun.IsZero() {
		total = time.Since(c.begun)
	}
	s.metrics.Call(c.op, c.team.ID, s.modelLabel(c.modelID), status, total, c.latency)
}

// modelLabel bounds the model label to models meter knows (a family's
// catalog, the configured extra models, or a price in the book), as their
// base model; anything a caller invents is "other".
func (s *Server) modelLabel(id string) string {
	base := pricing.BaseModel(id)
	if _, ok := s.known[base]; ok {
		return base
	}
	if b, ok := s.cfg.Prices.(interface {
		EffectiveFrom(modelID, tier, region string, at time.Time) (time.Time, bool)
	}); ok {
		if _, ok := b.EffectiveFrom(base, "", "", s.cfg.Now()); ok {
			return base
		}
	}
	return "other"
}

// knownModels is the catalog a model label may name.
func (s *Server) knownModels() map[string]struct{} {
	known := map[string]struct{}{}
	for _, f := range families {
		for _, m := range f.models {
			known[m] = struct{}{}
		}
	}
	for _, m := range s.cfg.Models {
		known[pricing.BaseModel(m)] = struct{}{}
	}
	return known
}

// Connection limits of the HTTP server: a client that announces a body and
// never sends it, or keeps an idle connection open, is cut off instead of
// holding a connection for ever. There is no write timeout: a stream may
// answer for minutes (StreamTimeout bounds it).
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 60 * time.Second // the whole request, body included (4 MiB at most)
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 64 << 10
)

// HTTPServer returns the http.Server meter serves an API with: these limits,
// and HTTPS (HTTP/2 where offered) when tc is set.
func HTTPServer(h http.Handler, tc *tls.Config) *http.Server {
	return &http.Server{Handler: h, TLSConfig: tc, ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout,
		IdleTimeout: IdleTimeout, MaxHeaderBytes: MaxHeaderBytes}
}

// usageAccepting refuses a call before it reaches Bedrock when its usage
// event could not be recorded (the spill's disk full, or neither stream nor
// spill taking events): a call served then would go unmetered. The refusal
// is answered 503 with Retry-After and counted; it has no event, since none
// can be recorded, and costs nothing.
func (s *Server) usageAccepting(w http.ResponseWriter, r *http.Request, c *call) bool {
	u, ok := s.cfg.Usage.(usageReadiness)
	if !ok || u.Ready() {
		return true
	}
	s.metrics.Refused(c.team.ID, "usage_unavailable")
	s.fail(w, r, c, &apiError{status: http.StatusServiceUnavailable, code: "usage_unavailable", retryAfter: 5 * time.Second,
		msg: "usage cannot be recorded right now, so no call is made; try again later"})
	return false
}
