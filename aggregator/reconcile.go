package aggregator

// Reconciliation joins the metered usage of one day with CloudTrail's record of
// Bedrock calls on Bedrock's request id, to prove every call was metered. This
// file is pure: it takes events and returns a report; reading CloudTrail and the
// store lives in the collector.
//
// Decisions, so operators can read a report without the code:
//   - Usage events are deduplicated by request_id (the stream is at-least-once);
//     the earliest event (then the smallest event_id) stands for the call.
//   - `denied` events never reached Bedrock (the invoker refused them), so they
//     have no CloudTrail record and are left out of the usage side.
//   - `throttled`, `client_error` and `upstream_error` calls may or may not have
//     reached Bedrock (our own rate limit throttles before Bedrock; Bedrock's own
//     throttling and validation errors are in CloudTrail with an errorCode). They
//     take part in the join, so a CloudTrail record of a failed call matches
//     them; without one they are not reported as unconfirmed (absence proves
//     nothing, and they cost nothing) but counted in Skipped.
//   - A metered call with no CloudTrail record is `unconfirmed` only once it is
//     older than Now minus the delivery allowance; younger ones are counted as
//     pending, since CloudTrail delivers late.
//   - Model ids are compared as invoked. CloudTrail logs the modelId the caller
//     sent, so a cross-region profile (us.anthropic...) stays distinct from its
//     base model: a difference there is a real disagreement. Only the spelling
//     of one id is normalised: a foundation-model or inference-profile ARN equals
//     its bare id, and URL escapes are undone.
//   - Times agree when CloudTrail's event time (the request's arrival) falls
//     within the call as metered, [timestamp - latency_ms, timestamp], widened by
//     the time tolerance on both sides.
//   - A request id belongs to exactly one day: the UTC day of its usage event
//     when metered, else of its CloudTrail event, so daily reports add up and no
//     call is counted twice. Callers pass both sides from a window wider than
//     the day, so a call across midnight still meets its other half.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/meter-dev/meter/schemas"
)

// Reconciliation statuses (schemas.ReconciliationStatuses).
const (
	ReconcileMatched     = "matched"
	ReconcileUnmetered   = "unmetered"
	ReconcileUnconfirmed = "unconfirmed"
	ReconcileMismatched  = "mismatched"
)

// Skip reasons counted in Report.Skipped by Reconcile.
const (
	SkipUsageDenied           = "usage_denied"
	SkipUsageDuplicate        = "usage_duplicate"
	SkipUsageFailedUnrecorded = "usage_failed_without_cloudtrail"
	SkipCloudTrailDuplicate   = "cloudtrail_duplicate"
	SkipCloudTrailNoRequestID = "cloudtrail_without_request_id"
)

// Defaults of ReconcileOptions: CloudTrail usually delivers within 15 minutes,
// and the two sides' clocks and the call's own duration differ by seconds.
const (
	DefaultDeliveryAllowance = time.Hour
	DefaultTimeTolerance     = 5 * time.Minute
)

// TrailRecord is one CloudTrail record of a Bedrock runtime invocation, as the
// reconciliation needs it. The collector converts what it reads into these.
type TrailRecord struct {
	EventID         string
	RequestID       string
	EventName       string
	ModelID         string
	Region          string
	InferenceRegion string
	Caller          string
	ErrorCode       string
	EventTime       time.Time
}

// ReconcileOptions parameterise Reconcile.
type ReconcileOptions struct {
	// Day is the UTC day reconciled, YYYY-MM-DD.
	Day string
	// Now is the time of the run; metered calls younger than Now minus
	// DeliveryAllowance without a CloudTrail record are pending, not unconfirmed.
	Now time.Time
	// DeliveryAllowance is how late CloudTrail may deliver; default 1h.
	DeliveryAllowance time.Duration
	// TimeTolerance is the clock difference tolerated between the two sides;
	// default 5m.
	TimeTolerance time.Duration
}

// ReconciliationRow is one request id's line in the reconciliation report.
// TeamID, ModelID, EventTime and Operation describe the call as metered, or as
// CloudTrail saw it when it was not metered; the CloudTrail columns are always
// CloudTrail's own values.
type ReconciliationRow struct {
	RequestID           string
	Status              string
	TeamID              string
	ModelID             string
	EventTime           time.Time
	CloudTrailEventID   string
	CloudTrailEventTime time.Time
	CloudTrailModelID   string
	Operation           string
	Caller              string
	Detail              string
}

