package collector_test

// The usage every pipeline test sends, and the numbers it must come out as,
// computed here from the price file and the generated events alone: the
// expected chargeback and window sums never go through the code under test.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/parquetcheck"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/schemas"
)

// price is one on-demand (or batch) token price row of the shipped price file.
type price struct {
	in, out, cacheRead, cacheWrite decimal.Decimal
	hasCache                       bool
}

type priceKey struct{ model, tier string }

// tokenPrices reads aggregator/pricing/default_prices.csv directly: every token
// priced row without region or image columns, keyed by model and tier.
func tokenPrices(t testing.TB) map[priceKey]price {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "aggregator", "pricing", "default_prices.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	get := func(row []string, name string) string {
		if i, ok := col[name]; ok && i < len(row) {
			return row[i]
		}
		return ""
	}
	out := map[priceKey]price{}
	for _, row := range rows[1:] {
		if get(row, "per_image") != "" || get(row, "region") != "" {
			continue
		}
		tier := get(row, "pricing_tier")
		if tier == "" {
			tier = "on_demand"
		}
		p := price{in: decimal.RequireFromString(get(row, "input_per_1k")), out: decimal.RequireFromString(get(row, "output_per_1k"))}
		if cr, cw := get(row, "cache_read_per_1k"), get(row, "cache_write_per_1k"); cr != "" && cw != "" {
			p.cacheRead, p.cacheWrite, p.hasCache = decimal.RequireFromString(cr), decimal.RequireFromString(cw), true
		}
		k := priceKey{get(row, "model_id"), tier}
		if _, dup := out[k]; dup {
			t.Fatalf("price file has two rows for %v; the test expects one", k)
		}
		out[k] = p
	}
	if len(out) < 10 {
		t.Fatalf("only %d token prices in the price file", len(out))
	}
	return out
}

// usage is a generated workload: the records in stream order (duplicates and
// poison included) and the distinct requests they carry.
type usage struct {
	records  []stream.Entry
	events   []schemas.Event // every valid event in stream order, duplicates included
	requests []schemas.Event // one per request_id, the first sent
	poison   int
	prices   map[priceKey]price
}

type genOptions struct {
	requests int
	days     []string // events spread evenly over these UTC days
	dupRate  float64  // share of requests sent twice, with a new event_id
	dupSpan  int      // a duplicate follows its original by up to this many records
	poison   bool     // add one malformed JSON record and one with a bad field, mid-stream
	seed     uint64
}

var teamsCC = [][2]string{{"team-a", "cc-100"}, {"team-b", "cc-200"}, {"team-c", ""}, {"team-d", "cc-400"}}

