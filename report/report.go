// Package report builds finance's page for a period (`meter report`): one
// self-contained HTML file, charts as inline SVG with their numbers in tables
// beside them, read only from what the pipeline has made authoritative: the
// chargeback CSVs, their manifests and the reconciliation summaries in the
// store. It never recomputes money: every figure on the page is a sum of
// chargeback cells. A period without data, or a file that does not read, is
// an error and no page: never a page with wrong numbers.
package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// MaxDays bounds one report's period.
const MaxDays = 400

// Config says what to report on.
type Config struct {
	Store store.Store
	// From and To are the first and last day of the period (YYYY-MM-DD, UTC).
	From, To string
	// Budgets are the teams' monthly budgets in USD (from the tenants file);
	// nil leaves the budget section out.
	Budgets map[string]decimal.Decimal
	// StoreURI names the store in links to the CSVs (file://DIR or s3://...).
	StoreURI string
	// Now is when the page is made (default time.Now).
	Now func() time.Time
}

// Validate reports the first thing wrong with cfg.
func (cfg *Config) Validate() error {
	from, err := time.Parse(schemas.DayLayout, cfg.From)
	if err != nil {
		return fmt.Errorf("from %q: want YYYY-MM-DD", cfg.From)
	}
	to, err := time.Parse(schemas.DayLayout, cfg.To)
	if err != nil {
		return fmt.Errorf("to %q: want YYYY-MM-DD", cfg.To)
	}
	switch {
	case to.Before(from):
		return fmt.Errorf("the period ends (%s) before it starts (%s)", cfg.To, cfg.From)
	case to.Sub(from) >= MaxDays*24*time.Hour:
		return fmt.Errorf("at most %d days per report", MaxDays)
	case cfg.Store == nil:
		return errors.New("report: no store (Config.Store)")
	}
	return nil
}

// ErrNoData reports a period without any chargeback in the store.
var ErrNoData = errors.New("no chargeback in the store for the period")

// Counts are a group's calls and tokens, summed from chargeback cells.
type Counts = aggregator.Counts

// Line is one group's figures: a team, a cost center, a model, a day or a
// team and model.
type Line struct {
	Key  string // the team, cost center, model or day
	Key2 string // the model, for a team x model line
	Counts
	Cost decimal.Decimal
}

// Day is what the store holds for one day of the period.
type Day struct {
	Day      string
	CSVKey   string
	Revision int
	// Revised: the chargeback in force replaced an earlier revision; Moved is
	// the money that moved then (the new total less the old).
	Revised bool
	Moved   decimal.Decimal
	Cost    decimal.Decimal
	// ByTeam is the day's cost per team.
	ByTeam map[string]decimal.Decimal
	// Reconciliation, when the day was reconciled.
	Reconciled                                  bool
	Matched, Unmetered, Unconfirmed, Mismatched int

	groups []group // the day's chargeback rows, until Build has summed them
}

// Budget is one team's spend against its monthly budget.
type Budget struct {
	TeamID        string
	Budget, Spent decimal.Decimal
	Share         float64 // of the budget spent, for the bar only
}

// Report is the period's figures.
type Report struct {
	From, To  string
	Generated time.Time
	StoreURI  string
	Total     decimal.Decimal
	Counts    Counts
	// Days has one entry per day of the period with a chargeback, in order;
	// Missing lists the period's days without one.
	Days    []Day
	Missing []string
	// By team, cost center and model, dearest first; TeamModel by team then model.
	Teams, CostCenters, Models, TeamModel []Line
	Budgets                               []Budget
}

// Build reads the period from the store.
func Build(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	from, _ := time.Parse(schemas.DayLayout, cfg.From)
	to, _ := time.Parse(schemas.DayLayout, cfg.To)
	r := &Report{From: cfg.From, To: cfg.To, Generated: now().UTC(), StoreURI: cfg.StoreURI}
	teams, ccs, models, tm := map[string]*Line{}, map[string]*Line{}, map[string]*Line{}, map[[2]string]*Line{}
	line := func(m map[string]*Line, k string) *Line {
		l := m[k]
		if l == nil {
			l = &Line{Key: k}
			m[k] = l
		}
		return l
	}
	var days []string
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		days = append(days, d.Format(schemas.DayLayout))
	}
	read := readDays(ctx, cfg.Store, days)
	for i, day := range days {
		dr, err := read[i].day, read[i].err
		if errors.Is(err, store.ErrNotFound) {
			r.Missing = append(r.Missing, day)
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, g := range dr.groups {
			for _, l := range []*Line{line(teams, g.key[0]), line(ccs, g.key[1]), line(models, g.key[2]), r.pair(tm, g.key[0], g.key[2])} {
				l.add(g.Counts, g.cost)
			}
			r.Counts.Add(g.Counts)
			r.Total = r.Total.Add(g.cost)
		}
		dr.groups = nil
		r.Days = append(r.Days, *dr)
	}
	if len(r.Days) == 0 {
		return nil, fmt.Errorf("%w (%s to %s)", ErrNoData, cfg.From, cfg.To)
	}
	r.Teams, r.CostCenters, r.Models = sorted(teams), sorted(ccs), sorted(models)
	for _, l := range tm {
		r.TeamModel = append(r.TeamModel, *l)
	}
	sort.Slice(r.TeamModel, func(i, j int) bool {
		a, b := r.TeamModel[i], r.TeamModel[j]
		return a.Key < b.Key || (a.Key == b.Key && a.Key2 < b.Key2)
	})
	if cfg.Budgets != nil {
		r.budgets(cfg.Budgets)
	}
	return r, nil
}

