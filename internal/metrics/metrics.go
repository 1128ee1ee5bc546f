// Package metrics names every metric meter exports, in one place, and carries
// them out: as Prometheus collectors (meter serve's /metrics) and as
// CloudWatch Embedded Metric Format lines (the Lambdas' stdout, which
// CloudWatch turns into metrics with no agent). The alarms in infra/alarms
// refer to these names, and a test holds them to it.
//
// Labels come only from bounded sets: configured team ids, known model ids
// (anything else is "other"), statuses and reasons meter defines. Never a
// string a caller chose.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace of the CloudWatch metrics the Lambdas emit.
const Namespace = "meter"

// Metric names. Counters end in _total in Prometheus; the same name is the
// CloudWatch metric's.
const (
	InvokerCalls          = "meter_invoker_calls_total"          // team, model, status
	InvokerBedrockSeconds = "meter_invoker_bedrock_seconds"      // op: time in the Bedrock call
	InvokerOwnSeconds     = "meter_invoker_own_seconds"          // op: meter's own time around it
	InvokerLimitRefusals  = "meter_invoker_limit_refusals_total" // team, kind
	UsageEmitted          = "meter_usage_events_emitted_total"   // events put to the stream directly
	UsageSpilled          = "meter_usage_events_spilled_total"   // events written to the spill
	UsageRedriven         = "meter_usage_events_redriven_total"  // spilled events re-sent to the stream
	UsageNotRecorded      = "meter_usage_events_lost_total"      // events neither streamed nor spilled (calls refused 503)
	UsageSpillBacklog     = "meter_usage_spill_backlog_events"   // events waiting in the spill
	UsageDeadLettered     = "meter_usage_events_dead_lettered_total"
	TenantsReloadFailures = "meter_tenants_reload_failures_total" // tenant files refused (the last good one stays)
	LimitsStoreErrors     = "meter_limits_store_errors_total"     // calls to the shared limits table that failed
	LimitsLeasesExpired   = "meter_limits_leases_expired_total"   // reservations released after their lease ran out
	LimitsAdmittedOpen    = "meter_limits_admitted_open_total"    // calls admitted unreserved while the table was unreachable

	CollectorRecords       = "meter_collector_records_read_total"
	CollectorEvents        = "meter_collector_events_written_total"
	CollectorDuplicates    = "meter_collector_duplicates_dropped_total"
	CollectorQuarantined   = "meter_collector_quarantined_total" // reason: malformed | invalid
	CollectorFailures      = "meter_collector_failures_total"    // batches that failed and will be retried
	CollectorIteratorAgeMS = "meter_collector_iterator_age_milliseconds"

	CompactionRowsRead   = "meter_compaction_rows_read_total"
	CompactionDuplicates = "meter_compaction_duplicates_dropped_total"
	CompactionCostUSD    = "meter_compaction_total_cost_usd"
	CompactionSeconds    = "meter_compaction_duration_seconds"
	CompactionFailures   = "meter_compaction_failures_total"

	ReconcileRows      = "meter_reconcile_rows" // status
	ReconcileUnmetered = "meter_reconcile_unmetered_calls"

	ReconcileTokenRows      = "meter_reconcile_token_rows"            // status; against the invocation logs
	ReconcileBillDiffering  = "meter_reconcile_bill_differing_models" // models beyond --bill-tolerance
	ReconcileBillDifference = "meter_reconcile_bill_difference_usd"   // billed minus metered list price, the day
)

// Names lists every metric name above, for the test that holds the alarms to them.
var Names = []string{InvokerCalls, InvokerBedrockSeconds, InvokerOwnSeconds, InvokerLimitRefusals, UsageEmitted, UsageSpilled, UsageDeadLettered,
	UsageRedriven, UsageNotRecorded, UsageSpillBacklog, TenantsReloadFailures, LimitsStoreErrors, LimitsLeasesExpired, LimitsAdmittedOpen, CollectorRecords, CollectorEvents, CollectorDuplicates,
	CollectorQuarantined, CollectorFailures, CollectorIteratorAgeMS, CompactionRowsRead, CompactionDuplicates, CompactionCostUSD,
	CompactionSeconds, CompactionFailures, ReconcileRows, ReconcileUnmetered, ReconcileTokenRows, ReconcileBillDiffering, ReconcileBillDifference}

// Invoker is the invoke API's metrics.
type Invoker struct {
	calls    *prometheus.CounterVec
	bedrock  *prometheus.HistogramVec
	own      *prometheus.HistogramVec
	refusals *prometheus.CounterVec
}