func generate(t testing.TB, o genOptions) *usage {
	t.Helper()
	prices := tokenPrices(t)
	type choice struct {
		model, tier string
		cache       bool
	}
	var models []choice
	for k, p := range prices {
		models = append(models, choice{k.model, k.tier, p.hasCache})
	}
	sort.Slice(models, func(i, j int) bool {
		if models[i].model != models[j].model {
			return models[i].model < models[j].model
		}
		return models[i].tier < models[j].tier
	})
	rng := rand.New(rand.NewPCG(o.seed, 42))
	u := &usage{prices: prices}
	per := (o.requests + len(o.days) - 1) / len(o.days)
	statuses := []string{schemas.StatusSuccess, schemas.StatusSuccess, schemas.StatusSuccess, schemas.StatusSuccess, schemas.StatusSuccess,
		schemas.StatusSuccess, schemas.StatusSuccess, schemas.StatusDenied, schemas.StatusThrottled, schemas.StatusClientError, schemas.StatusUpstreamError}
	for i := 0; i < o.requests; i++ {
		day, _ := time.Parse(schemas.DayLayout, o.days[i/per])
		// Time-ordered within the day, as an invoker emits them.
		step := (24*time.Hour - time.Second) / time.Duration(per)
		ts := day.Add(step * time.Duration(i%per)).Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
		tc := teamsCC[rng.IntN(len(teamsCC))]
		m := models[rng.IntN(len(models))]
		e := schemas.Event{SchemaVersion: 1, EventID: fmt.Sprintf("ev-%08d-a", i), RequestID: fmt.Sprintf("req-%d-%08d", o.seed, i),
			Timestamp: ts.UTC().Truncate(time.Millisecond), TeamID: tc[0], CostCenter: tc[1], ModelID: m.model,
			Operation: schemas.Operations[rng.IntN(len(schemas.Operations))], Status: statuses[rng.IntN(len(statuses))],
			LatencyMS: int64(50 + rng.IntN(5000)), Region: "us-east-1"}
		if m.tier != "on_demand" || rng.IntN(2) == 0 {
			e.PricingTier = m.tier
		}
		if e.Status == schemas.StatusSuccess {
			e.InputTokens = int64(1 + rng.IntN(20000))
			if !strings.Contains(m.model, "embed") {
				e.OutputTokens = int64(rng.IntN(4000))
			}
			if m.cache && rng.IntN(3) == 0 {
				e.CacheReadInputTokens = int64(rng.IntN(50000))
				e.CacheWriteInputTokens = int64(rng.IntN(5000))
			}
		}
		u.requests = append(u.requests, e)
	}
	// Stream order: requests in time order; a duplicate a little later.
	type pending struct {
		at int
		e  schemas.Event
	}
	var dups []pending
	pos := 0
	emit := func(e schemas.Event) {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		u.records = append(u.records, stream.Entry{PartitionKey: e.RequestID, Data: data})
		u.events = append(u.events, e)
		pos++
	}
	for i, e := range u.requests {
		if o.poison && i == len(u.requests)/3 {
			// Malformed JSON, keyed the way `meter put` keys a line it could not parse.
			u.records = append(u.records, stream.Entry{PartitionKey: "malformed/input.jsonl:7", Data: []byte(`{"schema_version":1,"event_id":"ev-broken","request_id":`)})
			bad := e
			bad.RequestID, bad.EventID, bad.Status = "req-poison", "ev-poison", "exploded"
			data, _ := json.Marshal(bad)
			u.records = append(u.records, stream.Entry{PartitionKey: "req-poison", Data: data})
			u.poison = 2
		}
		emit(e)
		if rng.Float64() < o.dupRate {
			d := e
			d.EventID = strings.TrimSuffix(e.EventID, "-a") + "-b"
			dups = append(dups, pending{pos + 1 + rng.IntN(o.dupSpan+1), d})
		}
		rest := dups[:0]
		for _, p := range dups {
			if p.at <= pos {
				emit(p.e)
			} else {
				rest = append(rest, p)
			}
		}
		dups = rest
	}
	for _, p := range dups {
		emit(p.e)
	}
	return u
}

// chargeKey is a chargeback CSV row's identity.
type chargeKey struct{ day, team, cc, model string }

// charge is a chargeback CSV row's numbers.
type charge struct {
	invocations, in, out, cacheRead, cacheWrite, denied, throttled, errors int64
	inCost, outCost, cacheReadCost, cacheWriteCost, total                  decimal.Decimal
}

func (c charge) String() string {
	return fmt.Sprintf("inv=%d in=%d out=%d cr=%d cw=%d denied=%d throttled=%d errors=%d in$=%s out$=%s cr$=%s cw$=%s total$=%s",
		c.invocations, c.in, c.out, c.cacheRead, c.cacheWrite, c.denied, c.throttled, c.errors,
		c.inCost, c.outCost, c.cacheReadCost, c.cacheWriteCost, c.total)
}

func (c charge) equal(o charge) bool {
	return c.invocations == o.invocations && c.in == o.in && c.out == o.out && c.cacheRead == o.cacheRead &&
		c.cacheWrite == o.cacheWrite && c.denied == o.denied && c.throttled == o.throttled && c.errors == o.errors &&
		c.inCost.Equal(o.inCost) && c.outCost.Equal(o.outCost) && c.cacheReadCost.Equal(o.cacheReadCost) &&
		c.cacheWriteCost.Equal(o.cacheWriteCost) && c.total.Equal(o.total)
}

