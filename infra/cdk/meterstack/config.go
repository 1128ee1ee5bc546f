// Package meterstack is meter's AWS deployment as a CDK stack: the usage
// stream, the store bucket, the Glue tables and Athena workgroup, the four
// Lambda functions (invoker, collector, compactor, reconciler) with their
// triggers and least-privilege roles, the CloudTrail trail, and the alarms.
// New builds it from a validated Config; tests read the synthesized template
// with CDK's assertions package, with no CLI and no account.
package meterstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"regexp"
	"strings"

	"github.com/meter-dev/meter/schemas"
)

// Config is what an operator chooses for one deployment. It comes from a JSON
// file (infra/cdk/meter.json, see meter.example.json) or from CDK context
// (-c meter:config=FILE); Validate names every field that is wrong.
type Config struct {
	// Account and Region the stack deploys to (12 digits; e.g. us-east-1).
	Account string `json:"account"`
	Region  string `json:"region"`
	// StackName defaults to "Meter".
	StackName string `json:"stack_name,omitempty"`
	// Models is the allow-list the invoker's role may call: foundation model
	// ids (anthropic.claude-3-5-haiku-20241022-v1:0), a family ending in *
	// (anthropic.claude-3*), cross-region inference profile ids
	// (us.anthropic.claude-3-5-haiku-20241022-v1:0) or inference profile ARNs.
	// Teams are then allowed models in the tenants file, within this list.
	Models []string `json:"models"`
	// TenantAdmins are the IAM principal ARNs (roles or users) that may write
	// the tenants file; everyone else is denied by the bucket policy.
	TenantAdmins []string `json:"tenant_admins"`
	// RawEventsDays keeps raw events (store/events/) this many days (default 400).
	RawEventsDays int `json:"raw_events_days,omitempty"`
	// SpillDays keeps spilled usage events (spill/) this many days (default 14).
	SpillDays int `json:"spill_days,omitempty"`
	// StreamRetentionHours: how far back replay can read the stream (default 168, at most 8760).
	StreamRetentionHours int `json:"stream_retention_hours,omitempty"`
	// LogDays keeps the functions' logs this many days (default 30).
	LogDays int `json:"log_days,omitempty"`
	// AlarmEmail receives the alarms (empty: the alarms' SNS topic has no subscriber).
	AlarmEmail string `json:"alarm_email,omitempty"`
	// CloudTrail is where the reconciler reads Bedrock calls: "create" (a
	// trail of this stack, the default), "lookup" (the LookupEvents API, 90
	// days, no trail needed) or s3://BUCKET/PREFIX of an existing trail.
	CloudTrail string `json:"cloudtrail,omitempty"`
	// WindowSeconds is the collector's tumbling window (default 300, 1..900).
	WindowSeconds int `json:"window_seconds,omitempty"`
	// CompactSchedule and ReconcileSchedule are EventBridge cron expressions
	// (defaults: 02:30 and 04:00 UTC, after the day's grace period for late events).
	CompactSchedule   string `json:"compact_schedule,omitempty"`
	ReconcileSchedule string `json:"reconcile_schedule,omitempty"`
	// AthenaScanLimitBytes caps what one query of the workgroup may scan (default 100 GB).
	AthenaScanLimitBytes int64 `json:"athena_scan_limit_bytes,omitempty"`
	// AthenaAboveEvents: the compactor hands a day with more raw events than
	// this to Athena (METER_ATHENA_ABOVE_EVENTS; default 50,000,000).
	AthenaAboveEvents int64 `json:"athena_above_events,omitempty"`
	// CustomPrices: the invoker (budgets) and the compactor read the price file
	// s3://BUCKET/config/prices.csv, which the tenant admins upload; false uses
	// the price file shipped in the binaries.
	CustomPrices bool `json:"custom_prices,omitempty"`
	// UnmeteredThreshold: the unmetered-calls alarm fires above this many a day (default 0).
	UnmeteredThreshold int `json:"unmetered_threshold,omitempty"`
	// AssetsDir holds one folder per function (invoker, collector, compactor,
	// reconciler), each with its bootstrap built for linux/arm64. Set by the
	// app after building them; not read from the file.
	AssetsDir string `json:"-"`
}

