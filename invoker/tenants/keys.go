package tenants

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meter-dev/meter/internal/atomicfile"
	"github.com/meter-dev/meter/schemas"
)

// Key states as ListTeams and the admin API show them.
const (
	KeyActive  = "active"  // valid, no end set
	KeyGrace   = "grace"   // valid until its expiry (a rotation's grace)
	KeyExpired = "expired" // past its expiry
	KeyRevoked = "revoked" // ended at once
)

// DefaultGrace is how long a rotated key keeps working by default.
const DefaultGrace = 24 * time.Hour

// KeyState is the state of a stored key at now.
func KeyState(k KeySpec, now time.Time) string {
	switch {
	case k.Revoked:
		return KeyRevoked
	case k.Expires != nil && !now.Before(*k.Expires):
		return KeyExpired
	case k.Expires != nil:
		return KeyGrace
	}
	return KeyActive
}

// addKeys validates keys and adds them to s; team is "" for admin keys.
// Revoked and expired keys stay in the index, so that a caller presenting
// one is told which (never whose).
func addKeys(s *snapshot, keyIDs map[string]bool, team string, keys []KeySpec) error {
	for _, k := range keys {
		raw, err := hex.DecodeString(k.SHA256)
		if err != nil || len(raw) != sha256.Size {
			return fmt.Errorf("key %q: sha256 must be 64 hex digits", k.ID)
		}
		if err := schemas.CheckID(k.ID); err != nil {
			return fmt.Errorf("key id %q %v", k.ID, err)
		}
		if keyIDs[k.ID] {
			return fmt.Errorf("key id %q used twice", k.ID)
		}
		keyIDs[k.ID] = true
		var h [sha256.Size]byte
		copy(h[:], raw)
		if _, dup := s.byHash[h]; dup {
			return fmt.Errorf("key %q: the same key is registered twice", k.ID)
		}
		e := keyEntry{hash: h, keyID: k.ID, team: team, admin: team == "", revoked: k.Revoked}
		if k.Expires != nil {
			e.expires = *k.Expires
		}
		s.byHash[h] = e
	}
	return nil
}

// touch records a use of the key at now, at most one write a second.
func (e *keyEntry) touch(now time.Time) {
	if e.used == nil {
		return
	}
	if sec := now.Unix(); e.used.Load() < sec {
		e.used.Store(sec)
	}
}

// lastUsedFlushInterval is how often Watch persists keys' last use.
const lastUsedFlushInterval = 30 * time.Second

// lastUsed keeps every key's last use by key id across reloads. It is
// persisted beside the tenants file (FILE.last-used.json: key ids and times,
// never a key) so that an operator's listing shows it, without rewriting the
// operator's file on every call.
type lastUsed struct {
	mu      sync.Mutex
	byKey   map[string]*atomic.Int64
	flushed map[string]int64
}

// load reads the persisted last uses of the registry at path, if any.
func (l *lastUsed) load(path string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, t := range readLastUsed(path) {
		l.slot(id).Store(t.Unix())
	}
}

// slot returns the counter of key id; l.mu is held.
func (l *lastUsed) slot(id string) *atomic.Int64 {
	if l.byKey == nil {
		l.byKey = map[string]*atomic.Int64{}
	}
	v := l.byKey[id]
	if v == nil {
		v = new(atomic.Int64)
		l.byKey[id] = v
	}
	return v
}

// attach gives every key entry of s its counter.
func (l *lastUsed) attach(s *snapshot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for h, e := range s.byHash {
		e.used = l.slot(e.keyID)
		s.byHash[h] = e
	}
}

// snapshot returns the known last uses.
func (l *lastUsed) snapshot() map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]time.Time{}
	for id, v := range l.byKey {
		if sec := v.Load(); sec > 0 {
			out[id] = time.Unix(sec, 0).UTC()
		}
	}
	return out
}

func lastUsedPath(path string) string { return path + ".last-used.json" }

// readLastUsed reads FILE.last-used.json; a missing or unreadable file is
// no knowledge, not an error.
func readLastUsed(path string) map[string]time.Time {
	out := map[string]time.Time{}
	data, err := os.ReadFile(lastUsedPath(path))
	if err != nil {
		return out
	}
	var raw map[string]time.Time
	if json.Unmarshal(data, &raw) != nil {
		return out
	}
	for id, t := range raw {
		if schemas.CheckID(id) == nil {
			out[id] = t
		}
	}
	return out
}

