// Package tenants is the tenant registry: the YAML file an operator owns
// (--tenants FILE) with each team's cost center, API keys (SHA-256 hashes only),
// allowed models and limits, loaded into a Registry the invoker authenticates
// keys against and reloads when the file changes, and the edits `meter team`
// makes to it (atomic rewrites; a new key is returned once, never stored).
package tenants

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shopspring/decimal"
	"gopkg.in/yaml.v3"

	"github.com/meter-dev/meter/internal/atomicfile"
	"github.com/meter-dev/meter/schemas"
)

// File is the YAML document of the tenant registry (--tenants FILE).
// The operator owns it; `meter team add` and friends edit it atomically.
type File struct {
	Teams []TeamSpec `yaml:"teams"`
	// Admins are the keys of the admin API (/admin/), hashes only; a team
	// key is never an admin key (see keys.go).
	Admins []KeySpec `yaml:"admins,omitempty"`
	// Aliases name a model for callers and roll a new version out by
	// percentage (see aliases.go); Deprecations date models and aliases.
	Aliases      []AliasSpec       `yaml:"aliases,omitempty"`
	Deprecations []DeprecationSpec `yaml:"deprecations,omitempty"`
}

// TeamSpec is one team of the registry as written in the YAML file.
// A limit left out (nil or empty) is unlimited.
type TeamSpec struct {
	ID               string     `yaml:"id"`
	CostCenter       string     `yaml:"cost_center,omitempty"`
	APIKeys          []KeySpec  `yaml:"api_keys,omitempty"`
	ActFor           []string   `yaml:"act_for,omitempty"`
	AllowedModels    []string   `yaml:"allowed_models,omitempty"`
	RateLimit        *RateLimit `yaml:"rate_limit,omitempty"`
	Quotas           *Quotas    `yaml:"quotas,omitempty"`
	MonthlyBudgetUSD string     `yaml:"monthly_budget_usd,omitempty"`
}

// KeySpec is one API key of a team: only its SHA-256 hash is ever stored.
type KeySpec struct {
	ID      string    `yaml:"id"`
	SHA256  string    `yaml:"sha256"`
	Created time.Time `yaml:"created"`
	Revoked bool      `yaml:"revoked,omitempty"`
	// Expires, when set, ends the key at that instant (a rotation's grace).
	Expires *time.Time `yaml:"expires,omitempty"`
}

// RateLimit is a token bucket: RPS requests per second sustained, Burst at once.
// A zero RPS means no rate limit; a zero Burst means max(1, ceil(RPS)).
type RateLimit struct {
	RPS   float64 `yaml:"rps" json:"rps"`
	Burst int     `yaml:"burst,omitempty" json:"burst,omitempty"`
}

// Quotas are per-UTC-day limits; zero means unlimited.
type Quotas struct {
	DailyRequests int64 `yaml:"daily_requests,omitempty" json:"daily_requests,omitempty"`
	DailyTokens   int64 `yaml:"daily_tokens,omitempty" json:"daily_tokens,omitempty"`
}

// Team is a validated team of a loaded registry.
type Team struct {
	ID            string
	CostCenter    string
	ActFor        []string
	AllowedModels []string
	RateLimit     RateLimit
	Quotas        Quotas
	// MonthlyBudgetUSD is the monthly budget; nil means unlimited.
	MonthlyBudgetUSD *decimal.Decimal
}

// Allows reports whether the team may invoke modelID. Patterns are exact ids or
// prefixes ending in '*' ("anthropic.*", "*"); they match the id as given, so a
// cross-region profile such as "us.anthropic.claude-3-haiku-20240307-v1:0" needs
// its own pattern ("us.anthropic.*").
func (t *Team) Allows(modelID string) bool {
	for _, p := range t.AllowedModels {
		if matchModel(p, modelID) {
			return true
		}
	}
	return false
}

func matchModel(pattern, modelID string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(modelID, prefix)
	}
	return pattern == modelID
}

// MayActFor reports whether a key of this team may act for team id.
func (t *Team) MayActFor(id string) bool {
	if id == t.ID {
		return true
	}
	for _, a := range t.ActFor {
		if a == id {
			return true
		}
	}
	return false
}

// Principal is the caller an API key identifies.
type Principal struct {
	Team  *Team  // the key's own team
	KeyID string // the key's id, safe to record; never the key
}

type keyEntry struct {
	hash    [sha256.Size]byte
	keyID   string
	team    string // "" for an admin key
	admin   bool
	revoked bool
	expires time.Time // zero: never
	used    *atomic.Int64
}

