package invoker_test

// TestServerKeepsToTheOpenAPIDocument holds the running server to
// schemas/openapi.yaml with kin-openapi: real requests to every route of the
// document, on servers listening on 127.0.0.1 in front of the local Bedrock
// server (internal/bedrocklocal, one per failure Bedrock can answer with),
// and every answer, error statuses included, validated against the
// document. Every status the document lists for a route must have been seen.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

// openAPIDoc loads and validates the document the server serves.
func openAPIDoc(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(schemas.OpenAPIYAML)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, router
}

func init() {
	// Streams and pages are checked as opaque bodies.
	for _, ct := range []string{"text/event-stream", "application/vnd.amazon.eventstream", "text/html"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
	}
}

// apiCase is one real request and the status it must get.
type apiCase struct {
	srv     string // which server
	method  string
	path    string
	headers map[string]string
	body    string
	status  int
	// invalid marks a request that breaks the document on purpose (no key,
	// bad body): only its answer is validated.
	invalid bool
}

func TestServerKeepsToTheOpenAPIDocument(t *testing.T) {
	doc, router := openAPIDoc(t)
	teams := []tenants.TeamSpec{
		{ID: "search", CostCenter: "CC-100", AllowedModels: []string{"anthropic.*", "amazon.*", "claude"}},
		{ID: "other", CostCenter: "CC-200", AllowedModels: []string{"amazon.*"}},
	}
	main := newEnv(t, envOpts{teams: teams})
	admin, _, err := tenants.AddAdminKey(main.tenants, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	admin2, admin2ID, err := tenants.AddAdminKey(main.tenants, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := tenants.SetAlias(main.tenants, tenants.AliasSpec{Name: "claude", Model: haiku, Rollout: &tenants.RolloutSpec{Model: haiku35, Percent: 50}}); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenFile(filepath.Join(main.dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	report := func(ctx context.Context, month string) ([]byte, error) {
		switch month {
		case "2026-11":
			return []byte("<!doctype html><html><body>November</body></html>"), nil
		case "2019-01":
			return nil, errors.New("the store is unreachable")
		}
		return nil, invoker.ErrNoReport
	}
	servers := map[string]string{}
	serve := func(name string, e *env, cfg invoker.Config) {
		reg, err := tenants.OpenRegistry(e.tenants)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Tenants, cfg.Bedrock, cfg.Usage, cfg.Prices, cfg.ReloadInterval, cfg.MaxBodyBytes = reg, e.bedrock, e.emitter, pricing.Default(), -1, 64<<10
		srv, err := invoker.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		api := httptest.NewServer(srv)
		t.Cleanup(func() { api.Close(); srv.Close() })
		servers[name] = api.URL
	}
	serve("main", main, invoker.Config{Store: st, Report: report})
	serve("bare", main, invoker.Config{}) // no store, no report
	for name, exc := range map[string]string{"throttle": "ThrottlingException", "internal": "InternalServerException",
		"unavailable": "ServiceUnavailableException", "timeout": "ModelTimeoutException"} {
		e := newEnv(t, envOpts{teams: teams, model: bedrocklocal.Config{FailEvery: 1, FailWith: exc}})
		serve(name, e, invoker.Config{})
		main.keys[name] = e.keys["search"] // same team, its own file
	}
	{
		// Not ready: the tenants file is not there yet.
		reg := tenants.WatchRegistry(filepath.Join(t.TempDir(), "missing.yaml"))
		srv, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: main.bedrock, Usage: main.emitter, ReloadInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		api := httptest.NewServer(srv)
		t.Cleanup(func() { api.Close(); srv.Close() })
		servers["unready"] = api.URL
	}

	key := main.keys["search"]
	auth := func(k string, extra ...string) map[string]string {
		h := map[string]string{"Content-Type": "application/json"}
		if k != "" {
			h["x-api-key"] = k
		}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	big := `{"inputs": "` + strings.Repeat("word ", 14000) + `"}`
	seed := `{"inputs": "Name three rivers.", "parameters": {"max_new_tokens": 16}}`
	native := `{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16, "messages": [{"role": "user", "content": "Name three rivers."}]}`
	titan := "amazon.titan-embed-text-v2:0"
	var cases []apiCase
	add := func(c apiCase) { cases = append(cases, c) }

	// The seed-style and converse routes: every status they list.
	for _, route := range []struct{ path, body string }{
		{"/invoke_model?model_id=" + haiku, seed},
		{"/model/" + haiku + "/converse", govConverse},
		{"/model/" + haiku + "/converse-stream", govConverse},
	} {
		add(apiCase{srv: "main", method: "POST", path: route.path, headers: auth(key), body: route.body, status: 200})
		add(apiCase{srv: "main", method: "POST", path: route.path, headers: auth(key), body: `{"nope": 1`, status: 400, invalid: true})
		add(apiCase{srv: "main", method: "POST", path: route.path, headers: auth(""), body: route.body, status: 401, invalid: true})
		add(apiCase{srv: "main", method: "POST", path: route.path, headers: auth(main.keys["other"]), body: route.body, status: 403})
		add(apiCase{srv: "main", method: "POST", path: route.path, headers: auth(key), body: big, status: 413, invalid: true})
		for srv, status := range map[string]int{"throttle": 429, "internal": 502, "unavailable": 503, "timeout": 504} {
			add(apiCase{srv: srv, method: "POST", path: route.path, headers: auth(main.keys[srv]), body: route.body, status: status})
		}
	}
	add(apiCase{srv: "main", method: "POST", path: "/invoke_model?model_id=" + titan, headers: auth(key, "embeddings", "true"), body: `{"inputs": "a b c"}`, status: 200})
	add(apiCase{srv: "main", method: "POST", path: "/invoke_model?model_id=claude", headers: auth(key, "x-meter-call-id", "call-42"), body: seed, status: 200})
	add(apiCase{srv: "main", method: "POST", path: "/model/claude/converse", headers: auth(key, "x-meter-call-id", "=bad"), body: govConverse, status: 400, invalid: true})

	// Bedrock Runtime's routes: an answer and errors, in Bedrock's shapes.
	for _, route := range []struct{ path, body string }{
		{"/bedrock/model/" + haiku + "/invoke", native},
		{"/bedrock/model/" + haiku + "/invoke-with-response-stream", native},
		{"/bedrock/model/" + haiku + "/converse", govConverse},
		{"/bedrock/model/" + haiku + "/converse-stream", govConverse},
	} {
		add(apiCase{srv: "main", method: "POST", path: route.path, headers: auth(key), body: route.body, status: 200})
		add(apiCase{srv: "main", method: "POST", path: route.path, headers: auth(""), body: route.body, status: 401, invalid: true})
		add(apiCase{srv: "main", method: "POST", path: route.path, headers: auth(main.keys["other"]), body: route.body, status: 403})
		add(apiCase{srv: "throttle", method: "POST", path: route.path, headers: auth(main.keys["throttle"]), body: route.body, status: 429})
	}

	// Models, usage, the document, operations.
	add(apiCase{srv: "main", method: "GET", path: "/list_foundation_models", headers: auth(key), status: 200})
	add(apiCase{srv: "main", method: "GET", path: "/list_foundation_models", headers: auth(key, "x-meter-call-id", "a b"), status: 400, invalid: true})
	add(apiCase{srv: "main", method: "GET", path: "/list_foundation_models", headers: auth(""), status: 401, invalid: true})
	add(apiCase{srv: "main", method: "GET", path: "/list_foundation_models", headers: auth(key, "team_id", "other"), status: 403})
	add(apiCase{srv: "main", method: "GET", path: "/usage?from=2026-11-01&to=2026-11-03", headers: auth(key), status: 200})
	add(apiCase{srv: "main", method: "GET", path: "/usage?from=2026-11-01", headers: auth(key), status: 400, invalid: true})
	add(apiCase{srv: "main", method: "GET", path: "/usage?from=2026-11-01&to=2026-11-03", headers: auth(""), status: 401, invalid: true})
	add(apiCase{srv: "main", method: "GET", path: "/usage?from=2026-11-01&to=2026-11-03", headers: auth(key, "team_id", "other"), status: 403})
	add(apiCase{srv: "bare", method: "GET", path: "/usage?from=2026-11-01&to=2026-11-03", headers: auth(key), status: 501})
	add(apiCase{srv: "main", method: "GET", path: "/openapi.json", status: 200})
	add(apiCase{srv: "main", method: "GET", path: "/healthz", status: 200})
	add(apiCase{srv: "main", method: "GET", path: "/readyz", status: 200})
	add(apiCase{srv: "unready", method: "GET", path: "/readyz", status: 503})
	add(apiCase{srv: "main", method: "GET", path: "/metrics", status: 200})

	// The admin API and the report.
	add(apiCase{srv: "main", method: "GET", path: "/report?month=2026-11", headers: auth(admin), status: 200})
	add(apiCase{srv: "main", method: "GET", path: "/report?month=11-2026", headers: auth(admin), status: 400, invalid: true})
	add(apiCase{srv: "main", method: "GET", path: "/report", headers: auth(""), status: 401, invalid: true})
	add(apiCase{srv: "main", method: "GET", path: "/report", headers: auth(key), status: 403})
	add(apiCase{srv: "main", method: "GET", path: "/report?month=2020-02", headers: auth(admin), status: 404})
	add(apiCase{srv: "bare", method: "GET", path: "/report", headers: auth(admin), status: 501})
	add(apiCase{srv: "main", method: "GET", path: "/report?month=2019-01", headers: auth(admin), status: 503})
	add(apiCase{srv: "main", method: "GET", path: "/admin/teams", headers: auth(admin), status: 200})
	add(apiCase{srv: "main", method: "GET", path: "/admin/teams", headers: auth(""), status: 401, invalid: true})
	add(apiCase{srv: "main", method: "GET", path: "/admin/teams", headers: auth(key), status: 403})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams", headers: auth(admin), body: `{"id": "ml", "allowed_models": ["amazon.*"], "rate_limit": {"rps": 5}, "quotas": {"daily_tokens": 1000}, "monthly_budget_usd": "10"}`, status: 201})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams", headers: auth(admin), body: `{"id": "=bad"}`, status: 400})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams", headers: auth(""), body: `{"id": "x"}`, status: 401, invalid: true})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams", headers: auth(key), body: `{"id": "x"}`, status: 403})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams", headers: auth(admin), body: `{"id": "ml"}`, status: 409})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams", headers: auth(admin), body: `{"id": "x", "cost_center": "` + strings.Repeat("c", 70000) + `"}`, status: 413})
	add(apiCase{srv: "main", method: "PATCH", path: "/admin/teams/ml", headers: auth(admin), body: `{"rate_limit": null, "cost_center": "CC-9"}`, status: 200})
	add(apiCase{srv: "main", method: "PATCH", path: "/admin/teams/ml", headers: auth(admin), body: `{"allowed_models": ["a*b"]}`, status: 400})
	add(apiCase{srv: "main", method: "PATCH", path: "/admin/teams/ml", headers: auth(""), body: `{}`, status: 401, invalid: true})
	add(apiCase{srv: "main", method: "PATCH", path: "/admin/teams/ml", headers: auth(key), body: `{}`, status: 403})
	add(apiCase{srv: "main", method: "PATCH", path: "/admin/teams/nobody", headers: auth(admin), body: `{}`, status: 404})
	add(apiCase{srv: "main", method: "PATCH", path: "/admin/teams/ml", headers: auth(admin), body: `{"cost_center": "` + strings.Repeat("c", 70000) + `"}`, status: 413})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams/ml/rotate-key", headers: auth(admin), body: `{"grace": "2h"}`, status: 200})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams/ml/rotate-key", headers: auth(admin), body: `{"grace": "soon"}`, status: 400})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams/ml/rotate-key", headers: auth(""), status: 401, invalid: true})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams/ml/rotate-key", headers: auth(key), status: 403})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams/nobody/rotate-key", headers: auth(admin), status: 404})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams/search/keys/KEYID/revoke", headers: auth(admin), status: 200})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams/search/keys/KEYID/revoke", headers: auth(""), status: 401, invalid: true})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams/search/keys/KEYID/revoke", headers: auth(main.keys["other"]), status: 403})
	add(apiCase{srv: "main", method: "POST", path: "/admin/teams/search/keys/key_nope/revoke", headers: auth(admin), status: 404})
	add(apiCase{srv: "main", method: "GET", path: "/admin/admins", headers: auth(admin2), status: 200})
	add(apiCase{srv: "main", method: "GET", path: "/admin/admins", headers: auth(""), status: 401, invalid: true})
	add(apiCase{srv: "main", method: "GET", path: "/admin/admins", headers: auth(main.keys["other"]), status: 403})
	add(apiCase{srv: "main", method: "POST", path: "/admin/admins/" + admin2ID + "/rotate-key", headers: auth(admin), body: `{"grace": "never"}`, status: 400})
	add(apiCase{srv: "main", method: "POST", path: "/admin/admins/" + admin2ID + "/rotate-key", headers: auth(""), status: 401, invalid: true})
	add(apiCase{srv: "main", method: "POST", path: "/admin/admins/" + admin2ID + "/rotate-key", headers: auth(main.keys["other"]), status: 403})
	add(apiCase{srv: "main", method: "POST", path: "/admin/admins/adm_nope/rotate-key", headers: auth(admin), status: 404})
	add(apiCase{srv: "main", method: "POST", path: "/admin/admins/" + admin2ID + "/rotate-key", headers: auth(admin), body: `{"grace": "0s"}`, status: 200})
	add(apiCase{srv: "main", method: "GET", path: "/admin/admins", headers: auth(admin2), status: 401}) // rotated with no grace
	add(apiCase{srv: "main", method: "POST", path: "/admin/admins/" + admin2ID + "/revoke", headers: auth(admin), status: 200})
	add(apiCase{srv: "main", method: "POST", path: "/admin/admins/" + admin2ID + "/revoke", headers: auth(""), status: 401, invalid: true})
	add(apiCase{srv: "main", method: "POST", path: "/admin/admins/" + admin2ID + "/revoke", headers: auth(main.keys["other"]), status: 403})
	add(apiCase{srv: "main", method: "POST", path: "/admin/admins/adm_nope/revoke", headers: auth(admin), status: 404})
	add(apiCase{srv: "main", method: "GET", path: "/admin/aliases", headers: auth(admin), status: 200})
	add(apiCase{srv: "main", method: "GET", path: "/admin/aliases", headers: auth(""), status: 401, invalid: true})
	add(apiCase{srv: "main", method: "GET", path: "/admin/aliases", headers: auth(main.keys["other"]), status: 403})
	add(apiCase{srv: "main", method: "PUT", path: "/admin/aliases/titan", headers: auth(admin), body: `{"model": "` + titan + `", "pins": {"other": "` + titan + `"}}`, status: 200})
	add(apiCase{srv: "main", method: "PUT", path: "/admin/aliases/titan", headers: auth(admin), body: `{"model": "` + titan + `", "rollout": {"model": "x", "percent": 120}}`, status: 400, invalid: true})
	add(apiCase{srv: "main", method: "PUT", path: "/admin/aliases/titan", headers: auth(""), body: `{"model": "x"}`, status: 401, invalid: true})
	add(apiCase{srv: "main", method: "PUT", path: "/admin/aliases/titan", headers: auth(main.keys["other"]), body: `{"model": "x"}`, status: 403})
	add(apiCase{srv: "main", method: "PUT", path: "/admin/aliases/titan", headers: auth(admin), body: `{"model": "` + strings.Repeat("m", 70000) + `"}`, status: 413})
	add(apiCase{srv: "main", method: "DELETE", path: "/admin/aliases/titan", headers: auth(admin), status: 200})
	add(apiCase{srv: "main", method: "DELETE", path: "/admin/aliases/titan", headers: auth(""), status: 401, invalid: true})
	add(apiCase{srv: "main", method: "DELETE", path: "/admin/aliases/titan", headers: auth(main.keys["other"]), status: 403})
	add(apiCase{srv: "main", method: "DELETE", path: "/admin/aliases/titan", headers: auth(admin), status: 404})
	// After the key of search is revoked (above), it gets 401 key_revoked.
	add(apiCase{srv: "main", method: "POST", path: "/model/" + haiku + "/converse", headers: auth(key), body: govConverse, status: 401})

	infos, err := tenants.ListTeams(main.tenants)
	if err != nil {
		t.Fatal(err)
	}
	var searchKey string
	for _, ti := range infos {
		if ti.ID == "search" {
			searchKey = ti.Keys[0].ID
		}
	}

	// The validation bites: an answer off the document is caught.
	routed, _ := http.NewRequest("GET", "http://127.0.0.1:8080/healthz", nil)
	route, params, err := router.FindRoute(routed)
	if err != nil {
		t.Fatal(err)
	}
	in := &openapi3filter.RequestValidationInput{Request: routed, PathParams: params, Route: route}
	for _, wrong := range []struct {
		status int
		body   string
	}{{200, `{"status": 5}`}, {418, `{"status": "alive"}`}} {
		err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{RequestValidationInput: in,
			Status: wrong.status, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(wrong.body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true}})
		if err == nil {
			t.Fatalf("a %d %s answer passed validation", wrong.status, wrong.body)
		}
	}

	seen := map[string]bool{} // "METHOD /path/template STATUS"
	for _, c := range cases {
		c.path = strings.ReplaceAll(c.path, "KEYID", searchKey)
		route, status := checkAgainstDocument(t, router, servers[c.srv], c)
		if route != nil {
			seen[fmt.Sprintf("%s %s %d", c.method, route.Path, status)] = true
		}
	}

	// Every status the document lists for an operation was seen, and an
	// answer and an error of every operation answered with "default".
	var missing []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				key := fmt.Sprintf("%s %s %s", method, path, code)
				if code == "default" {
					continue
				}
				if !seen[key] && !exempt[key] {
					missing = append(missing, key)
				}
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("documented statuses no test request produced:\n  %s", strings.Join(missing, "\n  "))
	}
}

