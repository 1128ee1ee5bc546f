package invoker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

// ReportFunc builds the finance page (HTML) of a month, YYYY-MM; it returns
// an error wrapping ErrNoReport when the store has nothing for the month.
type ReportFunc func(ctx context.Context, month string) ([]byte, error)

// ErrNoReport is a month without a chargeback in the store.
var ErrNoReport = errors.New("no chargeback in the store for this month")

// maxAdminBody bounds an admin request body.
const maxAdminBody = 64 << 10

// adminRoutes registers the admin API: teams, their limits and keys, and
// aliases, under /admin/, and the finance page at /report. Every route takes
// an admin key (a team key gets 403). Every change is written atomically to
// the tenants file, takes effect at once on this server (the file is
// reloaded), and is logged as an audit line naming the admin key's id and
// what changed, never a key.
func (s *Server) adminRoutes() {
	s.mux.HandleFunc("GET /admin/teams", s.admin(s.handleAdminListTeams))
	s.mux.HandleFunc("POST /admin/teams", s.admin(s.handleAdminCreateTeam))
	s.mux.HandleFunc("PATCH /admin/teams/{team_id}", s.admin(s.handleAdminUpdateTeam))
	s.mux.HandleFunc("POST /admin/teams/{team_id}/rotate-key", s.admin(s.handleAdminRotateKey))
	s.mux.HandleFunc("POST /admin/teams/{team_id}/keys/{key_id}/revoke", s.admin(s.handleAdminRevokeKey))
	s.mux.HandleFunc("GET /admin/aliases", s.admin(s.handleAdminListAliases))
	s.mux.HandleFunc("PUT /admin/aliases/{name}", s.admin(s.handleAdminSetAlias))
	s.mux.HandleFunc("DELETE /admin/aliases/{name}", s.admin(s.handleAdminDeleteAlias))
	s.mux.HandleFunc("GET /admin/admins", s.admin(s.handleAdminListAdmins))
	s.mux.HandleFunc("POST /admin/admins/{key_id}/rotate-key", s.admin(s.handleAdminRotateAdmin))
	s.mux.HandleFunc("POST /admin/admins/{key_id}/revoke", s.admin(s.handleAdminRevokeAdmin))
	s.mux.HandleFunc("GET /report", s.admin(s.handleReport))
	s.mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{status: http.StatusNotFound, code: "not_found", msg: "no admin route " + r.Method + " " + r.URL.Path})
	})
	s.mux.HandleFunc("/report", s.method(http.MethodGet, nil))
}

type adminHandler func(w http.ResponseWriter, r *http.Request, a *tenants.Admin)

// admin authenticates an admin key before h: 401 for a missing, unknown,
// expired or revoked key, 403 for a team key.
func (s *Server) admin(h adminHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, err := s.cfg.Tenants.AuthenticateAdmin(apiKey(r), s.cfg.Now())
		switch {
		case errors.Is(err, tenants.ErrNotAdmin):
			s.log.Warn("team key on an admin route", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, &apiError{status: http.StatusForbidden, code: "admin_only", msg: "this route takes an admin key, not a team key"})
			return
		case err != nil:
			s.log.Warn("admin route refused", "path", r.URL.Path, "remote", r.RemoteAddr)
			e := keyError(err)
			if e.code == "unauthorized" {
				e.msg = "missing or unknown admin key (x-api-key or Authorization: Bearer)"
			}
			writeError(w, e)
			return
		}
		h(w, r, a)
	}
}

// change applies fn to the tenants file, reloads it and writes the audit
// line. It answers the request itself on failure and returns false.
func (s *Server) change(w http.ResponseWriter, a *tenants.Admin, action, target string, fn func(path string) error, detail ...any) bool {
	path := s.cfg.Tenants.Path()
	if path == "" || s.cfg.TenantsReadOnly != "" {
		msg := "this server's tenants are not in a file it can edit"
		if s.cfg.TenantsReadOnly != "" {
			msg += ": " + s.cfg.TenantsReadOnly
		}
		writeError(w, &apiError{status: http.StatusNotImplemented, code: "not_yet_available", msg: msg})
		return false
	}
	if err := fn(path); err != nil {
		var nf *notFoundError
		if errors.As(err, &nf) {
			writeError(w, &apiError{status: http.StatusNotFound, code: "not_found", msg: nf.msg})
			return false
		}
		s.log.Info("admin change refused", "audit", true, "admin_key_id", a.KeyID, "action", action, "target", target, "reason", err.Error())
		writeError(w, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: trimPath(err.Error(), path)})
		return false
	}
	if _, err := s.cfg.Tenants.Reload(); err != nil {
		s.log.Error("reloading the tenants file after an admin change", "err", err)
	}
	s.log.Info("admin change", append([]any{"audit", true, "admin_key_id", a.KeyID, "action", action, "target", target}, detail...)...)
	return true
}

