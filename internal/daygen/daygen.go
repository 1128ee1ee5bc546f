// Package daygen generates a day of usage events whose true chargeback is
// known: duplicates, events of the neighbouring day, a price that changes at
// noon, cache tokens and images. The truth is computed here with integers and
// a price table of its own, independently of the pricing package, so tests
// and benchmarks can hold the compaction to exact numbers.
package daygen

import (
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/schemas"
)

// Config describes a generated day.
type Config struct {
	Day       string  // YYYY-MM-DD
	Events    int     // distinct requests of the day
	Files     int     // events objects the day is spread over
	DupRate   float64 // share of requests delivered twice (default 0.01)
	OtherDay  int     // events of the previous day placed in this day's partition
	Seed      uint64
	FirstFile int // number of the first object (late files continue the count)
}

// Teams and cost centers of generated events.
var Teams = []string{"team-ads", "team-billing", "team-core", "team-search", "team-voice"}

func costCenter(team string) string { return "cc-" + strings.TrimPrefix(team, "team-") }

// model is one invoked model and its prices: per 1,000 tokens in 10^-5 USD,
// per image in 10^-8 USD.
type model struct {
	id, priced       string
	in, out, cr, cw  int64
	noonIn, noonOut  int64 // price from 12:00 UTC; 0: no change
	image            bool
	hasCache         bool
	stepsPriced      bool
	embed            bool
	cacheUnpricedRow bool
}

// Models lists the twelve invoked model ids.
var models = []model{
	{id: "anthropic.claude-3-5-sonnet-20240620-v1:0", in: 300, out: 1500},
	{id: "us.anthropic.claude-3-haiku-20240307-v1:0", priced: "anthropic.claude-3-haiku-20240307-v1:0", in: 25, out: 125, noonIn: 20, noonOut: 100},
	{id: "anthropic.claude-3-7-sonnet-20250219-v1:0", in: 300, out: 1500, cr: 30, cw: 375, hasCache: true},
	{id: "anthropic.claude-3-5-haiku-20241022-v1:0", in: 80, out: 400, cr: 8, cw: 100, hasCache: true},
	{id: "meta.llama3-70b-instruct-v1:0", in: 265, out: 350},
	{id: "meta.llama3-8b-instruct-v1:0", in: 30, out: 60},
	{id: "mistral.mistral-large-2402-v1:0", in: 400, out: 1200},
	{id: "cohere.command-r-v1:0", in: 50, out: 150},
	{id: "amazon.titan-text-express-v1", in: 20, out: 60},
	{id: "amazon.titan-embed-text-v2:0", in: 2, out: 0, embed: true},
	{id: "amazon.titan-image-generator-v1", image: true},
	{id: "stability.stable-diffusion-xl-v1", image: true, stepsPriced: true},
}

// ModelIDs returns the invoked model ids.
func ModelIDs() []string {
	out := make([]string, len(models))
	for i, m := range models {
		out[i] = m.id
	}
	return out
}

// imagePrice returns the per-image price in 10^-8 USD, as the price file says.
func imagePrice(m *model, w, h, steps int64, quality string) int64 {
	px := w * h
	if m.stepsPriced {
		if steps <= 50 {
			return 4_000_000 // 0.04
		}
		return 8_000_000 // 0.08
	}
	switch {
	case px <= 262144 && quality == "standard":
		return 800_000
	case px <= 262144:
		return 1_000_000
	case quality == "standard":
		return 1_000_000
	}
	return 1_200_000
}

func fmt5(v int64) string { return decimal.New(v, -5).String() }