// FlushLastUsed persists the keys' last uses beside the tenants file when
// they changed since the last flush (atomic rewrite of a small JSON file).
func (r *Registry) FlushLastUsed() error {
	if r.path == "" {
		return nil
	}
	cur := r.lastUsed.snapshot()
	r.lastUsed.mu.Lock()
	changed := len(cur) != len(r.lastUsed.flushed)
	for id, t := range cur {
		if r.lastUsed.flushed[id] != t.Unix() {
			changed = true
		}
	}
	r.lastUsed.mu.Unlock()
	if !changed {
		return nil
	}
	data, err := json.MarshalIndent(cur, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(lastUsedPath(r.path), bytes.NewReader(data), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", lastUsedPath(r.path), err)
	}
	r.lastUsed.mu.Lock()
	r.lastUsed.flushed = map[string]int64{}
	for id, t := range cur {
		r.lastUsed.flushed[id] = t.Unix()
	}
	r.lastUsed.mu.Unlock()
	return nil
}

// LastUsed returns each key's last use known to this registry, by key id.
func (r *Registry) LastUsed() map[string]time.Time { return r.lastUsed.snapshot() }

func keyInfos(keys []KeySpec, used map[string]time.Time, now time.Time) []KeyInfo {
	out := []KeyInfo{}
	for _, k := range keys {
		ki := KeyInfo{ID: k.ID, Created: k.Created, Revoked: k.Revoked, Expires: k.Expires, State: KeyState(k, now)}
		if t, ok := used[k.ID]; ok {
			ki.LastUsed = &t
		}
		out = append(out, ki)
	}
	return out
}

// endKeys ends every key of keys except keep: at once (grace 0, revoked),
// after grace (an expiry, never later than one already set), or not at all
// (grace < 0).
func endKeys(keys []KeySpec, keep string, grace time.Duration, now time.Time) {
	if grace < 0 {
		return
	}
	end := now.UTC().Add(grace).Truncate(time.Second)
	for i := range keys {
		k := &keys[i]
		if k.ID == keep || k.Revoked {
			continue
		}
		if grace == 0 {
			k.Revoked = true
			continue
		}
		if k.Expires == nil || end.Before(*k.Expires) {
			k.Expires = &end
		}
	}
}

// RotateKeyGrace issues a new key for team and returns it in plaintext with
// its id. The team's other keys keep working for grace and then expire;
// grace 0 revokes them at once; a negative grace leaves them as they are.
func RotateKeyGrace(path, teamID string, grace time.Duration, now time.Time) (plaintextKey, keyID string, err error) {
	err = editTenants(path, func(doc *File) error {
		t := findTeam(doc, teamID)
		if t == nil {
			return fmt.Errorf("team %q not found in %s", teamID, path)
		}
		key, ks, err := newKey(now)
		if err != nil {
			return err
		}
		endKeys(t.APIKeys, "", grace, now)
		t.APIKeys = append(t.APIKeys, ks)
		plaintextKey, keyID = key, ks.ID
		return nil
	})
	if err != nil {
		return "", "", err
	}
	return plaintextKey, keyID, nil
}

// AddTeamKey is AddTeam that also returns the new key's id.
func AddTeamKey(path string, spec TeamSpec) (plaintextKey, keyID string, err error) {
	if spec.ID == "" {
		return "", "", errors.New("team id is empty")
	}
	err = editTenants(path, func(doc *File) error {
		if findTeam(doc, spec.ID) != nil {
			return fmt.Errorf("team %q already exists", spec.ID)
		}
		key, ks, err := newKey(time.Now())
		if err != nil {
			return err
		}
		spec.APIKeys = []KeySpec{ks}
		doc.Teams = append(doc.Teams, spec)
		plaintextKey, keyID = key, ks.ID
		return nil
	})
	if err != nil {
		return "", "", err
	}
	return plaintextKey, keyID, nil
}

// Edit applies fn to the registry file at path under an exclusive lock and
// replaces the file atomically with the result, once it validates. The admin
// API makes every change through it.
func Edit(path string, fn func(doc *File) error) error { return editTenants(path, fn) }

// Admin is the caller an admin key identifies.
type Admin struct {
	KeyID string // safe to log; never the key
}

// ErrNotAdmin is a valid team key presented where an admin key is needed.
var ErrNotAdmin = errors.New("a team key is not an admin key")

// AuthenticateAdmin finds the admin of a presented plaintext key. A valid
// team key gets ErrNotAdmin (so the caller can answer 403, not 401); revoked
// and expired keys get ErrKeyRevoked and ErrKeyExpired.
func (r *Registry) AuthenticateAdmin(key string, now time.Time) (*Admin, error) {
	e, _, err := r.lookup(key, now)
	if err != nil {
		return nil, err
	}
	if !e.admin {
		return nil, ErrNotAdmin
	}
	e.touch(now)
	return &Admin{KeyID: e.keyID}, nil
}

// AddAdminKey adds an admin key to the registry file at path (creating the
// file if it is absent) and returns it in plaintext, once, with its id.
func AddAdminKey(path string, now time.Time) (plaintextKey, keyID string, err error) {
	err = editTenants(path, func(doc *File) error {
		key, ks, err := newKeyWith(now, "mka_", "adm_")
		if err != nil {
			return err
		}
		doc.Admins = append(doc.Admins, ks)
		plaintextKey, keyID = key, ks.ID
		return nil
	})
	return plaintextKey, keyID, err
}

// RotateAdminKey issues a new admin key in place of keyID, which keeps
// working for grace (0: ends at once).
func RotateAdminKey(path, keyID string, grace time.Duration, now time.Time) (plaintextKey, newID string, err error) {
	err = editTenants(path, func(doc *File) error {
		i := findKey(doc.Admins, keyID)
		if i < 0 {
			return fmt.Errorf("no admin key %q", keyID)
		}
		key, ks, err := newKeyWith(now, "mka_", "adm_")
		if err != nil {
			return err
		}
		one := doc.Admins[i : i+1]
		endKeys(one, "", grace, now)
		doc.Admins = append(doc.Admins, ks)
		plaintextKey, newID = key, ks.ID
		return nil
	})
	return plaintextKey, newID, err
}

// RevokeAdminKey ends the admin key keyID at once.
func RevokeAdminKey(path, keyID string) error {
	return editTenants(path, func(doc *File) error {
		i := findKey(doc.Admins, keyID)
		if i < 0 {
			return fmt.Errorf("no admin key %q", keyID)
		}
		doc.Admins[i].Revoked = true
		return nil
	})
}

// ListAdminKeys returns the admin keys of the registry at path, without hashes.
func ListAdminKeys(path string) ([]KeyInfo, error) {
	doc, err := readDoc(path)
	if err != nil {
		return nil, err
	}
	out := keyInfos(doc.Admins, readLastUsed(path), time.Now())
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func findKey(keys []KeySpec, id string) int {
	for i := range keys {
		if keys[i].ID == id {
			return i
		}
	}
	return -1
}