// later is a log value read when the line is written: what a change made.
type later struct{ v *string }

func (l later) LogValue() slog.Value { return slog.StringValue(*l.v) }

type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// trimPath keeps the server's file path out of a message for the caller.
func trimPath(msg, path string) string {
	return string(bytes.ReplaceAll([]byte(msg), []byte(path), []byte("the tenants file")))
}

// readAdminBody decodes a JSON body of at most maxAdminBody bytes into v,
// refusing unknown fields.
func readAdminBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err != nil {
		writeError(w, &apiError{status: http.StatusRequestEntityTooLarge, code: "payload_too_large", msg: fmt.Sprintf("request body exceeds %d bytes", maxAdminBody)})
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: "body: " + err.Error()})
		return false
	}
	return true
}

func (s *Server) teamInfo(id string) (tenants.TeamInfo, bool) {
	teams, err := tenants.ListTeams(s.cfg.Tenants.Path())
	if err != nil {
		return tenants.TeamInfo{}, false
	}
	used := s.cfg.Tenants.LastUsed()
	for _, t := range teams {
		if t.ID == id {
			withLastUse(&t, used)
			return t, true
		}
	}
	return tenants.TeamInfo{}, false
}

// withLastUse fills in keys' last use as this server has seen it.
func withLastUse(t *tenants.TeamInfo, used map[string]time.Time) {
	for i := range t.Keys {
		if u, ok := used[t.Keys[i].ID]; ok && (t.Keys[i].LastUsed == nil || u.After(*t.Keys[i].LastUsed)) {
			t.Keys[i].LastUsed = &u
		}
	}
}

func (s *Server) handleAdminListTeams(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	teams := []tenants.TeamInfo{}
	if path := s.cfg.Tenants.Path(); path != "" {
		var err error
		if teams, err = tenants.ListTeams(path); err != nil {
			s.log.Error("listing teams", "err", err)
			writeError(w, &apiError{status: http.StatusServiceUnavailable, code: "tenants_unavailable", retryAfter: time.Second, msg: "the tenants file cannot be read"})
			return
		}
	}
	used := s.cfg.Tenants.LastUsed()
	for i := range teams {
		withLastUse(&teams[i], used)
	}
	writeJSON(w, http.StatusOK, map[string]any{"teams": teams})
}

// teamFields are the fields of a team the admin API sets; in a PATCH, a
// field left out is unchanged and a null removes the limit.
type teamFields struct {
	ID               string             `json:"id"`
	CostCenter       *string            `json:"cost_center"`
	AllowedModels    *[]string          `json:"allowed_models"`
	ActFor           *[]string          `json:"act_for"`
	RateLimit        *tenants.RateLimit `json:"rate_limit"`
	Quotas           *tenants.Quotas    `json:"quotas"`
	MonthlyBudgetUSD *string            `json:"monthly_budget_usd"`
	present          map[string]bool
}

func (f *teamFields) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	f.present = map[string]bool{}
	for k := range raw {
		f.present[k] = true
	}
	type plain teamFields
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	p := (*plain)(f)
	present := f.present
	if err := dec.Decode(p); err != nil {
		return err
	}
	f.present = present
	return nil
}

