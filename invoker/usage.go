package invoker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// UsageStore is the part of the store GET /usage reads; store.Store
// implements it.
type UsageStore interface {
	List(ctx context.Context, prefix string) ([]store.Object, error)
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// maxUsageDays bounds one /usage query.
const maxUsageDays = 366

// usageTotals are a team's sums over some rows of the daily table, counted as
// the chargeback counts them (aggregator.Counts); requests counts every
// metered call, whatever its status.
type usageTotals struct {
	Requests int64 `json:"requests"`
	aggregator.Counts
	TotalCost string `json:"total_cost"`
	cost      decimal.Decimal
}

func (t *usageTotals) add(r *schemas.DailyRow) {
	t.Requests++
	e := r.Event()
	t.Count(&e)
	// The daily table keeps costs as DECIMAL(18,10): exact, never floats;
	// only successful calls have a cost there.
	t.cost = t.cost.Add(decimal.New(r.TotalCost, -10))
}

func (t *usageTotals) seal() { t.TotalCost = t.cost.String() }

func (t *usageTotals) merge(o *usageTotals) {
	t.Requests += o.Requests
	t.Counts.Add(o.Counts)
	t.cost = t.cost.Add(o.cost)
}

type usageLine struct {
	Day     string `json:"day"`
	ModelID string `json:"model_id"`
	usageTotals
}

type usageReport struct {
	TeamID     string `json:"team_id"`
	CostCenter string `json:"cost_center"`
	From       string `json:"from"`
	To         string `json:"to"`
	Currency   string `json:"currency"`
	usageTotals
	// ByDayModel has one line per day and model with usage.
	ByDayModel []usageLine `json:"by_day_and_model"`
	// PendingDays are days of the period not compacted yet: their usage is
	// not included (today, always).
	PendingDays []string `json:"pending_days"`
}

// handleUsage answers the calling team's own usage from the compacted daily
// table: only rows whose team_id is the key's own team are read. A key that
// may act for other teams when invoking still reads only its own team's
// usage; a team_id header naming any other team is refused with 403.
func (s *Server) handleUsage(w http.ResponseWriter, r *http.Request) {
	c := &call{}
	if !s.admit(w, r, c) {
		return
	}
	if c.team.ID != c.principal.Team.ID {
		writeError(w, &apiError{status: http.StatusForbidden, code: "team_not_allowed",
			msg: fmt.Sprintf("usage is readable only by the team's own keys; this key belongs to team %q, not %q", c.principal.Team.ID, c.team.ID)})
		return
	}
	if s.cfg.Store == nil {
		writeError(w, &apiError{status: http.StatusNotImplemented, code: "not_yet_available",
			msg: "this invoker has no usage store configured; use the chargeback CSV or Athena"})
		return
	}
	q := r.URL.Query()
	from, err1 := time.Parse(time.DateOnly, q.Get("from"))
	to, err2 := time.Parse(time.DateOnly, q.Get("to"))
	switch {
	case err1 != nil || err2 != nil:
		writeError(w, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: "from and to are required, as YYYY-MM-DD"})
		return
	case to.Before(from):
		writeError(w, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: "to is before from"})
		return
	case to.Sub(from) >= maxUsageDays*24*time.Hour:
		writeError(w, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: fmt.Sprintf("at most %d days per query", maxUsageDays)})
		return
	}
	rep := usageReport{TeamID: c.team.ID, CostCenter: c.team.CostCenter, From: from.Format(time.DateOnly), To: to.Format(time.DateOnly),
		Currency: "USD", ByDayModel: []usageLine{}, PendingDays: []string{}}
	// At most a few /usage reads at once: the rest are told to come back.
	select {
	case s.usageSlots <- struct{}{}:
		defer func() { <-s.usageSlots }()
	default:
		writeError(w, &apiError{status: http.StatusTooManyRequests, code: "usage_busy", retryAfter: time.Second,
			msg: "usage is being read for other callers; try again in a moment"})
		return
	}
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		day := d.Format(time.DateOnly)
		sum, found, err := s.usage.day(r.Context(), s.cfg.Store, day)
		if err != nil {
			s.log.Error("reading daily usage", "day", day, "err", err)
			writeError(w, &apiError{status: http.StatusServiceUnavailable, code: "usage_unavailable", retryAfter: time.Second,
				msg: "usage for " + day + " could not be read"})
			return
		}
		if !found {
			rep.PendingDays = append(rep.PendingDays, day)
			continue
		}
		byModel := sum[c.team.ID]
		models := make([]string, 0, len(byModel))
		for m := range byModel {
			models = append(models, m)
		}
		sort.Strings(models)
		for _, m := range models {
			l := usageLine{Day: day, ModelID: m, usageTotals: *byModel[m]}
			rep.merge(&l.usageTotals)
			l.seal()
			rep.ByDayModel = append(rep.ByDayModel, l)
		}
	}
	rep.seal()
	writeJSON(w, http.StatusOK, rep)
}

// usageCache keeps each compacted day's totals per team and model, read once
// for every team: a day's daily Parquet is read again only when its objects
// change (a new revision). It holds at most maxCachedDays days.
type usageCache struct {
	mu    sync.Mutex
	days  map[string]*daySummary
	order []string // days in the order they were cached, for eviction
}

const maxCachedDays = 800

type daySummary struct {
	version string                             // the day's objects' keys and sizes
	teams   map[string]map[string]*usageTotals // team -> model -> totals
}

// day returns the day's totals per team and model; found is false when the
// day has not been compacted.
func (u *usageCache) day(ctx context.Context, st UsageStore, day string) (map[string]map[string]*usageTotals, bool, error) {
	objs, err := st.List(ctx, schemas.Partition(schemas.DailyPrefix, day))
	if err != nil {
		return nil, false, err
	}
	var version strings.Builder
	var keys []string
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".parquet") {
			fmt.Fprintf(&version, "%s:%d;", o.Key, o.Size)
			keys = append(keys, o.Key)
		}
	}
	if len(keys) == 0 {
		return nil, false, nil
	}
	u.mu.Lock()
	if d := u.days[day]; d != nil && d.version == version.String() {
		u.mu.Unlock()
		return d.teams, true, nil
	}
	u.mu.Unlock()
	teams := map[string]map[string]*usageTotals{}
	for _, key := range keys {
		b, err := store.ReadAll(ctx, st, key)
		if err != nil {
			return nil, true, err
		}
		rows, err := parquetio.ReadDaily(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return nil, true, fmt.Errorf("decoding %s: %w", key, err)
		}
		for i := range rows {
			byModel := teams[rows[i].TeamID]
			if byModel == nil {
				byModel = map[string]*usageTotals{}
				teams[rows[i].TeamID] = byModel
			}
			t := byModel[rows[i].ModelID]
			if t == nil {
				t = &usageTotals{}
				byModel[rows[i].ModelID] = t
			}
			t.add(&rows[i])
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.days == nil {
		u.days = map[string]*daySummary{}
	}
	if _, had := u.days[day]; !had {
		u.order = append(u.order, day)
	}
	u.days[day] = &daySummary{version: version.String(), teams: teams}
	for len(u.order) > maxCachedDays {
		delete(u.days, u.order[0])
		u.order = u.order[1:]
	}
	return teams, true, nil
}
