package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/internal/atomicfile"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/report"
	"github.com/meter-dev/meter/schemas"
)

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report", stderr)
	storeURI := fs.String("store", "", "store holding the chargeback: file://DIR or s3://BUCKET/PREFIX")
	month := fs.String("month", "", "the month to report, YYYY-MM (UTC)")
	from := fs.String("from", "", "first day of the period, YYYY-MM-DD (instead of --month)")
	to := fs.String("to", "", "last day of the period, YYYY-MM-DD")
	tenantsPath := fs.String("tenants", "", "tenant registry: shows each team's spend against its monthly budget")
	out := fs.String("out", "", "write the page to this file (default: stdout)")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if err := need("store", *storeURI); err != nil {
		return err
	}
	switch {
	case *month != "" && (*from != "" || *to != ""):
		return usagef("--month or --from/--to, not both")
	case *month != "":
		m, err := time.Parse("2006-01", *month)
		if err != nil {
			return usagef("--month %q: want YYYY-MM", *month)
		}
		*from, *to = m.Format(schemas.DayLayout), m.AddDate(0, 1, -1).Format(schemas.DayLayout)
	case *from == "" || *to == "":
		return usagef("flag --month (or --from and --to) is required")
	}
	st, err := openStore(ctx, *storeURI)
	if err != nil {
		return err
	}
	cfg := report.Config{Store: st, From: *from, To: *to, StoreURI: *storeURI}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	if *tenantsPath != "" {
		if cfg.Budgets, err = budgets(*tenantsPath); err != nil {
			return usagef("%v", errShort(err))
		}
	}
	rep, err := report.Build(ctx, cfg)
	if errors.Is(err, report.ErrNoData) {
		return &exitError{code: 1, msg: err.Error()}
	}
	if err != nil {
		return err
	}
	var page bytes.Buffer
	if err := rep.Write(&page); err != nil {
		return err
	}
	if *out == "" {
		_, err := stdout.Write(page.Bytes())
		return err
	}
	if err := atomicfile.Write(*out, &page, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", *out, errShort(err))
	}
	fmt.Fprintf(stderr, "report of %s to %s (%d days with a chargeback, total %s USD) written to %s\n", *from, *to, len(rep.Days), rep.Total, *out)
	return nil
}

// budgets reads the teams' monthly budgets from the tenant registry.
func budgets(path string) (map[string]decimal.Decimal, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	teams, err := tenants.ListTeams(path)
	if err != nil {
		return nil, err
	}
	out := map[string]decimal.Decimal{}
	for _, t := range teams {
		if t.MonthlyBudgetUSD == "" {
			continue
		}
		d, err := decimal.NewFromString(t.MonthlyBudgetUSD)
		if err != nil {
			return nil, fmt.Errorf("team %s: monthly_budget_usd %q", t.ID, t.MonthlyBudgetUSD)
		}
		out[t.ID] = d
	}
	return out, nil
}