// apply sets the present fields of f on t.
func (f *teamFields) apply(t *tenants.TeamSpec) {
	if f.present["cost_center"] {
		t.CostCenter = deref(f.CostCenter)
	}
	if f.present["allowed_models"] {
		t.AllowedModels = derefList(f.AllowedModels)
	}
	if f.present["act_for"] {
		t.ActFor = derefList(f.ActFor)
	}
	if f.present["rate_limit"] {
		t.RateLimit = f.RateLimit
	}
	if f.present["quotas"] {
		t.Quotas = f.Quotas
	}
	if f.present["monthly_budget_usd"] {
		t.MonthlyBudgetUSD = deref(f.MonthlyBudgetUSD)
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func derefList(p *[]string) []string {
	if p == nil {
		return nil
	}
	return *p
}

type newKeyJSON struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

func (s *Server) handleAdminCreateTeam(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	var f teamFields
	if !readAdminBody(w, r, &f) {
		return
	}
	if err := schemas.CheckID(f.ID); err != nil {
		writeError(w, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: "id " + err.Error()})
		return
	}
	if _, exists := s.teamInfo(f.ID); exists {
		writeError(w, &apiError{status: http.StatusConflict, code: "conflict", msg: "team " + f.ID + " already exists"})
		return
	}
	spec := tenants.TeamSpec{ID: f.ID}
	f.apply(&spec)
	var key, keyID string
	if !s.change(w, a, "team.create", f.ID, func(path string) (err error) {
		key, keyID, err = tenants.AddTeamKey(path, spec)
		return err
	}) {
		return
	}
	t, _ := s.teamInfo(f.ID)
	writeJSON(w, http.StatusCreated, map[string]any{"team": t, "key": newKeyJSON{ID: keyID, Key: key}})
}

func (s *Server) handleAdminUpdateTeam(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	id := r.PathValue("team_id")
	var f teamFields
	if !readAdminBody(w, r, &f) {
		return
	}
	if f.present["id"] && f.ID != id {
		writeError(w, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: "a team's id cannot be changed"})
		return
	}
	if !s.change(w, a, "team.update", id, func(path string) error {
		return tenants.Edit(path, func(doc *tenants.File) error {
			for i := range doc.Teams {
				if doc.Teams[i].ID == id {
					f.apply(&doc.Teams[i])
					return nil
				}
			}
			return &notFoundError{msg: "no team " + id}
		})
	}, "fields", f.fields()) {
		return
	}
	t, _ := s.teamInfo(id)
	writeJSON(w, http.StatusOK, map[string]any{"team": t})
}

// fields lists the fields a request set, sorted, for the audit line.
func (f *teamFields) fields() []string {
	out := make([]string, 0, len(f.present))
	for k := range f.present {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *Server) handleAdminRotateKey(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	id := r.PathValue("team_id")
	grace, ok := readGrace(w, r)
	if !ok {
		return
	}
	var key, keyID string
	if !s.change(w, a, "team.rotate_key", id, func(path string) (err error) {
		if _, ok := s.teamInfo(id); !ok {
			return &notFoundError{msg: "no team " + id}
		}
		key, keyID, err = tenants.RotateKeyGrace(path, id, grace, s.cfg.Now())
		return err
	}, "grace", grace.String(), "new_key_id", later{&keyID}) {
		return
	}
	t, _ := s.teamInfo(id)
	writeJSON(w, http.StatusOK, map[string]any{"team": t, "key": newKeyJSON{ID: keyID, Key: key}})
}

func (s *Server) handleAdminRevokeKey(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	id, keyID := r.PathValue("team_id"), r.PathValue("key_id")
	if !s.change(w, a, "team.revoke_key", id+"/"+keyID, func(path string) error {
		t, ok := s.teamInfo(id)
		if !ok {
			return &notFoundError{msg: "no team " + id}
		}
		for _, k := range t.Keys {
			if k.ID == keyID {
				return tenants.RevokeKey(path, id, keyID)
			}
		}
		return &notFoundError{msg: "team " + id + " has no key " + keyID}
	}) {
		return
	}
	t, _ := s.teamInfo(id)
	writeJSON(w, http.StatusOK, map[string]any{"team": t})
}

func (s *Server) handleAdminListAliases(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	aliases := []tenants.AliasSpec{}
	if path := s.cfg.Tenants.Path(); path != "" {
		var err error
		if aliases, err = tenants.ListAliases(path); err != nil {
			s.log.Error("listing aliases", "err", err)
			writeError(w, &apiError{status: http.StatusServiceUnavailable, code: "tenants_unavailable", retryAfter: time.Second, msg: "the tenants file cannot be read"})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"aliases": aliases})
}

func (s *Server) handleAdminSetAlias(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	name := r.PathValue("name")
	var as tenants.AliasSpec
	if !readAdminBody(w, r, &as) {
		return
	}
	if as.Name == "" {
		as.Name = name
	}
	if as.Name != name {
		writeError(w, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: "the body's name differs from the path's"})
		return
	}
	if err := tenants.ValidateAlias(as); err != nil {
		writeError(w, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: err.Error()})
		return
	}
	if !s.change(w, a, "alias.set", name, func(path string) error { return tenants.SetAlias(path, as) }) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alias": as})
}

