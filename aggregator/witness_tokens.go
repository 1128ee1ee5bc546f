package aggregator

// The token witness: Bedrock's model invocation logs carry, per request id, the
// token counts Bedrock itself counted (and the request metadata the invoker
// attached). ReconcileTokens joins them with the usage events of a day, so a
// report says per request whether meter's counts equal Bedrock's. Pure: the
// reconcile stage reads the log objects and hands over records.
//
// The rules follow the CloudTrail join (Reconcile): usage deduplicated by
// request id (earliest event), denied calls left out, failed calls without a
// log record counted not reported, a request id belongs to the UTC day of its
// usage event (else of its log record), and metered calls younger than the
// delivery allowance without a record are pending.

import (
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meter-dev/meter/schemas"
)

// Tokens statuses (schemas.TokensStatuses).
const (
	TokensMatched     = "matched"
	TokensMismatched  = "mismatched"
	TokensUnmetered   = "unmetered"
	TokensUnconfirmed = "unconfirmed"
	TokensUnreadable  = "unreadable"
)

// LogRecord is one invocation log record as the join needs it, with where it
// was read (object key and line).
type LogRecord struct {
	RequestID  string
	ModelID    string
	Operation  string
	ErrorCode  string
	Time       time.Time
	Input      int64
	Output     int64
	CacheRead  int64
	CacheWrite int64
	Metadata   map[string]string
	Key        string
	Line       int
}

// LogIssue is a part of a log object that could not be read: a malformed line,
// a record without a request id, or an object cut short.
type LogIssue struct {
	Key    string
	Line   int
	Reason string
}

// TokenOptions parameterise ReconcileTokens.
type TokenOptions struct {
	Day               string
	Now               time.Time
	DeliveryAllowance time.Duration // default DefaultDeliveryAllowance
}

// TokenRow is one request id's line in tokens-D.csv, or one unreadable part of
// a log object (Status TokensUnreadable, no request id).
type TokenRow struct {
	RequestID, Status, TeamID, CostCenter, ModelID, EventID string
	EventTime, LogTime                                      time.Time
	Metered, Logged                                         *TokenCounts
	LogKey                                                  string
	LogLine                                                 int
	Detail                                                  string
}

// TokenCounts are one request's tokens by type.
type TokenCounts struct{ Input, Output, CacheRead, CacheWrite int64 }

// TokenReport is the invocation-log reconciliation of one day.
type TokenReport struct {
	Day     string
	Rows    []TokenRow
	Counts  map[string]int
	Pending int
	// UsageEvents and LogRecords count the inputs before deduplication.
	UsageEvents, LogRecords int
	Skipped                 map[string]int
}

// Skip reasons of ReconcileTokens.
const (
	SkipLogDuplicate = "log_duplicate"
)