// exempt are documented statuses the test cannot produce from outside on a
// healthy machine (an unreadable tenants file or store), each named here.
var exempt = map[string]bool{
	"GET /usage 429":         true, // more /usage readers at once than slots: timing-dependent
	"GET /usage 503":         true, // the store fails while reading a day
	"GET /admin/teams 503":   true, // the tenants file cannot be read
	"GET /admin/aliases 503": true, // the tenants file cannot be read
	"GET /admin/admins 503":  true, // the tenants file cannot be read
}

// checkAgainstDocument sends one request and validates it (unless it is
// invalid on purpose) and its answer against the document. It returns the
// document's route and the status seen.
func checkAgainstDocument(t *testing.T, router routers.Router, base string, c apiCase) (*routers.Route, int) {
	t.Helper()
	req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != c.status {
		t.Errorf("%s %s: status %d, want %d: %.300s", c.method, c.path, resp.StatusCode, c.status, body)
	}
	// Route as the document's server sees it.
	routed, _ := http.NewRequest(c.method, "http://127.0.0.1:8080"+c.path, bytes.NewReader([]byte(c.body)))
	routed.Header = req.Header.Clone()
	route, params, err := router.FindRoute(routed)
	if err != nil {
		t.Errorf("%s %s: not a route of the document: %v", c.method, c.path, err)
		return nil, resp.StatusCode
	}
	in := &openapi3filter.RequestValidationInput{Request: routed, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: presentKey}}
	if !c.invalid {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s %s: request does not match the document: %v", c.method, c.path, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: %d answer does not match the document: %v\n%.300s", c.method, c.path, resp.StatusCode, err, body)
	}
	return route, resp.StatusCode
}

