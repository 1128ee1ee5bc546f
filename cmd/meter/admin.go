package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/report"
)

// runAdmin manages admin keys, the keys of the admin API (/admin/, GET
// /report): add-key prints a new key once, alone on the last line.
func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("admin needs a subcommand: add-key, rotate-key, revoke-key or list")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("admin "+sub, stderr)
	tenantsPath := fs.String("tenants", "", "tenant registry YAML")
	switch sub {
	case "add-key":
		if err := parse(fs, args, stdout); err != nil {
			return err
		}
		if err := need("tenants", *tenantsPath); err != nil {
			return err
		}
		key, id, err := tenants.AddAdminKey(*tenantsPath, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added admin key %s to %s; it is shown once, below:\n%s\n", id, *tenantsPath, key)
		return nil
	case "rotate-key":
		keyID := fs.String("key-id", "", "id of the admin key to replace (see meter admin list)")
		grace := fs.Duration("grace", tenants.DefaultGrace, "how long the old key keeps working (0: it ends at once)")
		if err := parse(fs, args, stdout); err != nil {
			return err
		}
		if err := need("tenants", *tenantsPath, "key-id", *keyID); err != nil {
			return err
		}
		if *grace < 0 {
			return usagef("--grace must not be negative")
		}
		key, id, err := tenants.RotateAdminKey(*tenantsPath, *keyID, *grace, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "new admin key %s; key %s %s; the key is shown once, below:\n%s\n", id, *keyID, graceWords(*grace), key)
		return nil
	case "revoke-key":
		keyID := fs.String("key-id", "", "id of the admin key to revoke")
		if err := parse(fs, args, stdout); err != nil {
			return err
		}
		if err := need("tenants", *tenantsPath, "key-id", *keyID); err != nil {
			return err
		}
		if err := tenants.RevokeAdminKey(*tenantsPath, *keyID); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked admin key %s\n", *keyID)
		return nil
	case "list":
		if err := parse(fs, args, stdout); err != nil {
			return err
		}
		if err := need("tenants", *tenantsPath); err != nil {
			return err
		}
		keys, err := tenants.ListAdminKeys(*tenantsPath)
		if err != nil {
			return err
		}
		printKeys(stdout, keys)
		return nil
	}
	return usagef("unknown admin subcommand %q: want add-key, rotate-key, revoke-key or list", sub)
}

// graceWords says what a rotation did to the other keys.
func graceWords(grace time.Duration) string {
	if grace == 0 {
		return "ended at once"
	}
	return "keep working for " + grace.String()
}

// printKeys prints one line per key: id, state, created, expiry, last use.
func printKeys(w io.Writer, keys []tenants.KeyInfo) {
	for _, k := range keys {
		expires, used := "-", "never"
		if k.Expires != nil {
			expires = k.Expires.UTC().Format(time.RFC3339)
		}
		if k.LastUsed != nil {
			used = k.LastUsed.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  key %-18s %-8s created %s  expires %-20s  last used %s\n",
			k.ID, k.State, k.Created.UTC().Format(time.RFC3339), expires, used)
	}
}

func onlyTeam(teams []tenants.TeamInfo, id string) []tenants.TeamInfo {
	for _, t := range teams {
		if t.ID == id {
			return []tenants.TeamInfo{t}
		}
	}
	return nil
}

// reportFunc serves GET /report from st: the month's finance page, with
// the teams' budgets from the tenants file.
func reportFunc(st store.Store, storeURI, tenantsPath string) invoker.ReportFunc {
	return func(ctx context.Context, month string) ([]byte, error) {
		m, err := time.Parse("2006-01", month)
		if err != nil {
			return nil, err
		}
		cfg := report.Config{Store: st, From: m.Format(time.DateOnly), To: m.AddDate(0, 1, -1).Format(time.DateOnly), StoreURI: storeURI}
		if b, err := budgets(tenantsPath); err == nil {
			cfg.Budgets = b
		}
		rep, err := report.Build(ctx, cfg)
		if errors.Is(err, report.ErrNoData) {
			return nil, fmt.Errorf("%w: %v", invoker.ErrNoReport, err)
		}
		if err != nil {
			return nil, err
		}
		var page bytes.Buffer
		if err := rep.Write(&page); err != nil {
			return nil, err
		}
		return page.Bytes(), nil
	}
}