// Record renders the row in the order of schemas.ReconciliationColumns.
func (r *ReconciliationRow) Record() []string {
	// Text from CloudTrail (a caller's model id, ARN or error) is as hostile
	// as any: no cell may start a spreadsheet formula.
	text := schemas.NeutralizeCell
	return []string{
		text(r.RequestID), r.Status, text(r.TeamID), text(r.ModelID), formatOptionalTime(r.EventTime), text(r.CloudTrailEventID),
		formatOptionalTime(r.CloudTrailEventTime), text(r.CloudTrailModelID), text(r.Operation), text(r.Caller), text(r.Detail),
	}
}

func formatOptionalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return schemas.FormatTime(t)
}

// Report is the reconciliation of one day.
type Report struct {
	Day string
	// Now and DeliveryAllowance are the options the report was made with.
	Now               time.Time
	DeliveryAllowance time.Duration
	// Rows has one row per request id, sorted by request id.
	Rows []ReconciliationRow
	// Counts holds the number of rows of each status; every status is present.
	Counts map[string]int
	// UnmeteredFailed counts the unmetered rows whose CloudTrail record carries
	// an errorCode: failed calls nobody metered (they cost nothing).
	UnmeteredFailed int
	// Pending counts metered calls without a CloudTrail record that are still
	// within the delivery allowance; they have no row.
	Pending int
	// UsageEvents and TrailEvents count the inputs, before deduplication.
	UsageEvents int
	TrailEvents int
	// Skipped counts records left out of the join, per reason. Sources may add
	// their own reasons (records that were not Bedrock invocations, for example).
	Skipped map[string]int
}