func (s *Server) handleAdminDeleteAlias(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	name := r.PathValue("name")
	if !s.change(w, a, "alias.delete", name, func(path string) error {
		if s.cfg.Tenants.Alias(name) == nil {
			return &notFoundError{msg: "no alias " + name}
		}
		return tenants.DeleteAlias(path, name)
	}) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": name})
}

// adminKeys lists the admin keys with their last use as this server saw it.
func (s *Server) adminKeys() ([]tenants.KeyInfo, error) {
	keys, err := tenants.ListAdminKeys(s.cfg.Tenants.Path())
	if err != nil {
		return nil, err
	}
	t := tenants.TeamInfo{Keys: keys}
	withLastUse(&t, s.cfg.Tenants.LastUsed())
	return t.Keys, nil
}

func (s *Server) hasAdminKey(id string) bool {
	keys, err := s.adminKeys()
	if err != nil {
		return false
	}
	for _, k := range keys {
		if k.ID == id {
			return true
		}
	}
	return false
}

func (s *Server) handleAdminListAdmins(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	keys, err := s.adminKeys()
	if err != nil {
		s.log.Error("listing admin keys", "err", err)
		writeError(w, &apiError{status: http.StatusServiceUnavailable, code: "tenants_unavailable", retryAfter: time.Second, msg: "the tenants file cannot be read"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

func (s *Server) handleAdminRotateAdmin(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	id := r.PathValue("key_id")
	grace, ok := readGrace(w, r)
	if !ok {
		return
	}
	var key, keyID string
	if !s.change(w, a, "admin.rotate_key", id, func(path string) (err error) {
		if !s.hasAdminKey(id) {
			return &notFoundError{msg: "no admin key " + id}
		}
		key, keyID, err = tenants.RotateAdminKey(path, id, grace, s.cfg.Now())
		return err
	}, "grace", grace.String(), "new_key_id", later{&keyID}) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"key": newKeyJSON{ID: keyID, Key: key}})
}

func (s *Server) handleAdminRevokeAdmin(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	id := r.PathValue("key_id")
	if !s.change(w, a, "admin.revoke_key", id, func(path string) error {
		if !s.hasAdminKey(id) {
			return &notFoundError{msg: "no admin key " + id}
		}
		return tenants.RevokeAdminKey(path, id)
	}) {
		return
	}
	keys, _ := s.adminKeys()
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

// readGrace reads a rotation's {"grace": "24h"} body (default 24h).
func readGrace(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	var body struct {
		Grace *string `json:"grace"`
	}
	if !readAdminBody(w, r, &body) {
		return 0, false
	}
	grace := tenants.DefaultGrace
	if body.Grace != nil {
		g, err := time.ParseDuration(*body.Grace)
		if err != nil || g < 0 || g > 365*24*time.Hour {
			writeError(w, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: "grace must be a duration from 0s to 8760h, such as 24h"})
			return 0, false
		}
		grace = g
	}
	return grace, true
}

// handleReport serves the finance page of a month (default: the current
// one, UTC) from the store, for admin keys.
func (s *Server) handleReport(w http.ResponseWriter, r *http.Request, a *tenants.Admin) {
	month := r.URL.Query().Get("month")
	if month == "" {
		month = s.cfg.Now().UTC().Format("2006-01")
	}
	if _, err := time.Parse("2006-01", month); err != nil {
		writeError(w, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: "month must be YYYY-MM"})
		return
	}
	if s.cfg.Report == nil {
		writeError(w, &apiError{status: http.StatusNotImplemented, code: "not_yet_available", msg: "this server has no store to build the report from (meter serve --store)"})
		return
	}
	page, err := s.cfg.Report(r.Context(), month)
	switch {
	case errors.Is(err, ErrNoReport):
		writeError(w, &apiError{status: http.StatusNotFound, code: "no_report", msg: "no chargeback in the store for " + month + " yet"})
		return
	case err != nil:
		s.log.Error("building the report", "month", month, "err", err)
		writeError(w, &apiError{status: http.StatusServiceUnavailable, code: "report_unavailable", retryAfter: time.Second, msg: "the report could not be built"})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(page)
}