var (
	accountRE  = regexp.MustCompile(`^[0-9]{12}$`)
	regionRE   = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$`)
	stackRE    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{0,63}$`)
	principalR = regexp.MustCompile(`^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:(role|user|assumed-role)/[A-Za-z0-9+=,.@_/-]+$`)
	modelRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9.:_-]*\*?$`)
	profileARN = regexp.MustCompile(`^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:[0-9]{12}:(application-)?inference-profile/[A-Za-z0-9.:_-]+$`)
	cronRE     = regexp.MustCompile(`^cron\([^()]+\)$`)
)

// Cross-region inference profile prefixes; a profile bills as its base model.
var profilePrefixes = []string{"us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca."}

// LoadConfig reads a JSON config file; unknown fields are refused.
func LoadConfig(path string) (Config, error) {
	var cfg Config
	f, err := os.Open(path)
	if err != nil {
		return cfg, fmt.Errorf("meter config: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("meter config %s: %w", path, err)
	}
	return cfg, nil
}

// WithDefaults returns cfg with every unset optional field at its default.
func (cfg Config) WithDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.RawEventsDays, 400)
	def(&cfg.SpillDays, 14)
	def(&cfg.StreamRetentionHours, 168)
	def(&cfg.LogDays, 30)
	def(&cfg.WindowSeconds, 300)
	if cfg.StackName == "" {
		cfg.StackName = "Meter"
	}
	if cfg.CloudTrail == "" {
		cfg.CloudTrail = "create"
	}
	if cfg.CompactSchedule == "" {
		cfg.CompactSchedule = "cron(30 2 * * ? *)"
	}
	if cfg.ReconcileSchedule == "" {
		cfg.ReconcileSchedule = "cron(0 4 * * ? *)"
	}
	if cfg.AthenaScanLimitBytes == 0 {
		cfg.AthenaScanLimitBytes = 100 << 30
	}
	if cfg.AthenaAboveEvents == 0 {
		cfg.AthenaAboveEvents = 50_000_000
	}
	return cfg
}

// Validate reports everything wrong with cfg (after defaults), one line per field.
func (cfg Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if !accountRE.MatchString(cfg.Account) {
		bad("account", "%q is not a 12-digit AWS account id", cfg.Account)
	}
	if !regionRE.MatchString(cfg.Region) {
		bad("region", "%q is not an AWS region such as us-east-1", cfg.Region)
	}
	if !stackRE.MatchString(cfg.StackName) {
		bad("stack_name", "%q: want a letter, then letters, digits and -, at most 64", cfg.StackName)
	}
	if len(cfg.Models) == 0 {
		bad("models", "the allow-list is empty: name at least one model the invoker may call")
	}
	for _, m := range cfg.Models {
		if err := checkModel(m); err != nil {
			bad("models", "%v", err)
		}
	}
	if len(cfg.TenantAdmins) == 0 {
		bad("tenant_admins", "name at least one IAM role or user ARN that may write the tenants file")
	}
	for _, p := range cfg.TenantAdmins {
		if !principalR.MatchString(p) {
			bad("tenant_admins", "%q is not an IAM role or user ARN (arn:aws:iam::ACCOUNT:role/NAME)", p)
		}
	}
	for _, f := range []struct {
		name      string
		v, lo, hi int
	}{
		{"raw_events_days", cfg.RawEventsDays, 1, 3650}, {"spill_days", cfg.SpillDays, 1, 365},
		{"stream_retention_hours", cfg.StreamRetentionHours, 24, 8760}, {"window_seconds", cfg.WindowSeconds, 1, 900},
		{"unmetered_threshold", cfg.UnmeteredThreshold, 0, 1 << 30},
	} {
		if f.v < f.lo || f.v > f.hi {
			bad(f.name, "%d is outside %d..%d", f.v, f.lo, f.hi)
		}
	}
	if !validLogDays[cfg.LogDays] {
		bad("log_days", "%d is not a CloudWatch Logs retention (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, ...)", cfg.LogDays)
	}
	if (86400 % cfg.WindowSeconds) != 0 {
		bad("window_seconds", "%d does not divide a day (e.g. 60, 300, 900)", cfg.WindowSeconds)
	}
	if cfg.AlarmEmail != "" {
		if a, err := mail.ParseAddress(cfg.AlarmEmail); err != nil || a.Address != cfg.AlarmEmail {
			bad("alarm_email", "%q is not an e-mail address", cfg.AlarmEmail)
		}
	}
	switch ct := cfg.CloudTrail; {
	case ct == "create", ct == "lookup":
	case strings.HasPrefix(ct, "s3://") && len(strings.SplitN(strings.TrimPrefix(ct, "s3://"), "/", 2)[0]) >= 3:
	default:
		bad("cloudtrail", "%q: want create, lookup or s3://BUCKET/PREFIX of an existing trail", ct)
	}
	for name, c := range map[string]string{"compact_schedule": cfg.CompactSchedule, "reconcile_schedule": cfg.ReconcileSchedule} {
		if !cronRE.MatchString(c) {
			bad(name, "%q: want an EventBridge cron(...) expression", c)
		}
	}
	if cfg.AthenaScanLimitBytes < 10<<20 {
		bad("athena_scan_limit_bytes", "%d is below Athena's minimum of 10 MB", cfg.AthenaScanLimitBytes)
	}
	if cfg.AthenaAboveEvents < 1 {
		bad("athena_above_events", "%d: want a positive number of events", cfg.AthenaAboveEvents)
	}
	return errors.Join(errs...)
}

var validLogDays = map[int]bool{1: true, 3: true, 5: true, 7: true, 14: true, 30: true, 60: true, 90: true, 120: true, 150: true,
	180: true, 365: true, 400: true, 545: true, 731: true, 1096: true, 1827: true, 2192: true, 2557: true, 2922: true, 3288: true, 3653: true}

func checkModel(m string) error {
	if profileARN.MatchString(m) {
		return nil
	}
	if !modelRE.MatchString(m) || len(m) > 256 {
		return fmt.Errorf("%q is neither a model id (letters, digits, .:_-, an optional trailing *) nor an inference profile ARN", m)
	}
	if m == "*" || strings.Count(m, "*") > 1 || !strings.Contains(strings.TrimSuffix(m, "*"), ".") {
		return fmt.Errorf("%q is too wide: name a provider and a family at least (anthropic.claude-3*)", m)
	}
	if strings.TrimSuffix(m, "*") == m {
		if err := schemas.CheckModelID(m); err != nil {
			return err
		}
	}
	return nil
}

// modelARNs returns the resource ARNs the invoker may invoke for one allow-list
// entry: a foundation model in the stack's region, or a cross-region
// inference profile in the account plus its base model in every region the
// profile routes to (Bedrock authorizes both).
func modelARNs(partition, region, account, m string) []string {
	if strings.HasPrefix(m, "arn:") {
		return []string{m}
	}
	for _, p := range profilePrefixes {
		if base, ok := strings.CutPrefix(m, p); ok && strings.Contains(base, ".") {
			return []string{
				fmt.Sprintf("arn:%s:bedrock:%s:%s:inference-profile/%s", partition, region, account, m),
				fmt.Sprintf("arn:%s:bedrock:*::foundation-model/%s", partition, base),
			}
		}
	}
	return []string{fmt.Sprintf("arn:%s:bedrock:%s::foundation-model/%s", partition, region, m)}
}