func (r *Report) pair(m map[[2]string]*Line, team, model string) *Line {
	k := [2]string{team, model}
	l := m[k]
	if l == nil {
		l = &Line{Key: team, Key2: model}
		m[k] = l
	}
	return l
}

func (l *Line) add(c Counts, cost decimal.Decimal) {
	l.Counts.Add(c)
	l.Cost = l.Cost.Add(cost)
}

// countColumns are the chargeback columns Counts reads, beside invocations.
var countColumns = [...]string{"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "denied", "throttled", "errors"}

// countsOf reads a chargeback row's counts from its cells; a column an older
// release did not write counts as zero.
func countsOf(row *aggregator.ChargebackLine) (Counts, error) {
	c := Counts{Invocations: row.Invocations}
	dst := [...]*int64{&c.InputTokens, &c.OutputTokens, &c.CacheReadInputTokens, &c.CacheWriteInputTokens, &c.Denied, &c.Throttled, &c.Errors}
	for i, col := range countColumns {
		v := row.Cell(col)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return c, fmt.Errorf("%s %q is not a count", col, v)
		}
		*dst[i] = n
	}
	return c, nil
}

type dayRead struct {
	day *Day
	err error
}

// group is one chargeback row's figures.
type group struct {
	key aggregator.ChargebackKey
	Counts
	cost decimal.Decimal
}

// readDays reads the days with one reader per CPU; the results come back in
// the days' order.
func readDays(ctx context.Context, st store.Store, days []string) []dayRead {
	out := make([]dayRead, len(days))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(days)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i].day, out[i].err = readDay(ctx, st, days[i])
			}
		}()
	}
	for i := range days {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// readDay reads a day's chargeback in force, its manifest and its
// reconciliation summary. The error wraps store.ErrNotFound when the day has
// no chargeback.
func readDay(ctx context.Context, st store.Store, day string) (*Day, error) {
	d := &Day{Day: day, CSVKey: schemas.ChargebackCSVKey(day), ByTeam: map[string]decimal.Decimal{}}
	data, err := store.ReadAll(ctx, st, d.CSVKey)
	if err != nil {
		return nil, err
	}
	err = aggregator.EachChargebackRow(data, func(k aggregator.ChargebackKey, row aggregator.ChargebackLine) error {
		c, err := countsOf(&row)
		if err != nil {
			return err
		}
		d.groups = append(d.groups, group{key: k, Counts: c, cost: row.TotalCost})
		d.Cost = d.Cost.Add(row.TotalCost)
		d.ByTeam[k[0]] = d.ByTeam[k[0]].Add(row.TotalCost)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.CSVKey, err)
	}
	mdata, err := store.ReadAll(ctx, st, schemas.ManifestKey(day))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%s has no manifest beside it (%s): not a chargeback the compaction wrote", d.CSVKey, schemas.ManifestKey(day))
	case err != nil:
		return nil, err
	}
	var m schemas.Manifest
	if err := json.Unmarshal(mdata, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", schemas.ManifestKey(day), err)
	}
	d.Revision = m.Revision
	if m.Previous != nil {
		d.Revised = true
		if d.Moved, err = decimal.NewFromString(m.Previous.TotalCostDiff); err != nil {
			return nil, fmt.Errorf("%s: total_cost_diff %q: %w", schemas.ManifestKey(day), m.Previous.TotalCostDiff, err)
		}
	}
	_, sumKey := schemas.ReconciliationKeys(day)
	sdata, err := store.ReadAll(ctx, st, sumKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		var s schemas.ReconciliationSummary
		if err := json.Unmarshal(sdata, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", sumKey, err)
		}
		d.Reconciled = true
		d.Matched, d.Unmetered, d.Unconfirmed, d.Mismatched = s.Matched, s.Unmetered, s.Unconfirmed, s.Mismatched
	}
	return d, nil
}

func sorted(m map[string]*Line) []Line {
	out := make([]Line, 0, len(m))
	for _, l := range m {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Cost.Cmp(out[j].Cost); c != 0 {
			return c > 0
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// budgets compares each team's spend in each calendar month of the period
// with its monthly budget; the page shows the latest month of the period.
func (r *Report) budgets(budgets map[string]decimal.Decimal) {
	month := r.To[:7]
	spent := map[string]decimal.Decimal{}
	for _, d := range r.Days {
		if d.Day[:7] != month {
			continue
		}
		for team, c := range d.ByTeam {
			spent[team] = spent[team].Add(c)
		}
	}
	teams := make([]string, 0, len(budgets))
	for t := range budgets {
		teams = append(teams, t)
	}
	sort.Strings(teams)
	for _, t := range teams {
		b := Budget{TeamID: t, Budget: budgets[t], Spent: spent[t]}
		if b.Budget.IsPositive() {
			b.Share, _ = b.Spent.Div(b.Budget).Float64()
		}
		r.Budgets = append(r.Budgets, b)
	}
}

// BudgetMonth is the month the budget section compares.
func (r *Report) BudgetMonth() string { return r.To[:7] }

// LastDay is the last day of the period with a chargeback.
func (r *Report) LastDay() string { return r.Days[len(r.Days)-1].Day }