// snapshot is one immutable, validated version of the registry.
type snapshot struct {
	teams   map[string]*Team
	byHash  map[[sha256.Size]byte]keyEntry
	aliases map[string]*Alias
	// deprecated maps model ids and alias names to the instant they are
	// deprecated from.
	deprecated map[string]time.Time
}

// Registry is the tenant registry loaded from a YAML file. It reloads the file
// when it changes (see Watch) and keeps serving the last valid version when an
// edit is invalid. It is safe for concurrent use.
type Registry struct {
	path     string
	failures atomic.Int64

	mu      sync.RWMutex
	cur     *snapshot
	modTime time.Time
	size    int64
	digest  [sha256.Size]byte
	refused [sha256.Size]byte // the last content refused as invalid

	// lastUsed is each key's last use (Unix seconds) by key id, kept across
	// reloads and persisted beside the file (see keys.go); never the key.
	lastUsed lastUsed
}

// Path is the file the registry was opened from; empty for one built in memory.
func (r *Registry) Path() string { return r.path }

// Errors of key authentication and team resolution.
var (
	ErrUnknownKey     = errors.New("missing or unknown API key")
	ErrKeyExpired     = errors.New("API key expired")
	ErrKeyRevoked     = errors.New("API key revoked")
	ErrTeamNotAllowed = errors.New("key may not act for this team")
)

// OpenRegistry loads the registry at path. A missing or invalid file is an error.
func OpenRegistry(path string) (*Registry, error) {
	r := &Registry{path: path}
	r.lastUsed.load(path)
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// WatchRegistry returns the registry at path whether or not the file holds a
// valid registry yet: until it does, Loaded is false and every key is
// unknown. Watch loads the file once it is valid. This is how a server starts
// before its tenants file is in place, and says so on its readiness check.
func WatchRegistry(path string) *Registry {
	r := &Registry{path: path}
	r.lastUsed.load(path)
	r.Reload()
	return r
}

// Loaded reports whether a valid registry has been loaded (the last good one
// stays in force through invalid edits).
func (r *Registry) Loaded() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cur != nil
}

// Failures counts the versions of the file that were refused as invalid
// (each distinct content once; a missing or empty file is not counted).
func (r *Registry) Failures() int64 { return r.failures.Load() }

// NewRegistry builds a registry from an in-memory document (no file, no reload).
func NewRegistry(doc File) (*Registry, error) {
	s, err := buildSnapshot(doc)
	if err != nil {
		return nil, err
	}
	r := &Registry{cur: s}
	r.lastUsed.attach(s)
	return r, nil
}

// Reload re-reads the file if its modification time, size or content changed.
// It reports whether a new version was loaded. An invalid file leaves the
// current version in place and returns the error.
func (r *Registry) Reload() (bool, error) {
	if r.path == "" {
		return false, nil
	}
	st, err := os.Stat(r.path)
	if err != nil {
		return false, fmt.Errorf("tenants %s: %w", r.path, err)
	}
	r.mu.RLock()
	same := r.cur != nil && st.ModTime().Equal(r.modTime) && st.Size() == r.size
	r.mu.RUnlock()
	if same {
		return false, nil
	}
	data, err := os.ReadFile(r.path)
	if err != nil {
		return false, fmt.Errorf("tenants %s: %w", r.path, err)
	}
	// An editor that truncates and then writes shows an empty or half-written
	// file for a moment: an empty file is never taken for "no teams", and a file
	// that changed while it was read is read again on the next poll.
	if len(bytes.TrimSpace(data)) == 0 {
		return false, fmt.Errorf("tenants %s: file is empty; keeping the last good registry", r.path)
	}
	if again, err := os.Stat(r.path); err != nil || !again.ModTime().Equal(st.ModTime()) || again.Size() != int64(len(data)) {
		return false, nil
	}
	digest := sha256.Sum256(data)
	r.mu.RLock()
	unchanged := r.cur != nil && digest == r.digest
	r.mu.RUnlock()
	if unchanged {
		r.mu.Lock()
		r.modTime, r.size = st.ModTime(), st.Size()
		r.mu.Unlock()
		return false, nil
	}
	doc, err := parseTenants(data)
	if err != nil {
		r.refuse(digest)
		return false, fmt.Errorf("tenants %s: %w", r.path, err)
	}
	s, err := buildSnapshot(doc)
	if err != nil {
		r.refuse(digest)
		return false, fmt.Errorf("tenants %s: %w", r.path, err)
	}
	r.lastUsed.attach(s)
	r.mu.Lock()
	r.cur, r.modTime, r.size, r.digest = s, st.ModTime(), st.Size(), digest
	r.mu.Unlock()
	return true, nil
}