// Reconcile joins metered usage with CloudTrail records on the request id.
// usage and trail may cover a wider window than the day; only request ids whose
// usage or CloudTrail time falls within the day are reported.
func Reconcile(usage []schemas.Event, trail []TrailRecord, opts ReconcileOptions) (Report, error) {
	dayStart, err := time.Parse(schemas.DayLayout, opts.Day)
	if err != nil {
		return Report{}, fmt.Errorf("day %q: want YYYY-MM-DD", opts.Day)
	}
	dayEnd := dayStart.Add(24 * time.Hour)
	if opts.DeliveryAllowance <= 0 {
		opts.DeliveryAllowance = DefaultDeliveryAllowance
	}
	if opts.TimeTolerance <= 0 {
		opts.TimeTolerance = DefaultTimeTolerance
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	rep := Report{
		Day: opts.Day, Now: opts.Now.UTC(), DeliveryAllowance: opts.DeliveryAllowance,
		Counts: map[string]int{}, Skipped: map[string]int{},
		UsageEvents: len(usage), TrailEvents: len(trail),
	}
	for _, s := range schemas.ReconciliationStatuses {
		rep.Counts[s] = 0
	}
	inDay := func(t time.Time) bool { return !t.IsZero() && !t.Before(dayStart) && t.Before(dayEnd) }

	metered := earliestByRequest(usage, rep.Skipped)

	recorded := map[string]*TrailRecord{}
	var orphans []*TrailRecord
	seenEventIDs := map[string]bool{}
	for i := range trail {
		t := &trail[i]
		if t.EventID != "" {
			if seenEventIDs[t.EventID] {
				rep.Skipped[SkipCloudTrailDuplicate]++
				continue
			}
			seenEventIDs[t.EventID] = true
		}
		if t.RequestID == "" {
			if inDay(t.EventTime) {
				rep.Skipped[SkipCloudTrailNoRequestID]++
				orphans = append(orphans, t)
			}
			continue
		}
		if prev, ok := recorded[t.RequestID]; ok {
			rep.Skipped[SkipCloudTrailDuplicate]++
			if !t.EventTime.Before(prev.EventTime) {
				continue
			}
		}
		recorded[t.RequestID] = t
	}

	ids := requestIDs(metered, recorded)
	cutoff := opts.Now.Add(-opts.DeliveryAllowance)
	for id := range ids {
		e, t := metered[id], recorded[id]
		if e != nil && !inDay(e.Timestamp) || e == nil && !inDay(t.EventTime) {
			continue
		}
		row := ReconciliationRow{RequestID: id}
		switch {
		case e != nil && t != nil:
			fillMetered(&row, e)
			fillTrail(&row, t)
			row.Status, row.Detail = compare(e, t, opts.TimeTolerance)
		case t != nil:
			fillTrail(&row, t)
			row.Status = ReconcileUnmetered
			row.TeamID, row.ModelID, row.EventTime, row.Operation = "", t.ModelID, t.EventTime, t.EventName
			row.Detail = "in CloudTrail only: no usage event for this request id"
			if t.ErrorCode != "" {
				row.Detail += "; the call failed with " + t.ErrorCode
				rep.UnmeteredFailed++
			}
		default:
			// A denial the invoker made itself never reached Bedrock, and other
			// failed calls may have been stopped before it: without a CloudTrail
			// record they cost nothing and are counted, not reported. Denials
			// Bedrock made (AccessDeniedException) have a record and are joined.
			if e.Status == schemas.StatusDenied {
				rep.Skipped[SkipUsageDenied]++
				continue
			}
			if e.Status != schemas.StatusSuccess {
				rep.Skipped[SkipUsageFailedUnrecorded]++
				continue
			}
			if e.Timestamp.After(cutoff) {
				rep.Pending++
				continue
			}
			fillMetered(&row, e)
			row.Status = ReconcileUnconfirmed
			row.Detail = fmt.Sprintf("metered, but CloudTrail has no record of it (delivery allowance of %s has passed)", opts.DeliveryAllowance)
		}
		rep.Counts[row.Status]++
		rep.Rows = append(rep.Rows, row)
	}
	for _, t := range orphans {
		row := ReconciliationRow{Status: ReconcileUnmetered, ModelID: t.ModelID, EventTime: t.EventTime, Operation: t.EventName}
		fillTrail(&row, t)
		row.Detail = "in CloudTrail without a request id, so it cannot be matched to a usage event"
		if t.ErrorCode != "" {
			row.Detail += "; the call failed with " + t.ErrorCode
			rep.UnmeteredFailed++
		}
		rep.Counts[row.Status]++
		rep.Rows = append(rep.Rows, row)
	}
	sort.Slice(rep.Rows, func(i, j int) bool {
		a, b := &rep.Rows[i], &rep.Rows[j]
		if a.RequestID != b.RequestID {
			return a.RequestID < b.RequestID
		}
		return a.CloudTrailEventID < b.CloudTrailEventID
	})
	return rep, nil
}

func earlierEvent(a, b *schemas.Event) bool {
	if !a.Timestamp.Equal(b.Timestamp) {
		return a.Timestamp.Before(b.Timestamp)
	}
	return a.EventID < b.EventID
}

func fillMetered(row *ReconciliationRow, e *schemas.Event) {
	row.TeamID, row.ModelID, row.EventTime, row.Operation = e.TeamID, e.ModelID, e.Timestamp.UTC(), e.Operation
}

func fillTrail(row *ReconciliationRow, t *TrailRecord) {
	row.CloudTrailEventID, row.CloudTrailEventTime, row.CloudTrailModelID = t.EventID, t.EventTime.UTC(), t.ModelID
	row.Caller = t.Caller
}

// compare decides between matched and mismatched for a call seen on both sides.
func compare(e *schemas.Event, t *TrailRecord, tolerance time.Duration) (string, string) {
	var problems, notes []string
	if !SameModel(e.ModelID, t.ModelID) {
		problems = append(problems, fmt.Sprintf("model differs: metered %q, CloudTrail %q", e.ModelID, t.ModelID))
	}
	start := e.Timestamp.Add(-time.Duration(e.LatencyMS) * time.Millisecond)
	if t.EventTime.Before(start.Add(-tolerance)) || t.EventTime.After(e.Timestamp.Add(tolerance)) {
		problems = append(problems, fmt.Sprintf("time differs: metered call %s..%s, CloudTrail %s (tolerance %s)",
			schemas.FormatTime(start), schemas.FormatTime(e.Timestamp), schemas.FormatTime(t.EventTime), tolerance))
	}
	if t.EventName != "" && e.Operation != t.EventName {
		notes = append(notes, fmt.Sprintf("operation metered as %s, CloudTrail %s", e.Operation, t.EventName))
	}
	switch {
	case t.ErrorCode != "" && e.Status == schemas.StatusSuccess:
		// Billed as a success, but Bedrock says the call failed.
		problems = append(problems, fmt.Sprintf("outcome differs: metered success, CloudTrail errorCode %s", t.ErrorCode))
	case t.ErrorCode == "" && e.Status != schemas.StatusSuccess:
		// Bedrock served the call, but it was metered as failed and not billed.
		problems = append(problems, fmt.Sprintf("outcome differs: metered %s, CloudTrail shows a successful call", e.Status))
	case t.ErrorCode != "":
		notes = append(notes, fmt.Sprintf("CloudTrail errorCode %s, metered status %s", t.ErrorCode, e.Status))
	}
	if len(problems) > 0 {
		return ReconcileMismatched, strings.Join(append(problems, notes...), "; ")
	}
	return ReconcileMatched, strings.Join(notes, "; ")
}

// SameModel reports whether two model ids name the same model as invoked: equal
// after undoing URL escapes and reducing foundation-model and inference-profile
// ARNs to their bare ids. Cross-region profile prefixes (us., eu., apac.,
// global.) are kept: a call through a profile and one to the base model differ.
func SameModel(a, b string) bool { return normalModelID(a) == normalModelID(b) }

func normalModelID(id string) string {
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	if strings.HasPrefix(id, "arn:") {
		for _, kind := range []string{":foundation-model/", ":inference-profile/"} {
			if i := strings.Index(id, kind); i >= 0 {
				return id[i+len(kind):]
			}
		}
	}
	return id
}

// WriteCSV writes the report's rows with a header of schemas.ReconciliationColumns.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(schemas.ReconciliationColumns); err != nil {
		return err
	}
	for i := range r.Rows {
		if err := cw.Write(r.Rows[i].Record()); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// Summary returns the report's counts.
func (r *Report) Summary() schemas.ReconciliationSummary {
	skipped := r.Skipped
	if skipped == nil {
		skipped = map[string]int{}
	}
	return schemas.ReconciliationSummary{
		Day: r.Day, Matched: r.Counts[ReconcileMatched], Unmetered: r.Counts[ReconcileUnmetered],
		Unconfirmed: r.Counts[ReconcileUnconfirmed], Mismatched: r.Counts[ReconcileMismatched],
		Rows: len(r.Rows), UnmeteredFailed: r.UnmeteredFailed, Pending: r.Pending,
		AsOf: schemas.FormatTime(r.Now), DeliveryAllowanceSec: int64(r.DeliveryAllowance / time.Second),
		UsageEvents: r.UsageEvents, CloudTrailEvents: r.TrailEvents, Skipped: skipped,
	}
}

// SummaryJSON returns summary.json: an indented JSON object with the count of
// each status, keys in a fixed order.
func (r *Report) SummaryJSON() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	_ = enc.Encode(r.Summary()) // a struct of strings, ints and a string-keyed map always encodes
	return buf.Bytes()
}