// cost is the exact cost of one request, from the price file.
func (u *usage) cost(e *schemas.Event) (in, out, cr, cw decimal.Decimal) {
	if e.Status != schemas.StatusSuccess {
		return
	}
	p := u.prices[priceKey{e.ModelID, e.Tier()}]
	per1k := func(n int64, d decimal.Decimal) decimal.Decimal { return decimal.NewFromInt(n).Mul(d).Shift(-3) }
	return per1k(e.InputTokens, p.in), per1k(e.OutputTokens, p.out), per1k(e.CacheReadInputTokens, p.cacheRead), per1k(e.CacheWriteInputTokens, p.cacheWrite)
}

// chargeback is the expected chargeback of every day: each request counted once.
func (u *usage) chargeback() map[chargeKey]charge {
	out := map[chargeKey]charge{}
	for i := range u.requests {
		e := &u.requests[i]
		k := chargeKey{e.Day(), e.TeamID, e.CostCenter, e.ModelID}
		c := out[k]
		switch e.Status {
		case schemas.StatusSuccess:
			in, o, cr, cw := u.cost(e)
			c.invocations++
			c.in += e.InputTokens
			c.out += e.OutputTokens
			c.cacheRead += e.CacheReadInputTokens
			c.cacheWrite += e.CacheWriteInputTokens
			c.inCost, c.outCost = c.inCost.Add(in), c.outCost.Add(o)
			c.cacheReadCost, c.cacheWriteCost = c.cacheReadCost.Add(cr), c.cacheWriteCost.Add(cw)
			c.total = c.total.Add(in).Add(o).Add(cr).Add(cw)
		case schemas.StatusDenied:
			c.denied++
		case schemas.StatusThrottled:
			c.throttled++
		default:
			c.errors++
		}
		out[k] = c
	}
	return out
}

// dayTotal sums the expected chargeback of one day.
func dayTotal(cb map[chargeKey]charge, day string) charge {
	var s charge
	for k, c := range cb {
		if k.day != day {
			continue
		}
		s.invocations += c.invocations
		s.in += c.in
		s.out += c.out
		s.cacheRead += c.cacheRead
		s.cacheWrite += c.cacheWrite
		s.denied += c.denied
		s.throttled += c.throttled
		s.errors += c.errors
		s.inCost, s.outCost = s.inCost.Add(c.inCost), s.outCost.Add(c.outCost)
		s.cacheReadCost, s.cacheWriteCost = s.cacheReadCost.Add(c.cacheReadCost), s.cacheWriteCost.Add(c.cacheWriteCost)
		s.total = s.total.Add(c.total)
	}
	return s
}

// parseChargeback reads a chargeback CSV (exact costs) by its header names.
func parseChargeback(t testing.TB, data []byte) map[chargeKey]charge {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, need := range []string{"day", "team_id", "cost_center", "model_id", "invocations", "input_tokens", "output_tokens", "input_cost", "output_cost", "total_cost"} {
		if _, ok := col[need]; !ok {
			t.Fatalf("chargeback CSV has no column %q: %v", need, rows[0])
		}
	}
	n := func(row []string, name string) int64 {
		v, err := strconv.ParseInt(row[col[name]], 10, 64)
		if err != nil {
			t.Fatalf("chargeback %s = %q: %v", name, row[col[name]], err)
		}
		return v
	}
	d := func(row []string, name string) decimal.Decimal {
		v, err := decimal.NewFromString(row[col[name]])
		if err != nil {
			t.Fatalf("chargeback %s = %q: %v", name, row[col[name]], err)
		}
		return v
	}
	out := map[chargeKey]charge{}
	for _, row := range rows[1:] {
		k := chargeKey{row[col["day"]], row[col["team_id"]], row[col["cost_center"]], row[col["model_id"]]}
		if _, dup := out[k]; dup {
			t.Errorf("chargeback has two rows for %v", k)
		}
		out[k] = charge{invocations: n(row, "invocations"), in: n(row, "input_tokens"), out: n(row, "output_tokens"),
			cacheRead: n(row, "cache_read_input_tokens"), cacheWrite: n(row, "cache_write_input_tokens"),
			denied: n(row, "denied"), throttled: n(row, "throttled"), errors: n(row, "errors"),
			inCost: d(row, "input_cost"), outCost: d(row, "output_cost"), cacheReadCost: d(row, "cache_read_cost"),
			cacheWriteCost: d(row, "cache_write_cost"), total: d(row, "total_cost")}
	}
	return out
}

