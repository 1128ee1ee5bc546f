package aggregator

import (
	"math"
	"math/big"
	"math/bits"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/schemas"
)

// unitScale is the scale of the fixed-point rates the day's pricer keeps:
// a price per 1,000 tokens with up to 15 decimals is an exact integer count of
// 10^-18 USD per token. Rates that do not fit are priced with decimals.
const unitScale = 18

// fixed is a non-negative amount of 10^-unitScale USD in 128 bits.
type fixed struct{ hi, lo uint64 }

func (f fixed) add(o fixed) (fixed, bool) {
	lo, c := bits.Add64(f.lo, o.lo, 0)
	hi, c2 := bits.Add64(f.hi, o.hi, c)
	return fixed{hi, lo}, c2 == 0
}

// mulFixed returns n * unit; 64 by 64 bits always fits in 128.
func mulFixed(n int64, unit uint64) fixed {
	hi, lo := bits.Mul64(uint64(n), unit)
	return fixed{hi, lo}
}

func (f fixed) decimal() decimal.Decimal {
	if f.hi == 0 && f.lo == 0 {
		return decimal.Zero
	}
	b := new(big.Int).SetUint64(f.hi)
	b.Lsh(b, 64).Or(b, new(big.Int).SetUint64(f.lo))
	return decimal.NewFromBigInt(b, -unitScale)
}

// scaled returns f rounded half-up to schemas.MoneyScale places, as
// schemas.ScaledMoney does, and false when that does not fit in an int64.
func (f fixed) scaled() (int64, bool) {
	const div = 100_000_000 // 10^(unitScale-MoneyScale)
	if f.hi >= div {
		return 0, false
	}
	q, r := bits.Div64(f.hi, f.lo, div)
	if r >= div/2 {
		q++
	}
	if q > math.MaxInt64 {
		return 0, false
	}
	return int64(q), true
}

// fixedCosts are an event's or a group's costs in fixed point, by component.
type fixedCosts [5]fixed // input, output, cache read, cache write, image

// addAll adds o to c; on overflow it reports false and leaves c unchanged, so
// the caller can carry both sums as decimals.
func (c *fixedCosts) addAll(o *fixedCosts) bool {
	sum := *c
	for i := range sum {
		var fine bool
		if sum[i], fine = sum[i].add(o[i]); !fine {
			return false
		}
	}
	*c = sum
	return true
}

func (c *fixedCosts) costs() schemas.Costs {
	return schemas.Costs{Input: c[0].decimal(), Output: c[1].decimal(), CacheRead: c[2].decimal(), CacheWrite: c[3].decimal(), Image: c[4].decimal()}
}

// dayPricer prices the events of one day. It learns, once
// per model, tier and region, which price rows are in force during the day and
// what one token or one image costs under each, by asking the book itself;
// an event is then priced by integer multiplication, exactly. Anything it has
// not learnt (an unpriced component, a rate beyond 18 decimals, an error) goes
// to the Pricer, so results and errors are the Pricer's own.
type dayPricer struct {
	p          Pricer
	start, end time.Time
	keys       map[priceKey]*priceState
}

type priceKey struct{ model, tier, region string }

type priceState struct{ versions []*priceVersion } // latest first

type priceVersion struct {
	from     time.Time
	probeAt  time.Time
	tokens   bool // input and output rates known
	in, out  uint64
	cr, cw   uint64
	hasCR    bool
	hasCW    bool
	images   map[imageKey]imageRate
	template schemas.Event
}

type imageKey struct {
	w, h, steps int64
	quality     string
}

type imageRate struct {
	ok   bool
	rate uint64
}

func newDayPricer(p Pricer, start time.Time) *dayPricer {
	dp := &dayPricer{p: p, start: start, end: start.Add(24 * time.Hour), keys: map[priceKey]*priceState{}}
	return dp
}

// unitRate converts the cost of one unit to fixed point.
func unitRate(d decimal.Decimal) (uint64, bool) {
	s := d.Shift(unitScale)
	if !s.IsInteger() || s.IsNegative() || s.Cmp(decimal.NewFromInt(math.MaxInt64)) > 0 {
		return 0, false
	}
	return uint64(s.IntPart()), true
}

