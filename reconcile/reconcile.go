// Package reconcile proves a day's metered usage against CloudTrail's record
// of Bedrock calls (`meter reconcile`): it reads the day's usage events from
// the store and CloudTrail's Bedrock invocations around it (trail files or
// LookupEvents), joins them with the aggregator's reconcile join, and writes
// the report and its summary.
package reconcile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// Config configures Run.
type Config struct {
	// Day is the UTC day to reconcile, YYYY-MM-DD.
	Day string
	// Store holds the usage events and receives the report.
	Store store.Store
	// CloudTrail is the --cloudtrail location: lookup, s3://BUCKET/PREFIX or file://DIR.
	CloudTrail string
	// TrailStore holds the trail files when CloudTrail is s3:// or file://;
	// nil opens CloudTrail with store.Open.
	TrailStore store.Store
	// Lookup is the LookupEvents client for `lookup`; nil builds one from the
	// environment the standard SDK way (AWS_REGION, AWS_ENDPOINT_URL_CLOUDTRAIL, ...).
	Lookup LookupEventsAPI
	// LookupCallsPerSecond paces LookupEvents; default DefaultLookupCallsPerSecond.
	LookupCallsPerSecond float64
	// LoadUsage returns the usage events of one day's events/dt=DAY/ partition,
	// duplicates included, and no error for a day without a partition; nil
	// means StoreUsage(Store).
	LoadUsage func(ctx context.Context, day string) ([]schemas.Event, error)
	// Threshold is the number of unmetered calls tolerated before Run
	// returns an *UnmeteredError; negative disables the check.
	Threshold int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// DeliveryAllowance and TimeTolerance: see aggregator.ReconcileOptions.
	DeliveryAllowance time.Duration
	TimeTolerance     time.Duration
	// Margin widens the window read on each side of the day, so calls across
	// midnight meet their other half; default 1h.
	Margin time.Duration
	// Metrics, when set, receives the report's counts as CloudWatch EMF
	// lines (a reconciler Lambda's stdout).
	Metrics *metrics.EMF

	// InvocationLogs is the --invocation-logs location (s3://BUCKET/PREFIX or
	// file://DIR) of Bedrock model invocation logs: the token witness.
	// InvocationLogStore, when set, is opened instead of it.
	InvocationLogs     string
	InvocationLogStore store.Store
	// Bill is the --bill location of a CUR 2.0 data export (s3:// or
	// file://): the dollar witness. BillStore, when set, is opened instead.
	Bill      string
	BillStore store.Store
	// BillTolerance is the difference in USD per model and day beyond which
	// the bill differs; zero means aggregator.DefaultBillTolerance.
	BillTolerance decimal.Decimal
	// UsageTypeModels maps CUR usage-type model names to model ids; nil means
	// aggregator.DefaultUsageTypeModels.
	UsageTypeModels map[string]string
	// LoadDaily returns the compacted daily rows of a day; nil reads
	// daily/dt=DAY/ from Store.
	LoadDaily func(ctx context.Context, day string) ([]schemas.DailyRow, error)
}

// UnmeteredError reports more unmetered calls than the threshold allows. The
// report has been written when it is returned.
type UnmeteredError struct {
	Day       string
	Unmetered int
	Threshold int
}

func (e *UnmeteredError) Error() string {
	return fmt.Sprintf("reconciliation %s: %d unmetered Bedrock calls (threshold %d)", e.Day, e.Unmetered, e.Threshold)
}

// LookupRetention is how far back LookupEvents can see.
const LookupRetention = 90 * 24 * time.Hour

// Validate reports the first thing wrong with cfg; zero values take defaults.
func (cfg *Config) Validate() error {
	if _, err := time.Parse(schemas.DayLayout, cfg.Day); err != nil {
		return fmt.Errorf("day %q: want YYYY-MM-DD", cfg.Day)
	}
	if cfg.Store == nil {
		return errors.New("reconcile: no store (Config.Store)")
	}
	if cfg.CloudTrail == "" && cfg.InvocationLogs == "" && cfg.Bill == "" && cfg.InvocationLogStore == nil && cfg.BillStore == nil {
		return errors.New("reconcile: nothing to reconcile against: give --cloudtrail, --invocation-logs or --bill")
	}
	if cfg.CloudTrail != "" {
		if _, err := ParseCloudTrailURI(cfg.CloudTrail); err != nil {
			return err
		}
	}
	for flag, uri := range map[string]string{"invocation-logs": cfg.InvocationLogs, "bill": cfg.Bill} {
		if err := checkStoreURI(flag, uri); err != nil {
			return err
		}
	}
	if cfg.BillTolerance.IsNegative() {
		return errors.New("reconcile: the bill tolerance cannot be negative")
	}
	if cfg.LookupCallsPerSecond < 0 || cfg.Margin < 0 || cfg.DeliveryAllowance < 0 || cfg.TimeTolerance < 0 {
		return errors.New("reconcile: LookupCallsPerSecond, Margin, DeliveryAllowance and TimeTolerance cannot be negative")
	}
	return nil
}

// Run reconciles one day against CloudTrail and returns its report; with
// invocation logs or a bill configured it proves those too (see RunAll) and
// returns their errors, but only the CloudTrail report.
func Run(ctx context.Context, cfg Config) (aggregator.Report, error) {
	res, err := RunAll(ctx, cfg)
	if res.CloudTrail == nil {
		return aggregator.Report{}, err
	}
	return *res.CloudTrail, err
}

