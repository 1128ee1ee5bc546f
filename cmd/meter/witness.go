package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/reconcile"
)

// witnesses are the flags of meter reconcile for AWS's own records.
type witnesses struct {
	logs, bill, tolerance string
}

func witnessFlags(fs *flag.FlagSet) *witnesses {
	w := &witnesses{}
	fs.StringVar(&w.logs, "invocation-logs", "", "Bedrock model invocation logs (s3://BUCKET/PREFIX or file://DIR): tokens per request")
	fs.StringVar(&w.bill, "bill", "", "a CUR 2.0 data export in Parquet (s3://BUCKET/PREFIX or file://DIR): dollars per model and token type")
	fs.StringVar(&w.tolerance, "bill-tolerance", "0.01", "USD per model and day the bill may differ from the metered cost (exit status 4 beyond it)")
	return w
}

func (w *witnesses) apply(cfg *reconcile.Config) error {
	tol, err := decimal.NewFromString(w.tolerance)
	if err != nil || tol.IsNegative() {
		return usagef("--bill-tolerance %q: want a non-negative amount in USD, e.g. 0.01", w.tolerance)
	}
	cfg.InvocationLogs, cfg.Bill, cfg.BillTolerance = w.logs, w.bill, tol
	return nil
}

// reconcileExit runs the reconciliation and maps its outcome to exit statuses:
// 3 unmetered calls over the threshold, 4 bill differences beyond the
// tolerance, 5 no bill for the day yet (in that order when several apply).
func reconcileExit(ctx context.Context, cfg reconcile.Config, stdout io.Writer) error {
	res, err := reconcile.RunAll(ctx, cfg)
	var ue *reconcile.UnmeteredError
	var de *reconcile.BillDifferenceError
	var nb *reconcile.NoBillError
	isUE, isDE, isNB := errors.As(err, &ue), errors.As(err, &de), errors.As(err, &nb)
	if err != nil && !isUE && !isDE && !isNB {
		return err
	}
	fmt.Fprint(stdout, res.Human())
	switch {
	case isUE:
		return &exitError{code: 3, msg: ue.Error()}
	case isDE:
		return &exitError{code: 4, msg: de.Error()}
	case isNB:
		return &exitError{code: 5, msg: nb.Error()}
	}
	return nil
}
