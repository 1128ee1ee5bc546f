package limits

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/meter-dev/meter/invoker/tenants"
)

// Rate is the per-process token bucket of every team's rate limit (requests
// per second and burst). It holds for one process only, whatever store keeps
// quotas and budgets: across replicas the rate limit in front of them (API
// Gateway's usage-plan throttling in AWS) is what holds. The zero Rate is
// ready to use.
type Rate struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	rps    float64
	burst  float64
	tokens float64
	last   time.Time
}

func burstOf(r tenants.RateLimit) float64 {
	if r.Burst > 0 {
		return float64(r.Burst)
	}
	return math.Max(1, math.Ceil(r.RPS))
}

// refill returns team's bucket refilled to now, or nil without a rate limit.
func (r *Rate) refill(team *tenants.Team, now time.Time) *bucket {
	if team.RateLimit.RPS <= 0 {
		return nil
	}
	if r.buckets == nil {
		r.buckets = map[string]*bucket{}
	}
	b := r.buckets[team.ID]
	burst := burstOf(team.RateLimit)
	if b == nil || b.rps != team.RateLimit.RPS || b.burst != burst {
		b = &bucket{rps: team.RateLimit.RPS, burst: burst, tokens: burst, last: now}
		r.buckets[team.ID] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(b.burst, b.tokens+el*b.rps)
		b.last = now
	}
	return b
}

// check refuses a call when team's bucket has no token left; it takes none.
func (r *Rate) check(team *tenants.Team, now time.Time) *Error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.refill(team, now)
	if b == nil || b.tokens >= 1 {
		return nil
	}
	wait := time.Duration((1 - b.tokens) / b.rps * float64(time.Second))
	return &Error{Reason: "rate_limited", RetryAfter: wait,
		Message: fmt.Sprintf("team %s exceeded its rate limit of %g requests per second (burst %g)", team.ID, b.rps, b.burst)}
}

// take takes one token from team's bucket (after check passed).
func (r *Rate) take(team *tenants.Team, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.refill(team, now); b != nil {
		b.tokens--
	}
}

// give returns a token taken for a call that was refused after all.
func (r *Rate) give(team *tenants.Team) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.buckets[team.ID]; b != nil {
		b.tokens = math.Min(b.burst, b.tokens+1)
	}
}