// ReconcileTokens joins usage events with invocation log records on the
// request id. issues are the unreadable parts of the log objects; each becomes
// a row, so nothing is silently skipped.
func ReconcileTokens(usage []schemas.Event, logs []LogRecord, issues []LogIssue, opts TokenOptions) (TokenReport, error) {
	dayStart, err := time.Parse(schemas.DayLayout, opts.Day)
	if err != nil {
		return TokenReport{}, fmt.Errorf("day %q: want YYYY-MM-DD", opts.Day)
	}
	dayEnd := dayStart.Add(24 * time.Hour)
	if opts.DeliveryAllowance <= 0 {
		opts.DeliveryAllowance = DefaultDeliveryAllowance
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	rep := TokenReport{Day: opts.Day, Counts: map[string]int{}, Skipped: map[string]int{}, UsageEvents: len(usage), LogRecords: len(logs)}
	for _, s := range schemas.TokensStatuses {
		rep.Counts[s] = 0
	}
	inDay := func(t time.Time) bool { return !t.IsZero() && !t.Before(dayStart) && t.Before(dayEnd) }

	metered := earliestByRequest(usage, rep.Skipped)
	logged := map[string]*LogRecord{}
	for i := range logs {
		l := &logs[i]
		if prev, ok := logged[l.RequestID]; ok {
			rep.Skipped[SkipLogDuplicate]++
			if !l.Time.Before(prev.Time) {
				continue
			}
		}
		logged[l.RequestID] = l
	}
	ids := requestIDs(metered, logged)
	cutoff := opts.Now.Add(-opts.DeliveryAllowance)
	for id := range ids {
		e, l := metered[id], logged[id]
		if e != nil && !inDay(e.Timestamp) || e == nil && !inDay(l.Time) {
			continue
		}
		row := TokenRow{RequestID: id}
		if e != nil {
			row.TeamID, row.CostCenter, row.ModelID, row.EventID, row.EventTime = e.TeamID, e.CostCenter, e.ModelID, e.EventID, e.Timestamp.UTC()
			row.Metered = &TokenCounts{e.InputTokens, e.OutputTokens, e.CacheReadInputTokens, e.CacheWriteInputTokens}
		}
		if l != nil {
			row.LogTime, row.LogKey, row.LogLine = l.Time.UTC(), l.Key, l.Line
			row.Logged = &TokenCounts{l.Input, l.Output, l.CacheRead, l.CacheWrite}
		}
		switch {
		case e != nil && l != nil:
			row.Status, row.Detail = compareTokens(e, l)
		case l != nil:
			row.Status, row.ModelID = TokensUnmetered, l.ModelID
			row.TeamID, row.CostCenter, row.EventID = l.Metadata[schemas.MetadataTeamID], l.Metadata[schemas.MetadataCostCenter], l.Metadata[schemas.MetadataEventID]
			row.Detail = "in the invocation logs only: no usage event for this request id"
			if l.ErrorCode != "" {
				row.Detail += "; the call failed with " + l.ErrorCode
			}
		default:
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
			row.Status = TokensUnconfirmed
			row.Detail = fmt.Sprintf("metered, but the invocation logs have no record of it (delivery allowance of %s has passed)", opts.DeliveryAllowance)
		}
		rep.Counts[row.Status]++
		rep.Rows = append(rep.Rows, row)
	}
	for _, is := range issues {
		rep.Rows = append(rep.Rows, TokenRow{Status: TokensUnreadable, LogKey: is.Key, LogLine: is.Line, Detail: is.Reason})
		rep.Counts[TokensUnreadable]++
	}
	sort.SliceStable(rep.Rows, func(i, j int) bool {
		a, b := &rep.Rows[i], &rep.Rows[j]
		if a.RequestID != b.RequestID {
			return a.RequestID < b.RequestID
		}
		if a.LogKey != b.LogKey {
			return a.LogKey < b.LogKey
		}
		return a.LogLine < b.LogLine
	})
	return rep, nil
}

// compareTokens decides between matched and mismatched for a request seen on
// both sides: every token count must be equal, the model the same as invoked,
// and request metadata, where the record has it, must name the event and team.
func compareTokens(e *schemas.Event, l *LogRecord) (string, string) {
	var problems, notes []string
	for _, c := range []struct {
		name           string
		metered, given int64
	}{
		{"input tokens", e.InputTokens, l.Input},
		{"output tokens", e.OutputTokens, l.Output},
		{"cache read tokens", e.CacheReadInputTokens, l.CacheRead},
		{"cache write tokens", e.CacheWriteInputTokens, l.CacheWrite},
	} {
		if c.metered != c.given {
			problems = append(problems, fmt.Sprintf("%s differ: metered %d, logged %d", c.name, c.metered, c.given))
		}
	}
	if l.ModelID != "" && !SameModel(e.ModelID, l.ModelID) {
		problems = append(problems, fmt.Sprintf("model differs: metered %q, logged %q", e.ModelID, l.ModelID))
	}
	if len(l.Metadata) == 0 {
		notes = append(notes, "the log record carries no request metadata")
	} else {
		for _, m := range []struct{ key, metered string }{
			{schemas.MetadataEventID, e.EventID}, {schemas.MetadataTeamID, e.TeamID}, {schemas.MetadataCostCenter, e.CostCenter},
		} {
			if got, ok := l.Metadata[m.key]; ok && got != m.metered {
				problems = append(problems, fmt.Sprintf("request metadata %s differs: metered %q, logged %q", m.key, m.metered, got))
			}
		}
	}
	if l.ErrorCode != "" && e.Status == schemas.StatusSuccess {
		problems = append(problems, "outcome differs: metered success, logged errorCode "+l.ErrorCode)
	}
	if len(problems) > 0 {
		return TokensMismatched, strings.Join(append(problems, notes...), "; ")
	}
	return TokensMatched, strings.Join(notes, "; ")
}

// Record renders the row in the order of schemas.TokensColumns.
func (r *TokenRow) Record() []string {
	text := schemas.NeutralizeCell
	num := func(c *TokenCounts, f func(*TokenCounts) int64) string {
		if c == nil {
			return ""
		}
		return strconv.FormatInt(f(c), 10)
	}
	in := func(c *TokenCounts) int64 { return c.Input }
	out := func(c *TokenCounts) int64 { return c.Output }
	cr := func(c *TokenCounts) int64 { return c.CacheRead }
	cw := func(c *TokenCounts) int64 { return c.CacheWrite }
	line := ""
	if r.LogLine > 0 {
		line = strconv.Itoa(r.LogLine)
	}
	return []string{
		text(r.RequestID), r.Status, text(r.TeamID), text(r.CostCenter), text(r.ModelID), text(r.EventID),
		formatOptionalTime(r.EventTime), formatOptionalTime(r.LogTime),
		num(r.Metered, in), num(r.Logged, in), num(r.Metered, out), num(r.Logged, out),
		num(r.Metered, cr), num(r.Logged, cr), num(r.Metered, cw), num(r.Logged, cw),
		text(r.LogKey), line, text(r.Detail),
	}
}

// WriteCSV writes the report with a header of schemas.TokensColumns.
func (r *TokenReport) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(schemas.TokensColumns); err != nil {
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

// Human returns a short summary for people.
func (r *TokenReport) Human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invocation logs %s: %d matched, %d mismatched, %d unmetered, %d unconfirmed, %d unreadable\n", r.Day,
		r.Counts[TokensMatched], r.Counts[TokensMismatched], r.Counts[TokensUnmetered], r.Counts[TokensUnconfirmed], r.Counts[TokensUnreadable])
	if r.Pending > 0 {
		fmt.Fprintf(&b, "  %d metered calls are pending log delivery\n", r.Pending)
	}
	shown := 0
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Status == TokensMatched || row.Status == TokensUnconfirmed {
			continue
		}
		if shown == 5 {
			b.WriteString("  ... more in the tokens CSV\n")
			break
		}
		where := row.RequestID
		if row.Status == TokensUnreadable {
			where = fmt.Sprintf("%s line %d", row.LogKey, row.LogLine)
		}
		fmt.Fprintf(&b, "  %s %s: %s\n", row.Status, where, row.Detail)
		shown++
	}
	return b.String()
}