func (dp *dayPricer) state(k priceKey) *priceState {
	if st, ok := dp.keys[k]; ok {
		return st
	}
	st := &priceState{}
	dp.keys[k] = st
	// Walk back from the end of the day through the rows in force: the result
	// of Rows only changes at an effective_from, so each step finds the
	// previous one until a version started before the day.
	at := dp.end.Add(-time.Nanosecond)
	for i := 0; i < 64; i++ {
		from, ok := dp.p.EffectiveFrom(k.model, k.tier, k.region, at)
		if !ok {
			break
		}
		v := &priceVersion{from: from, probeAt: from, images: map[imageKey]imageRate{}}
		if v.probeAt.Before(dp.start) {
			v.probeAt = dp.start
		}
		v.template = schemas.Event{SchemaVersion: schemas.SchemaVersion, ModelID: k.model, PricingTier: k.tier, Region: k.region,
			Status: schemas.StatusSuccess, Timestamp: v.probeAt}
		e := v.template
		e.InputTokens, e.OutputTokens = 1, 1
		if c, err := dp.p.Cost(&e); err == nil {
			var ok1, ok2 bool
			v.in, ok1 = unitRate(c.Input)
			v.out, ok2 = unitRate(c.Output)
			v.tokens = ok1 && ok2 && c.CacheRead.IsZero() && c.CacheWrite.IsZero() && c.Image.IsZero()
		}
		e = v.template
		e.CacheReadInputTokens = 1
		if c, err := dp.p.Cost(&e); err == nil {
			v.cr, v.hasCR = unitRate(c.CacheRead)
		}
		e = v.template
		e.CacheWriteInputTokens = 1
		if c, err := dp.p.Cost(&e); err == nil {
			v.cw, v.hasCW = unitRate(c.CacheWrite)
		}
		st.versions = append(st.versions, v)
		if !from.After(dp.start) {
			break
		}
		at = from.Add(-time.Nanosecond)
	}
	return st
}

func (v *priceVersion) image(dp *dayPricer, e *schemas.Event) (uint64, bool) {
	k := imageKey{e.ImageWidth, e.ImageHeight, e.ImageSteps, e.ImageQuality}
	if r, ok := v.images[k]; ok {
		return r.rate, r.ok
	}
	p := v.template
	p.ImageCount, p.ImageWidth, p.ImageHeight, p.ImageSteps, p.ImageQuality = 1, e.ImageWidth, e.ImageHeight, e.ImageSteps, e.ImageQuality
	var r imageRate
	if c, err := dp.p.Cost(&p); err == nil && c.Input.IsZero() && c.Output.IsZero() {
		r.rate, r.ok = unitRate(c.Image)
	}
	v.images[k] = r
	return r.rate, r.ok
}

// fast prices e in fixed point; false means the Pricer must price it.
func (dp *dayPricer) fast(e *schemas.Event, out *fixedCosts) bool {
	*out = fixedCosts{}
	if e.Status != schemas.StatusSuccess {
		return true
	}
	if e.InputTokens < 0 || e.OutputTokens < 0 || e.CacheReadInputTokens < 0 ||
		e.CacheWriteInputTokens < 0 || e.ImageCount < 0 {
		return false
	}
	st := dp.state(priceKey{e.ModelID, e.Tier(), e.Region})
	var v *priceVersion
	for _, c := range st.versions {
		if !c.from.After(e.Timestamp) {
			v = c
			break
		}
	}
	if v == nil || !v.tokens {
		return false
	}
	out[0] = mulFixed(e.InputTokens, v.in)
	out[1] = mulFixed(e.OutputTokens, v.out)
	if e.CacheReadInputTokens > 0 {
		if !v.hasCR {
			return false
		}
		out[2] = mulFixed(e.CacheReadInputTokens, v.cr)
	}
	if e.CacheWriteInputTokens > 0 {
		if !v.hasCW {
			return false
		}
		out[3] = mulFixed(e.CacheWriteInputTokens, v.cw)
	}
	if e.ImageCount > 0 {
		rate, ok := v.image(dp, e)
		if !ok {
			return false
		}
		out[4] = mulFixed(e.ImageCount, rate)
	}
	return true
}