// compareChargeback fails the test on any row that differs from the truth.
func compareChargeback(t testing.TB, day string, got, want map[chargeKey]charge) {
	t.Helper()
	bad := 0
	for k, w := range want {
		if k.day != day {
			continue
		}
		g, ok := got[k]
		if !ok {
			t.Errorf("chargeback %s: no row for %v (want %v)", day, k, w)
			bad++
		} else if !g.equal(w) {
			t.Errorf("chargeback %v:\n got %v\nwant %v", k, g, w)
			bad++
		}
		if bad > 10 {
			t.FailNow()
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("chargeback has an unexpected row %v", k)
		}
	}
}

// windowKey and window are a usage_windows row's identity and numbers.
type windowKey struct {
	start                         int64
	team, cc, model, status, tier string
}

type window struct {
	end, requests, in, out, cacheRead, cacheWrite, images, latency int64
}

// windows is the expected usage_windows content: each request once, in the
// window of its event time.
func (u *usage) windows(size time.Duration) map[windowKey]window {
	out := map[windowKey]window{}
	w := size.Milliseconds()
	for i := range u.requests {
		e := &u.requests[i]
		ms := e.Timestamp.UnixMilli()
		k := windowKey{ms - ms%w, e.TeamID, e.CostCenter, e.ModelID, e.Status, e.Tier()}
		v := out[k]
		v.end = k.start + w
		v.requests++
		v.in += e.InputTokens
		v.out += e.OutputTokens
		v.cacheRead += e.CacheReadInputTokens
		v.cacheWrite += e.CacheWriteInputTokens
		v.images += e.ImageCount
		v.latency += e.LatencyMS
		out[k] = v
	}
	return out
}

// sumWindows adds window rows up by key (several outputs may hold partials of one window).
func sumWindows(rows []schemas.WindowRow) map[windowKey]window {
	out := map[windowKey]window{}
	for _, r := range rows {
		k := windowKey{r.WindowStart, r.TeamID, r.CostCenter, r.ModelID, r.Status, r.PricingTier}
		v := out[k]
		v.end = r.WindowEnd
		v.requests += r.Requests
		v.in += r.InputTokens
		v.out += r.OutputTokens
		v.cacheRead += r.CacheReadInputTokens
		v.cacheWrite += r.CacheWriteInputTokens
		v.images += r.ImageCount
		v.latency += r.LatencyMSSum
		out[k] = v
	}
	return out
}

func compareWindows(t testing.TB, got, want map[windowKey]window) {
	t.Helper()
	bad := 0
	for k, w := range want {
		if g := got[k]; g != w {
			t.Errorf("window %v: got %+v, want %+v", k, g, w)
			if bad++; bad > 10 {
				t.FailNow()
			}
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected window %v: %+v", k, g)
		}
	}
}

// parquetFiles lists the .parquet files under dir/table, checks each one's
// page index the way Athena relies on it, and returns their paths.
func parquetFiles(t testing.TB, dir, table string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, table, "dt=*", "*.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	kept := paths[:0]
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), ".tmp-") {
			continue // a write a killed process left behind; the store never lists it
		}
		kept = append(kept, p)
	}
	paths = kept
	for _, p := range paths {
		if err := parquetcheck.CheckFile(p); err != nil {
			t.Errorf("page index: %v", err)
		}
	}
	return paths
}

// readAll reads a file or fails the test.
func readAll(t testing.TB, r io.Reader) []byte {
	b, err := io.ReadAll(r)
	if err != nil && t != nil {
		t.Fatal(err)
	}
	return b
}

// pricingDefault is the shipped price book the compaction uses.
func pricingDefault() *pricing.Book { return pricing.Default() }