// refuse counts an invalid version of the file once.
func (r *Registry) refuse(digest [sha256.Size]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if digest != r.refused {
		r.refused = digest
		r.failures.Add(1)
	}
}

// Watch polls the file every interval until done is closed, reloading it on
// change. Invalid edits are logged and ignored.
func (r *Registry) Watch(done <-chan struct{}, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	flushed := time.Now()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if time.Since(flushed) >= lastUsedFlushInterval {
				flushed = time.Now()
				if err := r.FlushLastUsed(); err != nil && log != nil {
					log.Warn("persisting keys' last use", "err", err)
				}
			}
			changed, err := r.Reload()
			if err != nil && log != nil {
				log.Error("tenant registry reload failed; keeping the previous version", "err", err)
			} else if changed && log != nil {
				log.Info("tenant registry reloaded", "path", r.path)
			}
		}
	}
}

// Authenticate finds the principal of a presented plaintext key at the
// current time; see AuthenticateAt.
func (r *Registry) Authenticate(key string) (*Principal, error) {
	return r.AuthenticateAt(key, time.Now())
}

// AuthenticateAt finds the principal of a presented plaintext team key. The
// key is hashed, looked up by hash and compared in constant time; a revoked
// key fails with ErrKeyRevoked, one past its expiry with ErrKeyExpired, an
// admin key (not a team key) with ErrUnknownKey. A success records the key's
// last use at now.
func (r *Registry) AuthenticateAt(key string, now time.Time) (*Principal, error) {
	e, s, err := r.lookup(key, now)
	if err != nil {
		return nil, err
	}
	if e.admin {
		return nil, ErrUnknownKey
	}
	e.touch(now)
	return &Principal{Team: s.teams[e.team], KeyID: e.keyID}, nil
}

// lookup finds the entry of a presented key and checks its state.
func (r *Registry) lookup(key string, now time.Time) (keyEntry, *snapshot, error) {
	if key == "" {
		return keyEntry{}, nil, ErrUnknownKey
	}
	h := sha256.Sum256([]byte(key))
	r.mu.RLock()
	s := r.cur
	r.mu.RUnlock()
	if s == nil {
		return keyEntry{}, nil, ErrUnknownKey
	}
	e, ok := s.byHash[h]
	if !ok || subtle.ConstantTimeCompare(e.hash[:], h[:]) != 1 {
		return keyEntry{}, nil, ErrUnknownKey
	}
	switch {
	case e.revoked:
		return keyEntry{}, nil, ErrKeyRevoked
	case !e.expires.IsZero() && !now.Before(e.expires):
		return keyEntry{}, nil, ErrKeyExpired
	}
	return e, s, nil
}

// Resolve returns the team a principal acts for: its own team when requested is
// empty, the requested team when the key may act for it, else ErrTeamNotAllowed.
// There is never a silent fallback to the key's own team.
func (r *Registry) Resolve(p *Principal, requested string) (*Team, error) {
	if requested == "" || requested == p.Team.ID {
		return p.Team, nil
	}
	if !p.Team.MayActFor(requested) {
		return nil, ErrTeamNotAllowed
	}
	r.mu.RLock()
	var t *Team
	if r.cur != nil {
		t = r.cur.teams[requested]
	}
	r.mu.RUnlock()
	if t == nil {
		return nil, ErrTeamNotAllowed
	}
	return t, nil
}

// Team returns the team with id, or nil.
func (r *Registry) Team(id string) *Team {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.cur == nil {
		return nil
	}
	return r.cur.teams[id]
}

func parseTenants(data []byte) (File, error) {
	var doc File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file is an empty registry.
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return File{}, err
	}
	return doc, nil
}