// runCloudTrail reconciles one day against CloudTrail: it reads the usage events of the day and the
// days either side (for calls across midnight) and CloudTrail's Bedrock
// invocations from the day widened by Margin, writes
// reconciliation/dt=DAY/reconciliation-DAY.csv and summary.json, and returns the
// report. With more unmetered calls than Threshold it returns the report and an
// *UnmeteredError.
func runCloudTrail(ctx context.Context, cfg Config, usage []schemas.Event, now, from, to time.Time) (aggregator.Report, error) {
	if cfg.CloudTrail == TrailKindLookup && from.Before(now.Add(-LookupRetention)) {
		return aggregator.Report{}, fmt.Errorf("day %s: LookupEvents keeps only the last 90 days; read the trail files (s3://BUCKET/PREFIX) instead", cfg.Day)
	}
	reader, err := trailReader(ctx, cfg)
	if err != nil {
		return aggregator.Report{}, err
	}

	trail, err := reader.ReadTrail(ctx, from, to)
	if err != nil {
		return aggregator.Report{}, err
	}
	records := make([]aggregator.TrailRecord, len(trail.Events))
	for i := range trail.Events {
		records[i] = trail.Events[i].Record()
	}

	rep, err := aggregator.Reconcile(usage, records, aggregator.ReconcileOptions{
		Day: cfg.Day, Now: now, DeliveryAllowance: cfg.DeliveryAllowance, TimeTolerance: cfg.TimeTolerance,
	})
	if err != nil {
		return aggregator.Report{}, err
	}
	for reason, n := range trail.Skipped {
		rep.Skipped[reason] += n
	}

	reportKey, summaryKey := schemas.ReconciliationKeys(cfg.Day)
	var csvBuf bytes.Buffer
	if err := rep.WriteCSV(&csvBuf); err != nil {
		return rep, fmt.Errorf("rendering %s: %w", reportKey, err)
	}
	// The report first, the summary last: a summary in the store means its report is complete.
	if err := cfg.Store.Put(ctx, reportKey, bytes.NewReader(csvBuf.Bytes())); err != nil {
		return rep, fmt.Errorf("writing %s: %w", reportKey, err)
	}
	if err := cfg.Store.Put(ctx, summaryKey, bytes.NewReader(rep.SummaryJSON())); err != nil {
		return rep, fmt.Errorf("writing %s: %w", summaryKey, err)
	}
	for _, status := range schemas.ReconciliationStatuses {
		cfg.Metrics.Write(map[string]string{"stage": "reconciler", "status": status},
			[]metrics.Value{{Name: metrics.ReconcileRows, Value: float64(rep.Counts[status]), Unit: "Count"}}, map[string]any{"day": cfg.Day})
	}
	cfg.Metrics.Write(map[string]string{"stage": "reconciler"},
		[]metrics.Value{{Name: metrics.ReconcileUnmetered, Value: float64(rep.Counts[aggregator.ReconcileUnmetered]), Unit: "Count"}},
		map[string]any{"day": cfg.Day})

	if n := rep.Counts[aggregator.ReconcileUnmetered]; cfg.Threshold >= 0 && n > cfg.Threshold {
		return rep, &UnmeteredError{Day: cfg.Day, Unmetered: n, Threshold: cfg.Threshold}
	}
	return rep, nil
}

func trailReader(ctx context.Context, cfg Config) (TrailReader, error) {
	kind, err := ParseCloudTrailURI(cfg.CloudTrail)
	if err != nil {
		return nil, err
	}
	if kind != TrailKindLookup {
		st := cfg.TrailStore
		if st == nil {
			if kind == TrailKindFile {
				// Opening a file store creates its directory; a trail must already exist.
				dir := strings.TrimPrefix(cfg.CloudTrail, "file://")
				if info, err := os.Stat(dir); err != nil || !info.IsDir() {
					return nil, fmt.Errorf("cloudtrail location %s: %s is not a directory", cfg.CloudTrail, dir)
				}
			}
			if st, err = store.Open(ctx, cfg.CloudTrail); err != nil {
				return nil, fmt.Errorf("cloudtrail location %s: %w", cfg.CloudTrail, err)
			}
		}
		return &TrailFiles{Store: st}, nil
	}
	client := cfg.Lookup
	if client == nil {
		awsCfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("loading AWS configuration for CloudTrail: %w", err)
		}
		client = cloudtrail.NewFromConfig(awsCfg)
	}
	return &TrailLookup{Client: client, CallsPerSecond: cfg.LookupCallsPerSecond}, nil
}

// StoreUsage returns a loader of the raw usage events of a day: every Parquet
// file under events/dt=DAY/ in st, duplicates included. A day without files
// has no events.
func StoreUsage(st store.Store) func(ctx context.Context, day string) ([]schemas.Event, error) {
	return func(ctx context.Context, day string) ([]schemas.Event, error) {
		objs, err := st.List(ctx, schemas.Partition(schemas.EventsPrefix, day))
		if err != nil {
			return nil, fmt.Errorf("listing usage events of %s: %w", day, err)
		}
		var events []schemas.Event
		for _, o := range objs {
			if !strings.HasSuffix(o.Key, ".parquet") {
				continue
			}
			data, err := store.ReadAll(ctx, st, o.Key)
			if err != nil {
				return nil, err
			}
			rows, err := parquetio.ReadEvents(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", o.Key, err)
			}
			for i := range rows {
				events = append(events, rows[i].Event())
			}
		}
		return events, nil
	}
}