// latencyBuckets span a local call (0.1 ms) to a long stream (2 min).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// NewInvoker registers the invoke API's metrics with reg.
func NewInvoker(reg prometheus.Registerer) *Invoker {
	m := &Invoker{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: InvokerCalls,
			Help: "Calls answered, by team, model (known models; else other) and the usage event's status."}, []string{"team", "model", "status"}),
		bedrock: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: InvokerBedrockSeconds,
			Help: "Time spent in the Bedrock call, by operation.", Buckets: latencyBuckets}, []string{"op"}),
		own: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: InvokerOwnSeconds,
			Help: "meter's own time per call (the whole answer less the Bedrock call), by operation.", Buckets: latencyBuckets}, []string{"op"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: InvokerLimitRefusals,
			Help: "Calls refused by a limit, by team and kind (rate_limited, daily_request_quota, daily_token_quota, monthly_budget)."}, []string{"team", "kind"}),
	}
	reg.MustRegister(m.calls, m.bedrock, m.own, m.refusals)
	return m
}

// Call counts one answered call, and its time in Bedrock and around it
// (bedrock is 0 for a call that never reached Bedrock).
func (m *Invoker) Call(op, team, model, status string, total, bedrock time.Duration) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(team, model, status).Inc()
	if bedrock > 0 {
		m.bedrock.WithLabelValues(op).Observe(bedrock.Seconds())
	}
	m.own.WithLabelValues(op).Observe(max(total-bedrock, 0).Seconds())
}

// Refused counts a call refused by a limit.
func (m *Invoker) Refused(team, kind string) {
	if m == nil {
		return
	}
	m.refusals.WithLabelValues(team, kind).Inc()
}

// UsageStats are the usage emitter's running counts.
type UsageStats struct {
	Emitted, Spilled, Redriven, Lost int64
	DeadLettered                     int64 // events no stream can take, kept with the reason
	Backlog                          int64 // events in the spill now
}

// RegisterUsage exports the emitter's counts, read from stats at each scrape.
func RegisterUsage(reg prometheus.Registerer, stats func() UsageStats) {
	counter := func(name, help string, f func(UsageStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(stats())) })
	}
	reg.MustRegister(
		counter(UsageEmitted, "Usage events put to the stream directly.", func(s UsageStats) int64 { return s.Emitted }),
		counter(UsageSpilled, "Usage events written to the spill while the stream could not take them.", func(s UsageStats) int64 { return s.Spilled }),
		counter(UsageRedriven, "Spilled usage events re-sent to the stream.", func(s UsageStats) int64 { return s.Redriven }),
		counter(UsageNotRecorded, "Usage events neither streamed nor spilled: their calls were refused with 503.", func(s UsageStats) int64 { return s.Lost }),
		counter(UsageDeadLettered, "Usage events no stream can take (too large, a bad key), kept as dead letters with the reason.", func(s UsageStats) int64 { return s.DeadLettered }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: UsageSpillBacklog, Help: "Usage events waiting in the spill."},
			func() float64 { return float64(stats().Backlog) }),
	)
}

// RegisterTenantFailures exports the count of tenant files refused.
func RegisterTenantFailures(reg prometheus.Registerer, failures func() int64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: TenantsReloadFailures,
		Help: "Tenant registry files refused as invalid; the last good registry stays in force."}, func() float64 { return float64(failures()) }))
}

// LimitsStats are a shared limits store's running counts.
type LimitsStats struct {
	StoreErrors   int64 // calls to the limits table that failed (unreachable, throttled, timed out)
	LeasesExpired int64 // reservations released after their lease ran out unsettled
	AdmittedOpen  int64 // calls admitted without a reservation while the table was unreachable (fail open)
}

// RegisterLimits exports a shared limits store's counts, read from stats at each scrape.
func RegisterLimits(reg prometheus.Registerer, stats func() LimitsStats) {
	counter := func(name, help string, f func(LimitsStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(stats())) })
	}
	reg.MustRegister(
		counter(LimitsStoreErrors, "Calls to the limits table that failed; with the default fail-closed setting, limited calls are refused 503 meanwhile.", func(s LimitsStats) int64 { return s.StoreErrors }),
		counter(LimitsLeasesExpired, "Reservations released after their lease ran out unsettled (an invoker instance died mid-call).", func(s LimitsStats) int64 { return s.LeasesExpired }),
		counter(LimitsAdmittedOpen, "Calls admitted without a reservation while the limits table was unreachable (fail open configured).", func(s LimitsStats) int64 { return s.AdmittedOpen }),
	)
}