func buildSnapshot(doc File) (*snapshot, error) {
	s := &snapshot{teams: map[string]*Team{}, byHash: map[[sha256.Size]byte]keyEntry{}}
	keyIDs := map[string]bool{}
	if err := addKeys(s, keyIDs, "", doc.Admins); err != nil {
		return nil, fmt.Errorf("admins: %w", err)
	}
	for i, ts := range doc.Teams {
		if err := schemas.CheckID(ts.ID); err != nil {
			return nil, fmt.Errorf("team #%d: id %q %v", i+1, ts.ID, err)
		}
		if ts.CostCenter != "" {
			if err := schemas.CheckID(ts.CostCenter); err != nil {
				return nil, fmt.Errorf("team %q: cost_center %q %v", ts.ID, ts.CostCenter, err)
			}
		}
		for _, other := range ts.ActFor {
			if err := schemas.CheckID(other); err != nil {
				return nil, fmt.Errorf("team %q: act_for %q %v", ts.ID, other, err)
			}
		}
		if s.teams[ts.ID] != nil {
			return nil, fmt.Errorf("team %q: defined twice", ts.ID)
		}
		t := &Team{ID: ts.ID, CostCenter: ts.CostCenter, ActFor: ts.ActFor, AllowedModels: ts.AllowedModels}
		for _, p := range ts.AllowedModels {
			if strings.Contains(strings.TrimSuffix(p, "*"), "*") || p == "" {
				return nil, fmt.Errorf("team %q: allowed model %q: only a trailing '*' is allowed", ts.ID, p)
			}
			if stem := strings.TrimSuffix(p, "*"); stem != "" {
				if err := schemas.CheckModelID(stem); err != nil {
					return nil, fmt.Errorf("team %q: allowed model %q %v", ts.ID, p, err)
				}
			}
		}
		if ts.RateLimit != nil {
			if !(ts.RateLimit.RPS >= 0 && ts.RateLimit.RPS <= 1e6) || ts.RateLimit.Burst < 0 || ts.RateLimit.Burst > 1e6 {
				// !(x >= 0) also refuses NaN; the bound refuses +Inf.
				return nil, fmt.Errorf("team %q: rate_limit rps and burst must be numbers from 0 to 1,000,000", ts.ID)
			}
			t.RateLimit = *ts.RateLimit
		}
		if ts.Quotas != nil {
			if ts.Quotas.DailyRequests < 0 || ts.Quotas.DailyTokens < 0 {
				return nil, fmt.Errorf("team %q: quotas must not be negative", ts.ID)
			}
			t.Quotas = *ts.Quotas
		}
		if ts.MonthlyBudgetUSD != "" {
			d, err := decimal.NewFromString(ts.MonthlyBudgetUSD)
			if err != nil || d.IsNegative() {
				return nil, fmt.Errorf("team %q: monthly_budget_usd %q is not a non-negative decimal", ts.ID, ts.MonthlyBudgetUSD)
			}
			t.MonthlyBudgetUSD = &d
		}
		if err := addKeys(s, keyIDs, ts.ID, ts.APIKeys); err != nil {
			return nil, fmt.Errorf("team %q: %w", ts.ID, err)
		}
		s.teams[ts.ID] = t
	}
	for _, t := range s.teams {
		for _, a := range t.ActFor {
			if s.teams[a] == nil {
				return nil, fmt.Errorf("team %q: act_for names unknown team %q", t.ID, a)
			}
		}
	}
	if err := buildAliases(s, doc); err != nil {
		return nil, err
	}
	return s, nil
}

// newKey returns a fresh plaintext key, its id and its stored form.
func newKey(now time.Time) (plaintext string, spec KeySpec, err error) {
	return newKeyWith(now, "mk_", "key_")
}

// newKeyWith is newKey with the key's and the id's prefixes.
func newKeyWith(now time.Time, keyPrefix, idPrefix string) (plaintext string, spec KeySpec, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", KeySpec{}, err
	}
	plaintext = keyPrefix + hex.EncodeToString(b[:])
	h := sha256.Sum256([]byte(plaintext))
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", KeySpec{}, err
	}
	return plaintext, KeySpec{ID: idPrefix + hex.EncodeToString(id[:]), SHA256: hex.EncodeToString(h[:]), Created: now.UTC().Truncate(time.Second)}, nil
}

