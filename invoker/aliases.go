package invoker

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

// CallIDHeader is the client's id for a call: a retry with the same id is
// routed the same way (aliases, rollout). Every answer carries it: the
// client's, or the event_id meter minted before the call.
const CallIDHeader = "x-meter-call-id"

// beginCall mints the call's event id and takes its call id from the
// client's x-meter-call-id (1 to 64 characters of a-z A-Z 0-9 . _ -) or the
// event id, and sets it on the answer.
func (s *Server) beginCall(w http.ResponseWriter, r *http.Request, c *call) bool {
	c.eventID = newID()
	c.callID = c.eventID
	if v := r.Header.Get(CallIDHeader); v != "" {
		if err := schemas.CheckID(v); err != nil {
			writeCallError(w, c, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: CallIDHeader + " " + err.Error()})
			return false
		}
		c.callID = v
	}
	w.Header().Set(CallIDHeader, c.callID)
	return true
}

// keyError is the 401 for a key that did not authenticate: it says whether
// the key is unknown, expired or revoked, and never whose it is.
func keyError(err error) *apiError {
	switch {
	case errors.Is(err, tenants.ErrKeyExpired):
		return &apiError{status: http.StatusUnauthorized, code: "key_expired", msg: "this API key has expired; use the key that replaced it"}
	case errors.Is(err, tenants.ErrKeyRevoked):
		return &apiError{status: http.StatusUnauthorized, code: "key_revoked", msg: "this API key has been revoked"}
	}
	return &apiError{status: http.StatusUnauthorized, code: "unauthorized", msg: "missing or unknown API key (x-api-key or Authorization: Bearer)"}
}

// ModelHeader names the concrete model a call was sent to when the caller
// asked for an alias.
const ModelHeader = "x-meter-model-id"

// resolveModel turns an alias into the concrete model for this team and call
// id (its pin, else the rollout's share by call id, else the alias's model),
// and marks a call to a deprecated model or alias with a Deprecation header
// (RFC 9745: "@" and the Unix time it was deprecated from).
func (s *Server) resolveModel(w http.ResponseWriter, c *call) bool {
	reg := s.cfg.Tenants
	if a := reg.Alias(c.modelID); a != nil {
		c.alias = a.Name
		c.modelID = a.Choose(c.team.ID, c.callID)
		w.Header().Set(ModelHeader, c.modelID)
	}
	now := s.cfg.Now()
	for _, m := range [...]string{c.alias, c.modelID} {
		if m == "" {
			continue
		}
		if from, ok := reg.Deprecated(m); ok && !now.Before(from) {
			w.Header().Set("Deprecation", "@"+strconv.FormatInt(from.Unix(), 10))
			break
		}
	}
	return true
}

// rolloutSummary is an alias's rollout as /list_foundation_models shows it.
type rolloutSummary struct {
	ModelID string  `json:"modelId"`
	Percent float64 `json:"percent"`
}

// listAliases adds the aliases team may call (its allow-list names the
// alias or the alias's model) to a model list, each saying where it points:
// its model, its rollout, this team's pin, its deprecation date.
func (s *Server) listAliases(list []modelSummary, team *tenants.Team) []modelSummary {
	for _, a := range s.cfg.Tenants.Aliases() {
		if !team.Allows(a.Name) && !team.Allows(a.Model) {
			continue
		}
		// An allow-list entry naming the alias is listed as the alias.
		kept := list[:0]
		for _, m := range list {
			if m.ModelID != a.Name {
				kept = append(kept, m)
			}
		}
		list = kept
		m := modelSummary{ModelID: a.Name, AliasFor: a.Model, PinnedModel: a.Pins[team.ID]}
		if f := familyOf(a.Model); f != nil {
			m.ProviderName, m.OutputModalities, m.InvokeModel = f.provider, []string{string(f.modality)}, true
		}
		if a.RolloutModel != "" {
			m.Rollout = &rolloutSummary{ModelID: a.RolloutModel, Percent: float64(a.RolloutBasisPoints) / 100}
		}
		if from, ok := s.cfg.Tenants.Deprecated(a.Name); ok {
			m.Deprecation = from.UTC().Format(time.DateOnly)
		}
		list = append(list, m)
	}
	return list
}