// Human returns a short summary for people, one line per fact.
func (r *Report) Human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reconciliation %s: %d matched, %d unmetered, %d unconfirmed, %d mismatched\n",
		r.Day, r.Counts[ReconcileMatched], r.Counts[ReconcileUnmetered], r.Counts[ReconcileUnconfirmed], r.Counts[ReconcileMismatched])
	if r.UnmeteredFailed > 0 {
		fmt.Fprintf(&b, "  %d of the unmetered calls failed at Bedrock (no cost)\n", r.UnmeteredFailed)
	}
	if r.Pending > 0 {
		fmt.Fprintf(&b, "  %d metered calls younger than %s are pending CloudTrail delivery\n", r.Pending, r.DeliveryAllowance)
	}
	shown := 0
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Status != ReconcileUnmetered {
			continue
		}
		if shown == 5 {
			fmt.Fprintf(&b, "  ... %d more unmetered\n", r.Counts[ReconcileUnmetered]-shown)
			break
		}
		fmt.Fprintf(&b, "  unmetered %s %s %s by %s\n", row.RequestID, formatOptionalTime(row.CloudTrailEventTime), row.CloudTrailModelID, row.Caller)
		shown++
	}
	return b.String()
}

// earliestByRequest keeps each request id's earliest usage event (the one a
// join matches), counting every later copy in skipped as a duplicate.
func earliestByRequest(usage []schemas.Event, skipped map[string]int) map[string]*schemas.Event {
	metered := map[string]*schemas.Event{}
	for i := range usage {
		e := &usage[i]
		if prev, ok := metered[e.RequestID]; ok {
			skipped[SkipUsageDuplicate]++
			if !earlierEvent(e, prev) {
				continue
			}
		}
		metered[e.RequestID] = e
	}
	return metered
}

// requestIDs is the union of the request ids of meter's events and of a
// witness's records: every id a join reports on.
func requestIDs[W any](metered map[string]*schemas.Event, witnessed map[string]W) map[string]bool {
	ids := make(map[string]bool, len(metered)+len(witnessed))
	for id := range metered {
		ids[id] = true
	}
	for id := range witnessed {
		ids[id] = true
	}
	return ids
}
