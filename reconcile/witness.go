package reconcile

// RunAll: the day's usage against every witness configured: CloudTrail (every
// call metered), Bedrock's invocation logs (every token counted) and the bill
// (every dollar accounted for, and the actual cost allocated to teams).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// Result holds the report of each witness that was configured.
type Result struct {
	CloudTrail *aggregator.Report
	Tokens     *aggregator.TokenReport
	Bill       *aggregator.BillReport
	Allocation *aggregator.Allocation
	// NoBill is set when the bill does not cover the day yet.
	NoBill bool
}

// Human returns the reports' summaries for people.
func (r *Result) Human() string {
	var b strings.Builder
	if r.CloudTrail != nil {
		b.WriteString(r.CloudTrail.Human())
	}
	if r.Tokens != nil {
		b.WriteString(r.Tokens.Human())
	}
	if r.Bill != nil {
		b.WriteString(r.Bill.Human())
	}
	if r.Allocation != nil {
		fmt.Fprintf(&b, "allocated chargeback: %s USD of the bill over %d rows\n", r.Allocation.Total().StringFixed(2), len(r.Allocation.Rows))
	}
	return b.String()
}

// BillDifferenceError reports models whose billed cost differs from meter's
// list-price cost beyond the tolerance. The reports have been written.
type BillDifferenceError struct {
	Day       string
	Models    []string
	Tolerance decimal.Decimal
}

func (e *BillDifferenceError) Error() string {
	return fmt.Sprintf("bill %s: %d models differ from the metered cost by more than %s USD: %s", e.Day, len(e.Models), e.Tolerance, strings.Join(e.Models, ", "))
}

// NoBillError reports a bill that does not cover the day yet.
type NoBillError struct {
	Day, Location string
}

func (e *NoBillError) Error() string {
	return fmt.Sprintf("bill %s: no bill for the day yet in %s (CUR exports arrive up to a day or more late)", e.Day, e.Location)
}

func checkStoreURI(flag, uri string) error {
	if uri == "" {
		return nil
	}
	switch {
	case strings.HasPrefix(uri, "s3://") && len(uri) > len("s3://") && !strings.HasPrefix(uri, "s3:///"):
	case strings.HasPrefix(uri, "file://") && len(uri) > len("file://"):
	default:
		return fmt.Errorf("--%s location %q: want s3://BUCKET/PREFIX or file://DIR", flag, uri)
	}
	return nil
}

// openWitness opens a witness location as a store; a file:// location must exist.
func openWitness(ctx context.Context, flag, uri string, st store.Store) (store.Store, error) {
	if st != nil {
		return st, nil
	}
	if dir, ok := strings.CutPrefix(uri, "file://"); ok {
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			return nil, fmt.Errorf("--%s location %s: %s is not a directory", flag, uri, dir)
		}
	}
	s, err := store.Open(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("--%s location %s: %w", flag, uri, err)
	}
	return s, nil
}