// PriceCSV returns the price file of generated days, in the shipped file's
// column order. The Haiku price changes at noon of day.
func PriceCSV(day string) string {
	var b strings.Builder
	b.WriteString("model_id,effective_from,input_per_1k,output_per_1k,pricing_tier,cache_read_per_1k,cache_write_per_1k,per_image,image_max_pixels,image_quality,image_max_steps,source\n")
	for _, m := range models {
		id := m.id
		if m.priced != "" {
			id = m.priced
		}
		switch {
		case m.image && m.stepsPriced:
			fmt.Fprintf(&b, "%s,2023-09-28,0,0,on_demand,,,0.04,1048576,,50,gen\n", id)
			fmt.Fprintf(&b, "%s,2023-09-28,0,0,on_demand,,,0.08,1048576,,150,gen\n", id)
		case m.image:
			fmt.Fprintf(&b, "%s,2023-11-29,0,0,on_demand,,,0.008,262144,standard,,gen\n", id)
			fmt.Fprintf(&b, "%s,2023-11-29,0,0,on_demand,,,0.01,262144,premium,,gen\n", id)
			fmt.Fprintf(&b, "%s,2023-11-29,0,0,on_demand,,,0.01,1048576,standard,,gen\n", id)
			fmt.Fprintf(&b, "%s,2023-11-29,0,0,on_demand,,,0.012,1048576,premium,,gen\n", id)
		case m.hasCache:
			fmt.Fprintf(&b, "%s,2024-01-01,%s,%s,on_demand,%s,%s,,,,,gen\n", id, fmt5(m.in), fmt5(m.out), fmt5(m.cr), fmt5(m.cw))
		default:
			fmt.Fprintf(&b, "%s,2024-01-01,%s,%s,on_demand,,,,,,,gen\n", id, fmt5(m.in), fmt5(m.out))
			if m.noonIn != 0 {
				fmt.Fprintf(&b, "%s,%sT12:00:00Z,%s,%s,on_demand,,,,,,,gen\n", id, day, fmt5(m.noonIn), fmt5(m.noonOut))
			}
		}
	}
	return b.String()
}

// Row is the true chargeback of one team, cost center and model.
type Row struct {
	TeamID, CostCenter, ModelID            string
	Invocations, InputTokens, OutputTokens int64
	CacheRead, CacheWrite, Images          int64
	Denied, Throttled, Errors              int64
	InputCost, OutputCost, CacheReadCost   int64 // 10^-8 USD
	CacheWriteCost, ImageCost              int64
}

// TotalCost is the row's exact total in USD.
func (r *Row) TotalCost() decimal.Decimal {
	return decimal.New(r.InputCost+r.OutputCost+r.CacheReadCost+r.CacheWriteCost+r.ImageCost, -8)
}

// Truth is what a correct compaction of the generated files reports.
type Truth struct {
	Rows       map[[3]string]*Row
	RowsRead   int // events written, duplicates and other-day events included
	Duplicates int
	OtherDay   int
	Requests   int
}

// Sorted returns the rows ordered by team, cost center, model.
func (t *Truth) Sorted() []Row {
	var out []Row
	for _, r := range t.Rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.TeamID != b.TeamID {
			return a.TeamID < b.TeamID
		}
		if a.CostCenter != b.CostCenter {
			return a.CostCenter < b.CostCenter
		}
		return a.ModelID < b.ModelID
	})
	return out
}

// Total sums every row.
func (t *Truth) Total() Row {
	var s Row
	for _, r := range t.Rows {
		s.Invocations += r.Invocations
		s.InputTokens += r.InputTokens
		s.OutputTokens += r.OutputTokens
		s.CacheRead += r.CacheRead
		s.CacheWrite += r.CacheWrite
		s.Images += r.Images
		s.Denied += r.Denied
		s.Throttled += r.Throttled
		s.Errors += r.Errors
		s.InputCost += r.InputCost
		s.OutputCost += r.OutputCost
		s.CacheReadCost += r.CacheReadCost
		s.CacheWriteCost += r.CacheWriteCost
		s.ImageCost += r.ImageCost
	}
	return s
}

