package invoker_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// writeDaily writes a compacted daily file the way the compactor lays it out.
func writeDaily(t *testing.T, st store.Store, day string, rows []schemas.DailyRow) {
	t.Helper()
	var buf bytes.Buffer
	if err := parquetio.Write(&buf, rows, parquetio.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), schemas.Partition(schemas.DailyPrefix, day)+"daily-"+day+".parquet", &buf); err != nil {
		t.Fatal(err)
	}
}

func dailyRow(day, team, model, status string, in, out int64, cost string) schemas.DailyRow {
	ts, _ := time.Parse(time.DateOnly, day)
	c := decimal.RequireFromString(cost)
	return schemas.NewDailyRow(&schemas.Event{SchemaVersion: 1, EventID: "e-" + team + day + model + status, RequestID: "r-" + team + day + model + status,
		Timestamp: ts.Add(time.Hour), TeamID: team, ModelID: model, Operation: "InvokeModel", Status: status, InputTokens: in, OutputTokens: out},
		schemas.Costs{Input: c})
}

func TestUsageIsTheCallersOwnFromTheDailyTable(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	r := e.do("GET", "/usage?from=2026-03-01&to=2026-03-03", map[string]string{"x-api-key": e.keys["search"]}, "")
	if r.status != 501 || r.errorCode(t) != "not_yet_available" {
		t.Fatalf("without a store: %d %s", r.status, r.body)
	}

	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writeDaily(t, st, "2026-03-01", []schemas.DailyRow{
		dailyRow("2026-03-01", "search", haiku, "success", 100, 20, "0.0001"),
		dailyRow("2026-03-01", "search", haiku, "success", 200, 40, "0.00025"),
		dailyRow("2026-03-01", "search", haiku, "throttled", 0, 0, "0"),
		dailyRow("2026-03-01", "ads", "meta.llama3-8b-instruct-v1:0", "success", 9000, 9000, "5"),
	})
	writeDaily(t, st, "2026-03-02", []schemas.DailyRow{
		dailyRow("2026-03-02", "ads", "meta.llama3-8b-instruct-v1:0", "success", 7, 7, "1"),
		dailyRow("2026-03-02", "search", "amazon.titan-embed-text-v2:0", "success", 50, 0, "0.000001"),
	})
	e.srv.Close()
	e.srv = e.newServer(t, st)
	e.api.Config.Handler = e.srv

	var rep struct {
		TeamID       string   `json:"team_id"`
		Invocations  int64    `json:"invocations"`
		Requests     int64    `json:"requests"`
		InputTokens  int64    `json:"input_tokens"`
		OutputTokens int64    `json:"output_tokens"`
		TotalCost    string   `json:"total_cost"`
		PendingDays  []string `json:"pending_days"`
		ByDayModel   []struct {
			Day         string `json:"day"`
			ModelID     string `json:"model_id"`
			Invocations int64  `json:"invocations"`
			TotalCost   string `json:"total_cost"`
		} `json:"by_day_and_model"`
	}
	r = e.do("GET", "/usage?from=2026-03-01&to=2026-03-03", map[string]string{"x-api-key": e.keys["search"]}, "")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	r.json(t, &rep)
	if rep.TeamID != "search" || rep.Invocations != 3 || rep.Requests != 4 || rep.InputTokens != 350 || rep.OutputTokens != 60 ||
		rep.TotalCost != "0.000351" || len(rep.PendingDays) != 1 || rep.PendingDays[0] != "2026-03-03" || len(rep.ByDayModel) != 2 {
		t.Fatalf("report %s", r.body)
	}
	if bytes.Contains(r.body, []byte("ads")) || bytes.Contains(r.body, []byte("meta.")) {
		t.Fatalf("another team's usage leaked: %s", r.body)
	}

	// A key acting for another team sees that team's usage only when it may act for it.
	r = e.do("GET", "/usage?from=2026-03-01&to=2026-03-02", map[string]string{"x-api-key": e.keys["search"], "team_id": "ads"}, "")
	if r.status != 403 {
		t.Fatalf("spoofed team_id: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/usage?from=2026-03-01&to=2026-03-02", map[string]string{"x-api-key": e.keys["ads"]}, "")
	r.json(t, &rep)
	if rep.TeamID != "ads" || rep.Invocations != 2 || rep.TotalCost != "6" {
		t.Fatalf("ads report %s", r.body)
	}

	for _, bad := range []struct {
		query  string
		status int
	}{
		{"", 400}, {"?from=2026-03-02&to=2026-03-01", 400}, {"?from=2026-3-1&to=2026-03-02", 400}, {"?from=2024-01-01&to=2026-03-01", 400},
	} {
		r = e.do("GET", "/usage"+bad.query, map[string]string{"x-api-key": e.keys["search"]}, "")
		if r.status != bad.status {
			t.Errorf("%q: status %d, want %d", bad.query, r.status, bad.status)
		} else {
			r.errorCode(t)
		}
	}
	if r = e.do("GET", "/usage?from=2026-03-01&to=2026-03-01", map[string]string{"x-api-key": "wrong"}, ""); r.status != 401 {
		t.Errorf("wrong key: %d", r.status)
	}
}

// TestUsageMatchesTheChargeback: tokens and cost are those of successful calls,
// as the chargeback counts them; other calls show only in the request counts.
func TestUsageMatchesTheChargeback(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writeDaily(t, st, "2026-03-01", []schemas.DailyRow{
		dailyRow("2026-03-01", "search", haiku, "success", 100, 20, "0.0001"),
		dailyRow("2026-03-01", "search", haiku, "upstream_error", 700, 300, "0"), // Bedrock counted tokens, the answer was unreadable
		dailyRow("2026-03-01", "search", haiku, "client_error", 50, 0, "0"),
		dailyRow("2026-03-01", "search", haiku, "denied", 0, 0, "0"),
		dailyRow("2026-03-01", "search", haiku, "throttled", 0, 0, "0"),
	})
	e.srv.Close()
	e.srv = e.newServer(t, st)
	e.api.Config.Handler = e.srv

	type totals struct {
		Invocations  int64  `json:"invocations"`
		Requests     int64  `json:"requests"`
		Denied       int64  `json:"denied"`
		Throttled    int64  `json:"throttled"`
		Errors       int64  `json:"errors"`
		InputTokens  int64  `json:"input_tokens"`
		OutputTokens int64  `json:"output_tokens"`
		TotalCost    string `json:"total_cost"`
	}
	var rep struct {
		totals
		ByDayModel []totals `json:"by_day_and_model"`
	}
	r := e.do("GET", "/usage?from=2026-03-01&to=2026-03-01", map[string]string{"x-api-key": e.keys["search"]}, "")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	r.json(t, &rep)
	want := totals{Invocations: 1, Requests: 5, Denied: 1, Throttled: 1, Errors: 2, InputTokens: 100, OutputTokens: 20, TotalCost: "0.0001"}
	if rep.totals != want || len(rep.ByDayModel) != 1 || rep.ByDayModel[0] != want {
		t.Fatalf("report %s, want totals %+v", r.body, want)
	}
}

// TestUsageIsNeverAnotherTeams: a key that may act for another team still
// reads only its own team's usage; naming another team is 403.
func TestUsageIsNeverAnotherTeams(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writeDaily(t, st, "2026-03-01", []schemas.DailyRow{
		dailyRow("2026-03-01", "search", haiku, "success", 100, 20, "0.0001"),
		dailyRow("2026-03-01", "platform", haiku, "success", 1, 1, "0.5"),
	})
	e.srv.Close()
	e.srv = e.newServer(t, st)
	e.api.Config.Handler = e.srv

	// platform may act for search when invoking models, not when reading usage.
	r := e.do("GET", "/usage?from=2026-03-01&to=2026-03-01", map[string]string{"x-api-key": e.keys["platform"], "team_id": "search"}, "")
	if r.status != http.StatusForbidden || r.errorCode(t) != "team_not_allowed" {
		t.Fatalf("act-for key reading another team's usage: %d %s", r.status, r.body)
	}
	var rep struct {
		TeamID    string `json:"team_id"`
		TotalCost string `json:"total_cost"`
	}
	for _, h := range []map[string]string{
		{"x-api-key": e.keys["platform"]},
		{"x-api-key": e.keys["platform"], "team_id": "platform"},
	} {
		r = e.do("GET", "/usage?from=2026-03-01&to=2026-03-01", h, "")
		if r.status != 200 {
			t.Fatalf("%v: status %d: %s", h, r.status, r.body)
		}
		r.json(t, &rep)
		if rep.TeamID != "platform" || rep.TotalCost != "0.5" {
			t.Fatalf("%v: report %s", h, r.body)
		}
	}
	// The same key still invokes for search.
	if r = e.invoke("platform", haiku, map[string]string{"team_id": "search"}, `{"inputs": "hi"}`); r.status != 200 {
		t.Fatalf("act-for invoke: %d %s", r.status, r.body)
	}
}

// countingStore counts the objects read whole.
type countingStore struct {
	store.Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

// TestUsageIsBoundedInCost: a compacted day is read once for every team and
// every later query, and read again only when the day is compacted anew.
func TestUsageIsBoundedInCost(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	fst, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, day := range []string{"2026-03-01", "2026-03-02", "2026-03-03"} {
		writeDaily(t, fst, day, []schemas.DailyRow{
			dailyRow(day, "search", haiku, "success", 100, 20, "0.0001"),
			dailyRow(day, "ads", "meta.llama3-8b-instruct-v1:0", "success", 9, 9, "1"),
		})
	}
	st := &countingStore{Store: fst}
	e.srv.Close()
	e.srv = e.newServer(t, st)
	e.api.Config.Handler = e.srv
	query := func(team string) int64 {
		before := st.gets.Load()
		r := e.do("GET", "/usage?from=2026-03-01&to=2026-03-05", map[string]string{"x-api-key": e.keys[team]}, "")
		if r.status != 200 {
			t.Fatalf("%s: %d %s", team, r.status, r.body)
		}
		return st.gets.Load() - before
	}
	if n := query("search"); n != 3 {
		t.Fatalf("first query read %d objects, want the 3 days", n)
	}
	if n := query("search"); n != 0 {
		t.Errorf("the same query again read %d objects", n)
	}
	if n := query("ads"); n != 0 {
		t.Errorf("another team's query read %d objects", n)
	}
	// A new revision of a day is read again, and only that day.
	writeDaily(t, fst, "2026-03-02", []schemas.DailyRow{
		dailyRow("2026-03-02", "search", haiku, "success", 100, 20, "0.0001"),
		dailyRow("2026-03-02", "search", haiku, "success", 300, 60, "0.0003"),
	})
	if n := query("search"); n != 1 {
		t.Errorf("after a new revision of one day: %d reads, want 1", n)
	}
}