// RunAll reconciles one day against every witness configured and writes each
// one's outputs: reconciliation-D.csv and summary.json (CloudTrail),
// tokens-D.csv (invocation logs), bill-D.csv, allocated-D.csv and
// allocated-manifest.json (bill). Its error joins *UnmeteredError,
// *BillDifferenceError and *NoBillError when they apply, after the outputs
// are written.
func RunAll(ctx context.Context, cfg Config) (Result, error) {
	var res Result
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	dayStart, _ := time.Parse(schemas.DayLayout, cfg.Day)
	if cfg.LoadUsage == nil {
		cfg.LoadUsage = StoreUsage(cfg.Store)
	}
	clock := cfg.Now
	if clock == nil {
		clock = time.Now
	}
	now := clock()
	if cfg.Margin <= 0 {
		cfg.Margin = time.Hour
	}
	from, to := dayStart.Add(-cfg.Margin), dayStart.Add(24*time.Hour+cfg.Margin)

	var usage []schemas.Event
	if cfg.CloudTrail != "" || cfg.InvocationLogs != "" || cfg.InvocationLogStore != nil {
		for _, d := range []time.Time{dayStart.Add(-24 * time.Hour), dayStart, dayStart.Add(24 * time.Hour)} {
			day := d.Format(schemas.DayLayout)
			evs, err := cfg.LoadUsage(ctx, day)
			if err != nil {
				return res, fmt.Errorf("reading usage events of %s: %w", day, err)
			}
			usage = append(usage, evs...)
		}
	}
	var errs []error
	if cfg.CloudTrail != "" {
		rep, err := runCloudTrail(ctx, cfg, usage, now, from, to)
		var ue *UnmeteredError
		if err != nil && !errors.As(err, &ue) {
			return res, err
		}
		res.CloudTrail = &rep
		if ue != nil {
			errs = append(errs, ue)
		}
	}
	if cfg.InvocationLogs != "" || cfg.InvocationLogStore != nil {
		rep, err := runTokens(ctx, cfg, usage, now, from, to)
		if err != nil {
			return res, err
		}
		res.Tokens = &rep
	}
	if cfg.Bill != "" || cfg.BillStore != nil {
		if err := runBill(ctx, cfg, &res); err != nil {
			var de *BillDifferenceError
			var nb *NoBillError
			if !errors.As(err, &de) && !errors.As(err, &nb) {
				return res, err
			}
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}

func runTokens(ctx context.Context, cfg Config, usage []schemas.Event, now, from, to time.Time) (aggregator.TokenReport, error) {
	st, err := openWitness(ctx, "invocation-logs", cfg.InvocationLogs, cfg.InvocationLogStore)
	if err != nil {
		return aggregator.TokenReport{}, err
	}
	logs, err := (&InvocationLogFiles{Store: st}).Read(ctx, from, to)
	if err != nil {
		return aggregator.TokenReport{}, err
	}
	rep, err := aggregator.ReconcileTokens(usage, logs.Records, logs.Issues, aggregator.TokenOptions{
		Day: cfg.Day, Now: now, DeliveryAllowance: cfg.DeliveryAllowance,
	})
	if err != nil {
		return rep, err
	}
	for _, status := range schemas.TokensStatuses {
		cfg.Metrics.Write(map[string]string{"stage": "reconciler", "status": status},
			[]metrics.Value{{Name: metrics.ReconcileTokenRows, Value: float64(rep.Counts[status]), Unit: "Count"}}, map[string]any{"day": cfg.Day})
	}
	var buf bytes.Buffer
	if err := rep.WriteCSV(&buf); err != nil {
		return rep, err
	}
	key := schemas.TokensCSVKey(cfg.Day)
	if err := cfg.Store.Put(ctx, key, bytes.NewReader(buf.Bytes())); err != nil {
		return rep, fmt.Errorf("writing %s: %w", key, err)
	}
	return rep, nil
}

// StoreDaily returns a loader of a day's compacted daily rows from st.
func StoreDaily(st store.Store) func(ctx context.Context, day string) ([]schemas.DailyRow, error) {
	return func(ctx context.Context, day string) ([]schemas.DailyRow, error) {
		key := schemas.DailyKey(day)
		data, err := store.ReadAll(ctx, st, key)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("no compacted day %s (%s): run `meter compact --day %s` before reconciling the bill", day, key, day)
			}
			return nil, err
		}
		rows, err := parquetio.ReadDaily(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", key, err)
		}
		return rows, nil
	}
}

func runBill(ctx context.Context, cfg Config, res *Result) error {
	st, err := openWitness(ctx, "bill", cfg.Bill, cfg.BillStore)
	if err != nil {
		return err
	}
	load := cfg.LoadDaily
	if load == nil {
		load = StoreDaily(cfg.Store)
	}
	daily, err := load(ctx, cfg.Day)
	if err != nil {
		return err
	}
	bill, err := (&CURExport{Store: st}).Read(ctx, cfg.Day)
	if err != nil {
		return err
	}
	if !bill.Covered {
		res.NoBill = true
		return &NoBillError{Day: cfg.Day, Location: cfg.Bill}
	}
	rep, err := aggregator.CompareBill(bill.Lines, daily, aggregator.BillOptions{Day: cfg.Day, Tolerance: cfg.BillTolerance, Models: cfg.UsageTypeModels})
	if err != nil {
		return err
	}
	res.Bill = &rep
	alloc := aggregator.Allocate(cfg.Day, daily, rep.BilledByModel)
	res.Allocation = &alloc

	var buf bytes.Buffer
	if err := rep.WriteCSV(&buf); err != nil {
		return err
	}
	if err := cfg.Store.Put(ctx, schemas.BillCSVKey(cfg.Day), bytes.NewReader(buf.Bytes())); err != nil {
		return fmt.Errorf("writing %s: %w", schemas.BillCSVKey(cfg.Day), err)
	}
	buf.Reset()
	if err := alloc.WriteCSV(&buf); err != nil {
		return err
	}
	// The CSV first, its manifest last: a manifest in the store means its CSV is complete.
	if err := cfg.Store.Put(ctx, schemas.AllocatedCSVKey(cfg.Day), bytes.NewReader(buf.Bytes())); err != nil {
		return fmt.Errorf("writing %s: %w", schemas.AllocatedCSVKey(cfg.Day), err)
	}
	man, err := json.MarshalIndent(allocationManifest(cfg.Day, bill, &rep, &alloc, cfg.UsageTypeModels), "", "  ")
	if err != nil {
		return err
	}
	if err := cfg.Store.Put(ctx, schemas.AllocatedManifestKey(cfg.Day), bytes.NewReader(append(man, '\n'))); err != nil {
		return fmt.Errorf("writing %s: %w", schemas.AllocatedManifestKey(cfg.Day), err)
	}
	diff, _ := rep.BilledTotal.Sub(rep.MeteredTotal).Float64()
	cfg.Metrics.Write(map[string]string{"stage": "reconciler"}, []metrics.Value{
		{Name: metrics.ReconcileBillDiffering, Value: float64(len(rep.Differing)), Unit: "Count"},
		{Name: metrics.ReconcileBillDifference, Value: diff, Unit: "None"},
	}, map[string]any{"day": cfg.Day})
	if rep.Differs() {
		return &BillDifferenceError{Day: cfg.Day, Models: rep.Differing, Tolerance: rep.Tolerance}
	}
	return nil
}