// presentKey accepts a request that presents a key where its scheme says.
func presentKey(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	switch in.SecurityScheme.Type {
	case "apiKey":
		if r.Header.Get(in.SecurityScheme.Name) != "" {
			return nil
		}
	case "http":
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			return nil
		}
	}
	return errors.New("no key")
}

// TestServedRoutesEqualTheDocument reads the routes the server registers
// (every mux.Handle and mux.HandleFunc in the package's source, with the
// method its handler is bound to) and holds them equal to the document's
// operations, both ways. Catch-alls ending in "/" answer 404 and are not
// routes.
func TestServedRoutesEqualTheDocument(t *testing.T) {
	doc, _ := openAPIDoc(t)
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	fset := token.NewFileSet()
	pkgs, err := goparser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	consts := map[string]string{"RuntimePrefix": invoker.RuntimePrefix}
	str := func(e ast.Expr) (string, bool) {
		switch x := e.(type) {
		case *ast.BasicLit:
			s, err := strconv.Unquote(x.Value)
			return s, err == nil
		case *ast.BinaryExpr:
			id, ok1 := x.X.(*ast.Ident)
			lit, ok2 := x.Y.(*ast.BasicLit)
			if ok1 && ok2 && consts[id.Name] != "" {
				s, err := strconv.Unquote(lit.Value)
				return consts[id.Name] + s, err == nil
			}
		}
		return "", false
	}
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 2 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") {
					return true
				}
				if inner, ok := sel.X.(*ast.SelectorExpr); !ok || inner.Sel.Name != "mux" {
					return true
				}
				pattern, ok := str(call.Args[0])
				if !ok {
					t.Errorf("%s: a route whose pattern this test cannot read", fset.Position(call.Pos()))
					return true
				}
				if strings.HasSuffix(pattern, "/") {
					return true // a catch-all
				}
				method, path, hasMethod := strings.Cut(pattern, " ")
				if !hasMethod {
					method, path = "GET", pattern
					// s.method(http.MethodX, h) binds the handler to X.
					if wrap, ok := call.Args[1].(*ast.CallExpr); ok && len(wrap.Args) == 2 {
						if m, ok := wrap.Args[0].(*ast.SelectorExpr); ok && strings.HasPrefix(m.Sel.Name, "Method") {
							method = strings.ToUpper(strings.TrimPrefix(m.Sel.Name, "Method"))
						}
					}
				}
				served[method+" "+path] = true
				return true
			})
		}
	}
	if len(served) < 20 {
		t.Fatalf("found only %d routes in the source: %v", len(served), served)
	}
	for r := range served {
		if !documented[r] {
			t.Errorf("served but not in openapi.yaml: %s", r)
		}
	}
	for r := range documented {
		if !served[r] {
			t.Errorf("in openapi.yaml but not served: %s", r)
		}
	}
}