// Merge adds another generated batch of the same day (late files).
func (t *Truth) Merge(o *Truth) {
	if t.Rows == nil {
		t.Rows = map[[3]string]*Row{}
	}
	for k, r := range o.Rows {
		if x := t.Rows[k]; x != nil {
			x.Invocations += r.Invocations
			x.InputTokens += r.InputTokens
			x.OutputTokens += r.OutputTokens
			x.CacheRead += r.CacheRead
			x.CacheWrite += r.CacheWrite
			x.Images += r.Images
			x.Denied += r.Denied
			x.Throttled += r.Throttled
			x.Errors += r.Errors
			x.InputCost += r.InputCost
			x.OutputCost += r.OutputCost
			x.CacheReadCost += r.CacheReadCost
			x.CacheWriteCost += r.CacheWriteCost
			x.ImageCost += r.ImageCost
		} else {
			c := *r
			t.Rows[k] = &c
		}
	}
	t.RowsRead += o.RowsRead
	t.Duplicates += o.Duplicates
	t.OtherDay += o.OtherDay
	t.Requests += o.Requests
}

// FileName returns the name of the n-th generated events object.
func FileName(n int) string { return fmt.Sprintf("gen-%05d.parquet", n) }

// Generate writes cfg.Files Parquet objects through create (called with each
// object's name, in order) and returns the truth of what they hold.
func Generate(cfg Config, create func(name string) (io.WriteCloser, error)) (*Truth, error) {
	day, err := time.Parse(schemas.DayLayout, cfg.Day)
	if err != nil {
		return nil, err
	}
	if cfg.Files < 1 {
		cfg.Files = 1
	}
	if cfg.DupRate == 0 {
		cfg.DupRate = 0.01
	}
	r := rand.New(rand.NewPCG(cfg.Seed, 0x6d65746572))
	t := &Truth{Rows: map[[3]string]*Row{}}
	var carry []schemas.EventRow // redeliveries, written into the next object
	noon := day.Add(12 * time.Hour)
	for f := 0; f < cfg.Files; f++ {
		lo, hi := f*cfg.Events/cfg.Files, (f+1)*cfg.Events/cfg.Files
		w, err := create(FileName(cfg.FirstFile + f))
		if err != nil {
			return nil, err
		}
		pw, err := parquetio.NewWriter[schemas.EventRow](w, parquetio.Options{})
		if err != nil {
			return nil, err
		}
		write := func(row schemas.EventRow) error {
			t.RowsRead++
			return pw.Write(row)
		}
		for _, d := range carry {
			if err := write(d); err != nil {
				return nil, err
			}
		}
		carry = carry[:0]
		if f == 0 {
			for i := 0; i < cfg.OtherDay; i++ {
				e := event(r, fmt.Sprintf("%x-prev-%d", cfg.Seed, i), day.Add(-time.Duration(1+r.IntN(3600_000))*time.Millisecond))
				t.OtherDay++
				if err := write(schemas.NewEventRow(&e)); err != nil {
					return nil, err
				}
			}
		}
		for i := lo; i < hi; i++ {
			ts := day.Add(time.Duration(r.Int64N(int64(24*time.Hour/time.Millisecond))) * time.Millisecond)
			e := event(r, fmt.Sprintf("%08x-%04x-%x-%d", r.Uint32(), r.Uint32()&0xffff, cfg.Seed, i), ts)
			t.add(&e, noon)
			row := schemas.NewEventRow(&e)
			if err := write(row); err != nil {
				return nil, err
			}
			if r.Float64() < cfg.DupRate {
				// A redelivery: new event id, received and stamped later;
				// the earlier original is the one that counts.
				d := row
				d.EventID += "-redelivered"
				d.Timestamp += r.Int64N(5000)
				if d.Timestamp >= day.Add(24*time.Hour).UnixMilli() {
					d.Timestamp = row.Timestamp
				}
				carry = append(carry, d)
				t.Duplicates++
			}
		}
		if f == cfg.Files-1 {
			for _, d := range carry {
				if err := write(d); err != nil {
					return nil, err
				}
			}
		}
		if err := pw.Close(); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func event(r *rand.Rand, id string, ts time.Time) schemas.Event {
	m := &models[r.IntN(len(models))]
	team := Teams[r.IntN(len(Teams))]
	e := schemas.Event{
		SchemaVersion: 1, EventID: "ev-" + id, RequestID: "req-" + id, Timestamp: ts, TeamID: team, CostCenter: costCenter(team),
		ModelID: m.id, Operation: schemas.Operations[r.IntN(len(schemas.Operations))], LatencyMS: 50 + r.Int64N(5000),
		APIKeyID: fmt.Sprintf("key-%s-%d", strings.TrimPrefix(team, "team-"), r.IntN(3)), Region: "us-east-1",
	}
	switch p := r.IntN(100); {
	case p < 90:
		e.Status = schemas.StatusSuccess
	case p < 94:
		e.Status = schemas.StatusDenied
	case p < 97:
		e.Status = schemas.StatusThrottled
	case p < 99:
		e.Status = schemas.StatusUpstreamError
	default:
		e.Status = schemas.StatusClientError
	}
	switch {
	case m.image:
		e.ImageCount = 1 + r.Int64N(4)
		side := []int64{512, 1024}[r.IntN(2)]
		e.ImageWidth, e.ImageHeight = side, side
		if m.stepsPriced {
			e.ImageSteps = []int64{30, 50, 100}[r.IntN(3)]
		} else {
			e.ImageQuality = []string{"standard", "premium"}[r.IntN(2)]
		}
	case m.embed:
		e.InputTokens = 1 + r.Int64N(8000)
	default:
		e.InputTokens = 1 + r.Int64N(4000)
		e.OutputTokens = 1 + r.Int64N(1000)
		if m.hasCache && r.IntN(2) == 0 {
			e.CacheReadInputTokens = r.Int64N(20_000)
			e.CacheWriteInputTokens = r.Int64N(3) * r.Int64N(2000)
		}
	}
	if e.Status != schemas.StatusSuccess && e.Status != schemas.StatusUpstreamError {
		e.InputTokens, e.OutputTokens, e.CacheReadInputTokens, e.CacheWriteInputTokens, e.ImageCount = 0, 0, 0, 0, 0
	}
	return e
}

func (t *Truth) add(e *schemas.Event, noon time.Time) {
	t.Requests++
	k := [3]string{e.TeamID, e.CostCenter, e.ModelID}
	row := t.Rows[k]
	if row == nil {
		row = &Row{TeamID: e.TeamID, CostCenter: e.CostCenter, ModelID: e.ModelID}
		t.Rows[k] = row
	}
	switch e.Status {
	case schemas.StatusSuccess:
	case schemas.StatusDenied:
		row.Denied++
		return
	case schemas.StatusThrottled:
		row.Throttled++
		return
	default:
		row.Errors++
		return
	}
	var m *model
	for i := range models {
		if models[i].id == e.ModelID {
			m = &models[i]
		}
	}
	row.Invocations++
	row.InputTokens += e.InputTokens
	row.OutputTokens += e.OutputTokens
	row.CacheRead += e.CacheReadInputTokens
	row.CacheWrite += e.CacheWriteInputTokens
	row.Images += e.ImageCount
	in, out := m.in, m.out
	if m.noonIn != 0 && !e.Timestamp.Before(noon) {
		in, out = m.noonIn, m.noonOut
	}
	// tokens * (price per 1k in 10^-5) / 1000 = tokens * price in 10^-8 USD.
	row.InputCost += e.InputTokens * in
	row.OutputCost += e.OutputTokens * out
	row.CacheReadCost += e.CacheReadInputTokens * m.cr
	row.CacheWriteCost += e.CacheWriteInputTokens * m.cw
	if m.image {
		row.ImageCost += e.ImageCount * imagePrice(m, e.ImageWidth, e.ImageHeight, e.ImageSteps, e.ImageQuality)
	}
}