// editTenants applies fn to the file at path under an exclusive lock and writes
// the result atomically (temporary file, fsync, rename). A missing file is an
// empty registry. The result is validated before it replaces the file.
func editTenants(path string, fn func(doc *File) error) error {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("locking %s: %w", path, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", path, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	var doc File
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if doc, err = parseTenants(data); err != nil {
			return fmt.Errorf("tenants %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("tenants %s: %w", path, err)
	}
	if err := fn(&doc); err != nil {
		return err
	}
	if _, err := buildSnapshot(doc); err != nil {
		return fmt.Errorf("tenants %s: %w", path, err)
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return err
	}
	return writeFile(path, out, 0o600)
}

// AddTeam adds a team to the registry file at path (creating the file if it is
// absent) with one new API key, and returns that key in plaintext: the only
// time it is ever visible. Any keys in spec are ignored. A team id already in
// the file is refused.
func AddTeam(path string, spec TeamSpec) (plaintextKey string, err error) {
	if spec.ID == "" {
		return "", errors.New("team id is empty")
	}
	err = editTenants(path, func(doc *File) error {
		for _, t := range doc.Teams {
			if t.ID == spec.ID {
				return fmt.Errorf("team %q already exists in %s", spec.ID, path)
			}
		}
		key, ks, err := newKey(time.Now())
		if err != nil {
			return err
		}
		spec.APIKeys = []KeySpec{ks}
		doc.Teams = append(doc.Teams, spec)
		plaintextKey = key
		return nil
	})
	if err != nil {
		return "", err
	}
	return plaintextKey, nil
}

// RotateKey issues a new key for team and returns it in plaintext. With
// revokeOld the team's other keys are revoked in the same write; without it
// they stay valid until RevokeKey, so clients can switch over first.
// RotateKeyGrace ends the old keys after a grace period instead.
func RotateKey(path, teamID string, revokeOld bool) (plaintextKey string, err error) {
	grace := time.Duration(-1)
	if revokeOld {
		grace = 0
	}
	key, _, err := RotateKeyGrace(path, teamID, grace, time.Now())
	return key, err
}

// RevokeKey marks the key keyID of team as revoked. The reloading server stops
// accepting it within one poll interval.
func RevokeKey(path, teamID, keyID string) error {
	return editTenants(path, func(doc *File) error {
		t := findTeam(doc, teamID)
		if t == nil {
			return fmt.Errorf("team %q not found in %s", teamID, path)
		}
		for i := range t.APIKeys {
			if t.APIKeys[i].ID == keyID {
				t.APIKeys[i].Revoked = true
				return nil
			}
		}
		return fmt.Errorf("team %q has no key %q", teamID, keyID)
	})
}

// TeamInfo is the overview of a team that ListTeams returns; key hashes are left out.
type TeamInfo struct {
	ID               string     `json:"id"`
	CostCenter       string     `json:"cost_center"`
	ActFor           []string   `json:"act_for"`
	AllowedModels    []string   `json:"allowed_models"`
	RateLimit        *RateLimit `json:"rate_limit,omitempty"`
	Quotas           *Quotas    `json:"quotas,omitempty"`
	MonthlyBudgetUSD string     `json:"monthly_budget_usd,omitempty"`
	Keys             []KeyInfo  `json:"keys"`
}

// KeyInfo describes one key without its hash: its id, when it was made, when
// it ends, when it was last used (as far as this machine has seen) and its
// state at the time of listing (see KeyState).
type KeyInfo struct {
	ID       string     `json:"id"`
	Created  time.Time  `json:"created"`
	Revoked  bool       `json:"revoked"`
	Expires  *time.Time `json:"expires,omitempty"`
	LastUsed *time.Time `json:"last_used,omitempty"`
	State    string     `json:"state"`
}

// ListTeams reads the registry at path and returns its teams sorted by id,
// with each key's state now and its last use as persisted beside the file.
func ListTeams(path string) ([]TeamInfo, error) {
	doc, err := readDoc(path)
	if err != nil {
		return nil, err
	}
	used := readLastUsed(path)
	return teamInfos(doc, used, time.Now()), nil
}

// readDoc reads and validates the registry file at path.
func readDoc(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("tenants %s: %w", path, err)
	}
	doc, err := parseTenants(data)
	if err != nil {
		return File{}, fmt.Errorf("tenants %s: %w", path, err)
	}
	if _, err := buildSnapshot(doc); err != nil {
		return File{}, fmt.Errorf("tenants %s: %w", path, err)
	}
	return doc, nil
}

func teamInfos(doc File, used map[string]time.Time, now time.Time) []TeamInfo {
	out := []TeamInfo{}
	for _, t := range doc.Teams {
		ti := TeamInfo{ID: t.ID, CostCenter: t.CostCenter, ActFor: append([]string{}, t.ActFor...), AllowedModels: append([]string{}, t.AllowedModels...),
			RateLimit: t.RateLimit, Quotas: t.Quotas, MonthlyBudgetUSD: t.MonthlyBudgetUSD, Keys: keyInfos(t.APIKeys, used, now)}
		out = append(out, ti)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func findTeam(doc *File, id string) *TeamSpec {
	for i := range doc.Teams {
		if doc.Teams[i].ID == id {
			return &doc.Teams[i]
		}
	}
	return nil
}

func writeFile(path string, data []byte, perm os.FileMode) error {
	if err := atomicfile.Write(path, bytes.NewReader(data), perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
