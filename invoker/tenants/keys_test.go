package tenants_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/invoker/tenants"
)

// TestRotationGraceAndRevocation: after a rotation the old key works for the
// grace and fails after it with ErrKeyExpired; a revoked key fails at once
// with ErrKeyRevoked; --grace 0 ends the old key at once.
func TestRotationGraceAndRevocation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	old, err := tenants.AddTeam(path, tenants.TeamSpec{ID: "search", AllowedModels: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	fresh, freshID, err := tenants.RotateKeyGrace(path, "search", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := tenants.OpenRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  string
		at   time.Time
		want error
	}{
		{old, now.Add(59 * time.Minute), nil},
		{old, now.Add(61 * time.Minute), tenants.ErrKeyExpired},
		{fresh, now.Add(1000 * time.Hour), nil},
	} {
		if _, err := reg.AuthenticateAt(c.key, c.at); !errors.Is(err, c.want) {
			t.Errorf("key at %v: err %v, want %v", c.at.Sub(now), err, c.want)
		}
	}
	teams, err := tenants.ListTeams(path)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, k := range teams[0].Keys {
		states[k.ID] = k.State
	}
	if states[freshID] != tenants.KeyActive || len(states) != 2 {
		t.Errorf("states %v: want the new key active and the old in grace", states)
	}
	if err := tenants.RevokeKey(path, "search", freshID); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AuthenticateAt(fresh, now); !errors.Is(err, tenants.ErrKeyRevoked) {
		t.Errorf("revoked key: err %v, want ErrKeyRevoked", err)
	}
	third, _, err := tenants.RotateKeyGrace(path, "search", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	reg.Reload()
	if _, err := reg.AuthenticateAt(old, now); !errors.Is(err, tenants.ErrKeyRevoked) {
		t.Errorf("grace 0: old key err %v, want revoked at once", err)
	}
	if _, err := reg.AuthenticateAt(third, now); err != nil {
		t.Errorf("newest key: %v", err)
	}
	for _, msg := range []error{tenants.ErrKeyExpired, tenants.ErrKeyRevoked} {
		if strings.Contains(msg.Error(), "search") {
			t.Errorf("%q names the team", msg)
		}
	}
}

// TestAdminKeysAreNotTeamKeys: an admin key authenticates only as an admin,
// a team key only as a team (ErrNotAdmin on admin routes).
func TestAdminKeysAreNotTeamKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	team, err := tenants.AddTeam(path, tenants.TeamSpec{ID: "search"})
	if err != nil {
		t.Fatal(err)
	}
	admin, adminID, err := tenants.AddAdminKey(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := tenants.OpenRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if a, err := reg.AuthenticateAdmin(admin, now); err != nil || a.KeyID != adminID {
		t.Errorf("admin key: %v %v", a, err)
	}
	if _, err := reg.AuthenticateAdmin(team, now); !errors.Is(err, tenants.ErrNotAdmin) {
		t.Errorf("team key as admin: %v, want ErrNotAdmin", err)
	}
	if _, err := reg.AuthenticateAt(admin, now); !errors.Is(err, tenants.ErrUnknownKey) {
		t.Errorf("admin key as team key: %v, want ErrUnknownKey", err)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), admin) || strings.Contains(string(data), team) {
		t.Fatal("the tenants file holds a plaintext key")
	}
	if _, _, err := tenants.RotateAdminKey(path, adminID, 0, now); err != nil {
		t.Fatal(err)
	}
	reg.Reload()
	if _, err := reg.AuthenticateAdmin(admin, now); !errors.Is(err, tenants.ErrKeyRevoked) {
		t.Errorf("rotated admin key with grace 0: %v", err)
	}
}

// TestOldTenantsFilesLoad: a file written before keys had expiries and
// before admins and aliases existed loads unchanged.
func TestOldTenantsFilesLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	doc := `teams:
    - id: search
      cost_center: CC-1
      api_keys:
        - id: key_0123456789ab
          sha256: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824
          created: 2026-01-02T03:04:05Z
        - id: key_ba9876543210
          sha256: 486ea46224d1bb4fb680f34f7c9ad96a8f24ec88be73ea8e5a6c65260e9cb8a7
          created: 2026-01-02T03:04:05Z
          revoked: true
      allowed_models: ["anthropic.*"]
      rate_limit: {rps: 5, burst: 10}
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := tenants.OpenRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := reg.Authenticate("hello"); err != nil || p.Team.ID != "search" {
		t.Errorf("old key: %v %v", p, err)
	}
	if _, err := reg.Authenticate("world"); !errors.Is(err, tenants.ErrKeyRevoked) {
		t.Errorf("old revoked key: %v", err)
	}
}

// TestRolloutShare: a 10% rollout sends 10% +- 1% of 10,000 call ids to the
// new version, and the same id always the same way; a pin wins.
func TestRolloutShare(t *testing.T) {
	a := &tenants.Alias{Name: "claude", Model: "anthropic.claude-3-haiku-20240307-v1:0",
		RolloutModel: "anthropic.claude-3-5-haiku-20241022-v1:0", RolloutBasisPoints: 1000,
		Pins: map[string]string{"legacy": "anthropic.claude-3-haiku-20240307-v1:0"}}
	n := 0
	for i := range 10000 {
		id := fmt.Sprintf("req-%05d", i)
		got := a.Choose("search", id)
		if got == a.RolloutModel {
			n++
		}
		if again := a.Choose("search", id); again != got {
			t.Fatalf("call id %s chose %s then %s", id, got, again)
		}
		if a.Choose("legacy", id) != a.Model {
			t.Fatalf("pinned team left its pin for %s", id)
		}
	}
	if n < 900 || n > 1100 {
		t.Errorf("rollout took %d of 10,000 calls, want 1,000 +- 100", n)
	}
}

// TestHostileAliases: alias names, models, pins, percentages and
// deprecation dates are checked where they enter, naming the field.
func TestHostileAliases(t *testing.T) {
	for _, c := range []struct {
		doc  string
		want string
	}{
		{"aliases: [{name: \"=cmd\", model: anthropic.x}]", "name"},
		{"aliases: [{name: claude, model: \"a b\"}]", "model"},
		{"aliases: [{name: claude, model: anthropic.x, rollout: {model: anthropic.y, percent: .nan}}]", "percent"},
		{"aliases: [{name: claude, model: anthropic.x, rollout: {model: anthropic.y, percent: 101}}]", "percent"},
		{"aliases: [{name: claude, model: anthropic.x, pins: {\"+x\": anthropic.x}}]", "pin"},
		{"aliases: [{name: claude, model: anthropic.x}, {name: claude, model: anthropic.y}]", "twice"},
		{"deprecations: [{model: anthropic.x, after: tomorrow}]", "after"},
		{"admins: [{id: \"@adm\", sha256: \"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\"}]", "key id"},
	} {
		path := filepath.Join(t.TempDir(), "tenants.yaml")
		if err := os.WriteFile(path, []byte("teams: [{id: a}]\n"+c.doc+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := tenants.OpenRegistry(path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one about %s", c.doc, err, c.want)
		}
	}
}
