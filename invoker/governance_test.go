package invoker_test

// Key lifecycle, aliases and the admin API against real servers on
// 127.0.0.1: the local Bedrock Runtime server (internal/bedrocklocal) behind
// the aws-sdk-go-v2 client, and the invoker's HTTP API; usage events go to
// the embedded file stream.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/tenants"
)

const haiku35 = "anthropic.claude-3-5-haiku-20241022-v1:0"

// lockedBuffer is a log sink tests read back.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// govServer is a server over e's tenants file with its own clock and log,
// reading the file when it starts (as a restarted serve would).
type govServer struct {
	srv *invoker.Server
	api *httptest.Server
	log *lockedBuffer
}

func (e *env) startGov(t *testing.T, now func() time.Time, report invoker.ReportFunc) *govServer {
	t.Helper()
	reg, err := tenants.OpenRegistry(e.tenants)
	if err != nil {
		t.Fatal(err)
	}
	g := &govServer{log: &lockedBuffer{}}
	g.srv, err = invoker.New(invoker.Config{Tenants: reg, Bedrock: e.bedrock, Usage: e.emitter, Prices: pricing.Default(),
		Limits: e.limits, ReloadInterval: -1, Now: now, Report: report,
		Logger: slog.New(slog.NewJSONHandler(g.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	g.api = httptest.NewServer(g.srv)
	t.Cleanup(func() { g.api.Close(); g.srv.Close() })
	return g
}

func (g *govServer) do(t *testing.T, method, path, key, body string, extra ...string) response {
	t.Helper()
	e := &env{t: t, api: g.api}
	h := map[string]string{"Content-Type": "application/json"}
	if key != "" {
		h["x-api-key"] = key
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return e.do(method, path, h, body)
}

const govConverse = `{"messages": [{"role": "user", "content": [{"text": "Name three rivers."}]}], "inferenceConfig": {"maxTokens": 32}}`

// TestAdminAPIChangesSurviveARestart: an admin creates a team, sets its
// limits and an alias, rotates and revokes keys over the API; each change is
// in the file at once (a new server reading it sees it), is logged as an
// audit line with the admin key's id, and a team key on an admin route gets
// 403. No file or log line the test produced holds a plaintext key.
func TestAdminAPIChangesSurviveARestart(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	admin, adminID, err := tenants.AddAdminKey(e.tenants, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	now := func() time.Time { return time.Unix(clock.Load(), 0) }
	g := e.startGov(t, now, nil)
	keys := []string{admin, e.keys["search"]}

	// Who may use the admin routes.
	for _, c := range []struct {
		key    string
		status int
		code   string
	}{{"", 401, "unauthorized"}, {"mka_nope", 401, "unauthorized"}, {e.keys["search"], 403, "admin_only"}} {
		r := g.do(t, "GET", "/admin/teams", c.key, "")
		if r.status != c.status || r.errorCode(t) != c.code {
			t.Fatalf("key %q on /admin/teams: %d %s", c.key, r.status, r.body)
		}
	}
	if r := g.do(t, "POST", "/admin/teams", e.keys["search"], `{"id": "sneaky"}`); r.status != 403 {
		t.Fatalf("team key creating a team: %d %s", r.status, r.body)
	}

	// Create a team; its key works at once.
	r := g.do(t, "POST", "/admin/teams", admin, `{"id": "ml", "cost_center": "CC-7", "allowed_models": ["anthropic.*", "claude"]}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var created struct {
		Team tenants.TeamInfo `json:"team"`
		Key  struct{ ID, Key string }
	}
	r.json(t, &created)
	mlKey := created.Key.Key
	keys = append(keys, mlKey)
	if !strings.HasPrefix(mlKey, "mk_") || created.Team.ID != "ml" || len(created.Team.Keys) != 1 {
		t.Fatalf("created %s", r.body)
	}
	if r := g.do(t, "POST", "/admin/teams", admin, `{"id": "ml"}`); r.status != 409 {
		t.Fatalf("create twice: %d %s", r.status, r.body)
	}
	if r := g.do(t, "POST", "/model/"+haiku+"/converse", mlKey, govConverse); r.status != 200 {
		t.Fatalf("new team's key: %d %s", r.status, r.body)
	}
	// Limits and an alias.
	if r := g.do(t, "PATCH", "/admin/teams/ml", admin, `{"rate_limit": {"rps": 7, "burst": 9}, "quotas": {"daily_tokens": 100000}, "monthly_budget_usd": "250.00"}`); r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	if r := g.do(t, "PATCH", "/admin/teams/ml", admin, `{"rate_limit": {"rps": "fast"}}`); r.status != 400 {
		t.Fatalf("bad patch: %d %s", r.status, r.body)
	}
	if r := g.do(t, "PATCH", "/admin/teams/nobody", admin, `{"cost_center": "X"}`); r.status != 404 {
		t.Fatalf("patch of an unknown team: %d %s", r.status, r.body)
	}
	if r := g.do(t, "PUT", "/admin/aliases/claude", admin, `{"model": "`+haiku+`", "rollout": {"model": "`+haiku35+`", "percent": 10}}`); r.status != 200 {
		t.Fatalf("alias: %d %s", r.status, r.body)
	}
	if r := g.do(t, "PUT", "/admin/aliases/claude", admin, `{"model": "=cmd|x"}`); r.status != 400 {
		t.Fatalf("hostile alias: %d %s", r.status, r.body)
	}
	r = g.do(t, "POST", "/model/claude/converse", mlKey, govConverse, "x-meter-call-id", "call-1")
	if r.status != 200 || r.header.Get("x-meter-call-id") != "call-1" || r.header.Get("x-meter-model-id") == "" {
		t.Fatalf("alias call: %d %v %s", r.status, r.header, r.body)
	}
	// Rotate with a grace: the old key works until it ends.
	r = g.do(t, "POST", "/admin/teams/ml/rotate-key", admin, `{"grace": "1h"}`)
	if r.status != 200 {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	var rotated struct{ Key struct{ ID, Key string } }
	r.json(t, &rotated)
	keys = append(keys, rotated.Key.Key)
	if r := g.do(t, "POST", "/model/"+haiku+"/converse", mlKey, govConverse); r.status != 200 {
		t.Fatalf("old key within its grace: %d %s", r.status, r.body)
	}
	clock.Add(3601)
	r = g.do(t, "POST", "/model/"+haiku+"/converse", mlKey, govConverse)
	if r.status != 401 || r.errorCode(t) != "key_expired" || strings.Contains(string(r.body), "ml") {
		t.Fatalf("old key after its grace: %d %s", r.status, r.body)
	}
	if r := g.do(t, "POST", "/model/"+haiku+"/converse", rotated.Key.Key, govConverse); r.status != 200 {
		t.Fatalf("new key: %d %s", r.status, r.body)
	}
	// Revoke: fails at once.
	if r := g.do(t, "POST", "/admin/teams/ml/keys/"+rotated.Key.ID+"/revoke", admin, ""); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	r = g.do(t, "POST", "/model/"+haiku+"/converse", rotated.Key.Key, govConverse)
	if r.status != 401 || r.errorCode(t) != "key_revoked" {
		t.Fatalf("revoked key: %d %s", r.status, r.body)
	}
	if r := g.do(t, "POST", "/admin/teams/ml/keys/key_nope/revoke", admin, ""); r.status != 404 {
		t.Fatalf("revoke of an unknown key: %d %s", r.status, r.body)
	}

	// A restart: a new server reads the file and knows it all.
	g.srv.Close()
	g2 := e.startGov(t, now, nil)
	r = g2.do(t, "GET", "/admin/teams", admin, "")
	var listed struct{ Teams []tenants.TeamInfo }
	r.json(t, &listed)
	var ml *tenants.TeamInfo
	for i := range listed.Teams {
		if listed.Teams[i].ID == "ml" {
			ml = &listed.Teams[i]
		}
	}
	if ml == nil || ml.RateLimit == nil || ml.RateLimit.RPS != 7 || ml.MonthlyBudgetUSD != "250.00" || len(ml.Keys) != 2 {
		t.Fatalf("after a restart: %s", r.body)
	}
	states := map[string]string{}
	for _, k := range ml.Keys {
		states[k.ID] = k.State
		if k.LastUsed == nil {
			t.Errorf("key %s used but no last use after a restart", k.ID)
		}
	}
	if states[created.Key.ID] != tenants.KeyGrace || states[rotated.Key.ID] != tenants.KeyRevoked {
		t.Fatalf("states after a restart %v", states)
	}
	aliases, err := tenants.ListAliases(e.tenants)
	if err != nil || len(aliases) != 1 || aliases[0].Rollout == nil || aliases[0].Rollout.Percent != 10 {
		t.Fatalf("aliases after a restart: %+v %v", aliases, err)
	}

	// Audit lines: who and what, one per change.
	audits := 0
	for _, line := range strings.Split(g.log.String(), "\n") {
		if !strings.Contains(line, `"msg":"admin change"`) {
			continue
		}
		audits++
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["admin_key_id"] != adminID || rec["action"] == "" {
			t.Errorf("audit line %s", line)
		}
		switch rec["action"] {
		case "team.rotate_key":
			if rec["new_key_id"] != rotated.Key.ID || rec["grace"] != "1h0m0s" {
				t.Errorf("rotation audit line %s", line)
			}
		case "team.update":
			if fmt.Sprint(rec["fields"]) != "[monthly_budget_usd quotas rate_limit]" {
				t.Errorf("update audit line %s", line)
			}
		}
	}
	if audits != 5 {
		t.Errorf("%d audit lines, want 5 (create, patch, alias, rotate, revoke):\n%s", audits, g.log.String())
	}
	noPlaintextKeys(t, e.dir, []string{g.log.String(), g2.log.String()}, keys)
}

// noPlaintextKeys fails when any file under dir or any log holds a key.
func noPlaintextKeys(t *testing.T, dir string, logs, keys []string) {
	t.Helper()
	files := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		files++
		for _, k := range keys {
			if bytes.Contains(data, []byte(k)) {
				t.Errorf("%s holds a plaintext key", path)
			}
		}
		return nil
	})
	if files < 3 {
		t.Fatalf("only %d files under %s: the search looked at nothing", files, dir)
	}
	for _, l := range logs {
		for _, k := range keys {
			if strings.Contains(l, k) {
				t.Errorf("a log holds a plaintext key")
			}
		}
	}
}

// TestAliasRollout: 10,000 calls of an alias with a 10% rollout send 10% +-
// 1% to the new version; a call id sent again goes the same way; a pinned
// team stays on its pin; events carry the concrete model_id and the
// model_alias, and the chargeback rows name the concrete models.
func TestAliasRollout(t *testing.T) {
	e := newEnv(t, envOpts{teams: []tenants.TeamSpec{
		{ID: "search", CostCenter: "CC-100", AllowedModels: []string{"claude"}},
		{ID: "legacy", CostCenter: "CC-200", AllowedModels: []string{"anthropic.*"}},
	}})
	err := tenants.Edit(e.tenants, func(doc *tenants.File) error {
		doc.Aliases = []tenants.AliasSpec{{Name: "claude", Model: haiku, Rollout: &tenants.RolloutSpec{Model: haiku35, Percent: 10},
			Pins: map[string]string{"legacy": haiku}}}
		doc.Deprecations = []tenants.DeprecationSpec{{Model: haiku, After: "2026-01-01"}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	g := e.startGov(t, nil, nil)
	const n = 10000
	ids := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				r := g.do(t, "POST", "/invoke_model?model_id=claude", e.keys["search"], `{"inputs": "one two", "parameters": {"max_new_tokens": 4}}`,
					"x-meter-call-id", fmt.Sprintf("req-%05d", i))
				if r.status != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d calls failed", failed.Load())
	}
	evs := e.newEvents(t)
	if len(evs) != n {
		t.Fatalf("%d events, want %d", len(evs), n)
	}
	byCall := map[string]string{}
	newer := 0
	for _, ev := range evs {
		if ev.ModelAlias != "claude" || (ev.ModelID != haiku && ev.ModelID != haiku35) {
			t.Fatalf("event model %q alias %q", ev.ModelID, ev.ModelAlias)
		}
		if ev.ModelID == haiku35 {
			newer++
		}
	}
	if newer < 900 || newer > 1100 {
		t.Errorf("%d of %d calls went to the new version, want 10%% +- 1%%", newer, n)
	}
	// The same call id goes the same way; a minted one is the event_id.
	for i := range 50 {
		id := fmt.Sprintf("req-%05d", i*97)
		r := g.do(t, "POST", "/model/claude/converse", e.keys["search"], govConverse, "x-meter-call-id", id)
		ev := e.oneEvent(t)
		byCall[id] = ev.ModelID
		if r.header.Get("x-meter-model-id") != ev.ModelID {
			t.Fatalf("x-meter-model-id %q, event %q", r.header.Get("x-meter-model-id"), ev.ModelID)
		}
		want := haiku
		if tenants.Bucket("claude", id) < 1000 {
			want = haiku35
		}
		if ev.ModelID != want {
			t.Fatalf("call id %s went to %s on retry, want %s", id, ev.ModelID, want)
		}
	}
	r := g.do(t, "POST", "/model/claude/converse", e.keys["search"], govConverse)
	ev := e.oneEvent(t)
	if r.header.Get("x-meter-call-id") != ev.EventID {
		t.Fatalf("minted call id %q, event_id %q", r.header.Get("x-meter-call-id"), ev.EventID)
	}
	if r := g.do(t, "POST", "/model/claude/converse", e.keys["search"], govConverse, "x-meter-call-id", "=cmd|x"); r.status != 400 {
		t.Fatalf("hostile call id: %d %s", r.status, r.body)
	}
	// The pinned team stays on its pin, and the old model is deprecated.
	for i := range 30 {
		r := g.do(t, "POST", "/model/claude/converse", e.keys["legacy"], govConverse, "x-meter-call-id", fmt.Sprintf("req-%05d", i))
		if r.header.Get("x-meter-model-id") != haiku || !strings.HasPrefix(r.header.Get("Deprecation"), "@") {
			t.Fatalf("pinned call: model %q deprecation %q", r.header.Get("x-meter-model-id"), r.header.Get("Deprecation"))
		}
	}
	e.newEvents(t)
	// The model list shows the alias and where it points.
	r = g.do(t, "GET", "/list_foundation_models", e.keys["search"], "")
	var list struct {
		ModelSummaries []map[string]any `json:"modelSummaries"`
	}
	r.json(t, &list)
	if len(list.ModelSummaries) != 1 || list.ModelSummaries[0]["modelId"] != "claude" || list.ModelSummaries[0]["aliasFor"] != haiku {
		t.Fatalf("list %s", r.body)
	}
	// Chargeback rows name the concrete models.
	res, err := aggregator.CompactDay(evs[0].Day(), evs, pricing.Default())
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]int64{}
	for _, row := range res.Chargeback {
		models[row.ModelID] += row.Invocations
	}
	if len(models) != 2 || models[haiku35] != int64(newer) || models[haiku] != int64(n-newer) {
		t.Fatalf("chargeback by model %v, want %s and %s", models, haiku, haiku35)
	}
	for _, row := range res.Daily {
		if row.ModelAlias != "claude" || (row.ModelID != haiku && row.ModelID != haiku35) {
			t.Fatalf("daily row model %q alias %q", row.ModelID, row.ModelAlias)
		}
	}
}
