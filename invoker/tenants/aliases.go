package tenants

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/meter-dev/meter/schemas"
)

// AliasSpec names a model for callers (for example claude -> a concrete
// Anthropic model id) as written in the tenants file. A rollout sends a
// percentage of each team's calls to a new version; a pin holds a team on
// one model whatever the rollout says.
type AliasSpec struct {
	Name    string            `yaml:"name" json:"name"`
	Model   string            `yaml:"model" json:"model"`
	Rollout *RolloutSpec      `yaml:"rollout,omitempty" json:"rollout,omitempty"`
	Pins    map[string]string `yaml:"pins,omitempty" json:"pins,omitempty"`
}

// RolloutSpec sends Percent (0 to 100, up to two decimals) of calls to Model.
type RolloutSpec struct {
	Model   string  `yaml:"model" json:"model"`
	Percent float64 `yaml:"percent" json:"percent"`
}

// DeprecationSpec dates a model id or an alias: calls to it from After
// (YYYY-MM-DD, UTC midnight) on answer with a Deprecation header.
type DeprecationSpec struct {
	Model string `yaml:"model" json:"model"`
	After string `yaml:"after" json:"after"`
}

// Alias is a validated alias of a loaded registry.
type Alias struct {
	Name  string
	Model string
	// RolloutModel gets RolloutBasisPoints of 10,000 calls.
	RolloutModel       string
	RolloutBasisPoints int
	Pins               map[string]string
}

// Choose returns the concrete model for a call of team with call id callID:
// the team's pin if it has one, else the rollout's model for the calls whose
// id falls in the rollout's share, else the alias's model. The same alias
// and call id always choose the same way.
func (a *Alias) Choose(team, callID string) string {
	if m, ok := a.Pins[team]; ok {
		return m
	}
	if a.RolloutModel != "" && Bucket(a.Name, callID) < a.RolloutBasisPoints {
		return a.RolloutModel
	}
	return a.Model
}

// Bucket places a call id in one of 10,000 buckets for alias, uniformly and
// deterministically (SHA-256 of the alias and the id).
func Bucket(alias, callID string) int {
	h := sha256.New()
	h.Write([]byte(alias))
	h.Write([]byte{0})
	h.Write([]byte(callID))
	var sum [sha256.Size]byte
	return int(binary.BigEndian.Uint64(h.Sum(sum[:0])[:8]) % 10000)
}

// maxAliases bounds the aliases of one registry.
const maxAliases = 1000

func buildAliases(s *snapshot, doc File) error {
	s.aliases = map[string]*Alias{}
	s.deprecated = map[string]time.Time{}
	if len(doc.Aliases) > maxAliases {
		return fmt.Errorf("aliases: at most %d", maxAliases)
	}
	for i, as := range doc.Aliases {
		a, err := validAlias(as)
		if err != nil {
			return fmt.Errorf("alias #%d: %w", i+1, err)
		}
		if s.aliases[a.Name] != nil {
			return fmt.Errorf("alias %q: defined twice", a.Name)
		}
		s.aliases[a.Name] = a
	}
	for i, d := range doc.Deprecations {
		if err := schemas.CheckModelID(d.Model); err != nil {
			return fmt.Errorf("deprecation #%d: model %q %v", i+1, d.Model, err)
		}
		day, err := time.Parse(time.DateOnly, d.After)
		if err != nil {
			return fmt.Errorf("deprecation of %q: after %q is not a YYYY-MM-DD date", d.Model, d.After)
		}
		s.deprecated[d.Model] = day
	}
	return nil
}

// ValidateAlias checks an alias as the tenants file and the admin API take it.
func ValidateAlias(as AliasSpec) error {
	_, err := validAlias(as)
	return err
}

func validAlias(as AliasSpec) (*Alias, error) {
	if err := schemas.CheckID(as.Name); err != nil {
		return nil, fmt.Errorf("name %q %v", as.Name, err)
	}
	if err := schemas.CheckModelID(as.Model); err != nil {
		return nil, fmt.Errorf("alias %q: model %q %v", as.Name, as.Model, err)
	}
	a := &Alias{Name: as.Name, Model: as.Model, Pins: map[string]string{}}
	if as.Rollout != nil {
		if err := schemas.CheckModelID(as.Rollout.Model); err != nil {
			return nil, fmt.Errorf("alias %q: rollout model %q %v", as.Name, as.Rollout.Model, err)
		}
		p := as.Rollout.Percent
		if !(p >= 0 && p <= 100) {
			return nil, fmt.Errorf("alias %q: rollout percent must be from 0 to 100", as.Name)
		}
		a.RolloutModel, a.RolloutBasisPoints = as.Rollout.Model, int(math.Round(p*100))
	}
	if len(as.Pins) > 10000 {
		return nil, fmt.Errorf("alias %q: too many pins", as.Name)
	}
	for team, m := range as.Pins {
		if err := schemas.CheckID(team); err != nil {
			return nil, fmt.Errorf("alias %q: pin team %q %v", as.Name, team, err)
		}
		if err := schemas.CheckModelID(m); err != nil {
			return nil, fmt.Errorf("alias %q: pin of team %s: model %q %v", as.Name, team, m, err)
		}
		a.Pins[team] = m
	}
	return a, nil
}

// Alias returns the alias called name, or nil.
func (r *Registry) Alias(name string) *Alias {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.cur == nil || len(r.cur.aliases) == 0 {
		return nil
	}
	return r.cur.aliases[name]
}

// Aliases returns every alias, sorted by name.
func (r *Registry) Aliases() []*Alias {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.cur == nil {
		return nil
	}
	out := make([]*Alias, 0, len(r.cur.aliases))
	for _, a := range r.cur.aliases {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Deprecated returns when model (an id or an alias name) is deprecated
// from, if the registry dates it.
func (r *Registry) Deprecated(model string) (time.Time, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.cur == nil || len(r.cur.deprecated) == 0 {
		return time.Time{}, false
	}
	t, ok := r.cur.deprecated[model]
	return t, ok
}

// SetAlias adds or replaces the alias as.Name in the registry file at path.
func SetAlias(path string, as AliasSpec) error {
	if err := ValidateAlias(as); err != nil {
		return err
	}
	return editTenants(path, func(doc *File) error {
		for i := range doc.Aliases {
			if doc.Aliases[i].Name == as.Name {
				doc.Aliases[i] = as
				return nil
			}
		}
		doc.Aliases = append(doc.Aliases, as)
		return nil
	})
}

// DeleteAlias removes the alias name from the registry file at path.
func DeleteAlias(path, name string) error {
	return editTenants(path, func(doc *File) error {
		for i := range doc.Aliases {
			if doc.Aliases[i].Name == name {
				doc.Aliases = append(doc.Aliases[:i], doc.Aliases[i+1:]...)
				return nil
			}
		}
		return fmt.Errorf("no alias %q", name)
	})
}

// ListAliases returns the aliases of the registry file at path, by name.
func ListAliases(path string) ([]AliasSpec, error) {
	doc, err := readDoc(path)
	if err != nil {
		return nil, err
	}
	out := append([]AliasSpec{}, doc.Aliases...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