// allocationManifest lists what the allocation came from: the export's
// objects and, per model, its bill lines summed by usage type and line type.
func allocationManifest(day string, bill BillResult, rep *aggregator.BillReport, alloc *aggregator.Allocation, models map[string]string) schemas.AllocatedManifest {
	type lk struct{ model, ut, typ string }
	sums := map[lk]*schemas.AllocatedLine{}
	amounts := map[lk][2]decimal.Decimal{}
	if models == nil {
		models = aggregator.DefaultUsageTypeModels()
	}
	for i := range rep.Lines {
		l := &rep.Lines[i]
		bk, ok := aggregator.ClassifyLine(l, models)
		m := bk.ModelID
		if !ok {
			m = ""
		}
		k := lk{m, l.UsageType, l.LineItemType}
		if sums[k] == nil {
			sums[k] = &schemas.AllocatedLine{UsageType: l.UsageType, LineItemType: l.LineItemType}
		}
		sums[k].Lines++
		a := amounts[k]
		amounts[k] = [2]decimal.Decimal{a[0].Add(l.UsageAmount), a[1].Add(l.Cost)}
	}
	linesOf := func(model string) []schemas.AllocatedLine {
		var out []schemas.AllocatedLine
		for k, v := range sums {
			if k.model == model {
				v.UsageAmount, v.Cost = amounts[k][0].String(), amounts[k][1].String()
				out = append(out, *v)
			}
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].UsageType != out[j].UsageType {
				return out[i].UsageType < out[j].UsageType
			}
			return out[i].LineItemType < out[j].LineItemType
		})
		return out
	}
	man := schemas.AllocatedManifest{Day: day, Rule: aggregator.AllocationRule, BillInputs: bill.Objects}
	list := decimal.Zero
	for _, m := range alloc.Models {
		man.Models = append(man.Models, schemas.AllocatedModel{ModelID: m.ModelID, BilledCost: m.Billed.String(), Allocated: m.Distributed.StringFixed(2),
			ListCost: m.ListCost.String(), Rows: m.Rows, Lines: linesOf(m.ModelID)})
		list = list.Add(m.ListCost)
	}
	for _, m := range alloc.Unallocated {
		man.Unassigned = append(man.Unassigned, schemas.AllocatedModel{ModelID: m.ModelID, BilledCost: m.Billed.String(), Allocated: "0.00",
			Lines: linesOf(m.ModelID), Explanation: "billed, but no metered list-price cost of this model to allocate it by"})
	}
	if !rep.Unrecognized.IsZero() {
		man.Unassigned = append(man.Unassigned, schemas.AllocatedModel{ModelID: "", BilledCost: rep.Unrecognized.String(), Allocated: "0.00",
			Lines: linesOf(""), Explanation: "lines whose usage type names no token type or model meter knows"})
	}
	man.Totals = schemas.AllocatedTotalsDoc{BilledCost: rep.BilledTotal.String(), Allocated: alloc.Total().StringFixed(2), ListCost: list.String()}
	return man
}
