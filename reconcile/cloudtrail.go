package reconcile

// Reading CloudTrail's record of Bedrock runtime invocations, from trail log
// files (s3:// or file://, through the store) or from the LookupEvents API.
// CloudTrail proves that a call happened, not what it cost: these readers only
// produce the facts the reconciliation joins on.

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	cttypes "github.com/aws/aws-sdk-go-v2/service/cloudtrail/types"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// BedrockEventSource is the eventSource of Bedrock runtime calls in CloudTrail.
const BedrockEventSource = "bedrock.amazonaws.com"

// BedrockInvocationEvents are the CloudTrail event names of model invocations;
// every other Bedrock event (ListFoundationModels, GetModelInvocationLoggingConfiguration,
// ...) is skipped.
var BedrockInvocationEvents = []string{"InvokeModel", "InvokeModelWithResponseStream", "Converse", "ConverseStream"}

// Reasons a CloudTrail record is skipped, counted in TrailResult.Skipped.
const (
	TrailSkipNotBedrock    = "cloudtrail_not_bedrock"
	TrailSkipNotInvocation = "cloudtrail_not_invocation"
	TrailSkipOutsideWindow = "cloudtrail_outside_window"
	TrailSkipMalformed     = "cloudtrail_malformed"
	TrailSkipDuplicate     = "cloudtrail_duplicate_event_id"
)

// TrailEvent is one CloudTrail record of a Bedrock model invocation.
type TrailEvent struct {
	EventID         string
	RequestID       string
	EventName       string
	EventSource     string
	ModelID         string
	Region          string
	InferenceRegion string
	EventTime       time.Time
	// Caller is userIdentity.arn, or its principalId when there is no ARN.
	Caller string
	// ErrorCode is set when the call failed (CloudTrail records failed calls too).
	ErrorCode string
}

// Record converts the event to the reconciliation's input type.
func (e *TrailEvent) Record() aggregator.TrailRecord {
	return aggregator.TrailRecord{
		EventID: e.EventID, RequestID: e.RequestID, EventName: e.EventName, ModelID: e.ModelID,
		Region: e.Region, InferenceRegion: e.InferenceRegion, Caller: e.Caller, ErrorCode: e.ErrorCode,
		EventTime: e.EventTime,
	}
}

// TrailResult is what a reader found in a window.
type TrailResult struct {
	// Events are the Bedrock invocations in the window, sorted by time then event id,
	// each event id once.
	Events []TrailEvent
	// Skipped counts the records left out, per reason.
	Skipped map[string]int
	// Reads counts trail files read or LookupEvents pages fetched.
	Reads int
}

// TrailReader reads the Bedrock invocations CloudTrail recorded in [from, to).
type TrailReader interface {
	ReadTrail(ctx context.Context, from, to time.Time) (TrailResult, error)
}

// CloudTrail location kinds of a --cloudtrail URI.
const (
	TrailKindLookup = "lookup"
	TrailKindS3     = "s3"
	TrailKindFile   = "file"
)

// ParseCloudTrailURI checks a --cloudtrail location and returns its kind:
// "lookup" (the LookupEvents API), "s3" for s3://BUCKET[/PREFIX] or "file" for
// file://DIR. For s3 and file the URI is a store root that holds AWSLogs/, or
// any folder below it (down to AWSLogs/ACCOUNT/CloudTrail/REGION); the caller
// opens it as a store and hands it to TrailFiles.
func ParseCloudTrailURI(uri string) (string, error) {
	switch {
	case uri == TrailKindLookup:
		return TrailKindLookup, nil
	case strings.HasPrefix(uri, "s3://"):
		if strings.TrimPrefix(uri, "s3://") == "" || strings.HasPrefix(uri, "s3:///") {
			return "", fmt.Errorf("cloudtrail location %q: want s3://BUCKET/PREFIX", uri)
		}
		return TrailKindS3, nil
	case strings.HasPrefix(uri, "file://"):
		if strings.TrimPrefix(uri, "file://") == "" {
			return "", fmt.Errorf("cloudtrail location %q: want file://DIR", uri)
		}
		return TrailKindFile, nil
	}
	return "", fmt.Errorf("cloudtrail location %q: want lookup, s3://BUCKET/PREFIX or file://DIR", uri)
}

// trailRecord mirrors the fields of a CloudTrail record the reader uses.
type trailRecord struct {
	EventID      string          `json:"eventID"`
	EventTime    string          `json:"eventTime"`
	EventSource  string          `json:"eventSource"`
	EventName    string          `json:"eventName"`
	AWSRegion    string          `json:"awsRegion"`
	RequestID    string          `json:"requestID"`
	ErrorCode    string          `json:"errorCode"`
	UserIdentity json.RawMessage `json:"userIdentity"`
	// Parameters and extra data vary by event; they are decoded only for invocations.
	RequestParameters   json.RawMessage `json:"requestParameters"`
	AdditionalEventData json.RawMessage `json:"additionalEventData"`
}

type trailIdentity struct {
	Type        string `json:"type"`
	ARN         string `json:"arn"`
	PrincipalID string `json:"principalId"`
	InvokedBy   string `json:"invokedBy"`
}

// trailCollector filters and deduplicates records from any source.
type trailCollector struct {
	from, to time.Time
	seen     map[string]bool
	res      TrailResult
}

func newTrailCollector(from, to time.Time) *trailCollector {
	return &trailCollector{from: from, to: to, seen: map[string]bool{}, res: TrailResult{Skipped: map[string]int{}}}
}

func (c *trailCollector) add(raw json.RawMessage) {
	var r trailRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		c.res.Skipped[TrailSkipMalformed]++
		return
	}
	if r.EventSource != BedrockEventSource {
		c.res.Skipped[TrailSkipNotBedrock]++
		return
	}
	if !isInvocation(r.EventName) {
		c.res.Skipped[TrailSkipNotInvocation]++
		return
	}
	at, err := time.Parse(time.RFC3339Nano, r.EventTime)
	if err != nil {
		c.res.Skipped[TrailSkipMalformed]++
		return
	}
	if at.Before(c.from) || !at.Before(c.to) {
		c.res.Skipped[TrailSkipOutsideWindow]++
		return
	}
	if r.EventID != "" {
		if c.seen[r.EventID] {
			c.res.Skipped[TrailSkipDuplicate]++
			return
		}
		c.seen[r.EventID] = true
	}
	var params struct {
		ModelID string `json:"modelId"`
	}
	var extra struct {
		InferenceRegion string `json:"inferenceRegion"`
	}
	var who trailIdentity
	// Best effort: a record without parameters is still evidence of a call.
	_ = json.Unmarshal(r.RequestParameters, &params)
	_ = json.Unmarshal(r.AdditionalEventData, &extra)
	_ = json.Unmarshal(r.UserIdentity, &who)
	caller := who.ARN
	if caller == "" {
		caller = who.PrincipalID
	}
	if caller == "" {
		caller = who.InvokedBy
	}
	c.res.Events = append(c.res.Events, TrailEvent{
		EventID: r.EventID, RequestID: r.RequestID, EventName: r.EventName, EventSource: r.EventSource,
		ModelID: params.ModelID, Region: r.AWSRegion, InferenceRegion: extra.InferenceRegion,
		EventTime: at.UTC(), Caller: caller, ErrorCode: r.ErrorCode,
	})
}

func (c *trailCollector) result() TrailResult {
	sort.Slice(c.res.Events, func(i, j int) bool {
		a, b := &c.res.Events[i], &c.res.Events[j]
		if !a.EventTime.Equal(b.EventTime) {
			return a.EventTime.Before(b.EventTime)
		}
		return a.EventID < b.EventID
	})
	return c.res
}

func isInvocation(name string) bool {
	for _, n := range BedrockInvocationEvents {
		if n == name {
			return true
		}
	}
	return false
}

// TrailFiles reads trail log files: gzip JSON {"Records": [...]} under
// AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ (organization trails add the
// organization id after AWSLogs/). Files are foldered by delivery time, so an
// event is in its own day's folder or a later one: the reader reads the folders
// of every day in the window plus the day after it.
type TrailFiles struct {
	// Store holds the trail; only List and Get are used.
	Store store.Store
	// Prefix is the folder within Store to read from: a folder that holds
	// AWSLogs/, or any folder below it. Empty means the store's root.
	Prefix string
}

// trailKey matches the date folder and file name at the end of a trail file's
// key, whatever lies above it; digest and insight files live in other folders.
var trailKey = regexp.MustCompile(`(?:^|/)(\d{4})/(\d{2})/(\d{2})/[^/]+\.json(?:\.gz)?$`)

// ReadTrail reads the invocations recorded in [from, to).
func (f *TrailFiles) ReadTrail(ctx context.Context, from, to time.Time) (TrailResult, error) {
	prefix := f.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	folders := map[string]bool{}
	for d := from.UTC().Truncate(24 * time.Hour); d.Before(to.Add(24 * time.Hour)); d = d.Add(24 * time.Hour) {
		folders[d.Format("2006/01/02")] = true
	}
	// The store lists by prefix only, so the trail's folders are found from one
	// listing; a prefix down to the region keeps that listing small.
	objs, err := f.Store.List(ctx, prefix)
	if err != nil {
		return TrailResult{}, fmt.Errorf("listing cloudtrail files under %q: %w", prefix, err)
	}
	c := newTrailCollector(from, to)
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, prefix)
		if strings.Contains(rel, "CloudTrail-Digest/") || strings.Contains(rel, "CloudTrail-Insight/") {
			continue
		}
		m := trailKey.FindStringSubmatch(rel)
		if m == nil || !folders[m[1]+"/"+m[2]+"/"+m[3]] {
			continue
		}
		if err := f.readFile(ctx, o.Key, c); err != nil {
			return TrailResult{}, err
		}
		c.res.Reads++
	}
	if c.res.Reads == 0 {
		// CloudTrail delivers files for every active region every few minutes;
		// none at all means a wrong location, not a quiet day.
		return TrailResult{}, fmt.Errorf("%w: no trail files for %s to %s under %q",
			ErrNoTrailFiles, from.UTC().Format(schemas.DayLayout), to.UTC().Format(schemas.DayLayout), prefix)
	}
	return c.result(), nil
}

// ErrNoTrailFiles reports a trail location with no files for the window read.
var ErrNoTrailFiles = errors.New("no cloudtrail files")

func (f *TrailFiles) readFile(ctx context.Context, key string, c *trailCollector) error {
	rc, err := f.Store.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("reading cloudtrail file %s: %w", key, err)
	}
	defer rc.Close()
	var r io.Reader = rc
	if strings.HasSuffix(key, ".gz") {
		zr, err := gzip.NewReader(rc)
		if err != nil {
			return fmt.Errorf("reading cloudtrail file %s: %w", key, err)
		}
		defer zr.Close()
		r = zr
	}
	var doc struct {
		Records []json.RawMessage `json:"Records"`
	}
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return fmt.Errorf("reading cloudtrail file %s: %w", key, err)
	}
	for _, raw := range doc.Records {
		c.add(raw)
	}
	return nil
}

// LookupEventsAPI is the one CloudTrail call TrailLookup needs; *cloudtrail.Client has it.
type LookupEventsAPI interface {
	LookupEvents(ctx context.Context, in *cloudtrail.LookupEventsInput, optFns ...func(*cloudtrail.Options)) (*cloudtrail.LookupEventsOutput, error)
}

// DefaultLookupCallsPerSecond keeps TrailLookup under CloudTrail's LookupEvents
// limit of 2 calls per second per account and region.
const DefaultLookupCallsPerSecond = 1.8

// TrailLookup reads Bedrock invocations through the LookupEvents API (the last
// 90 days), filtered on eventSource, 50 events a page, paced.
type TrailLookup struct {
	Client LookupEventsAPI
	// CallsPerSecond paces the calls; default DefaultLookupCallsPerSecond.
	CallsPerSecond float64
}

// ReadTrail reads the invocations recorded in [from, to).
func (l *TrailLookup) ReadTrail(ctx context.Context, from, to time.Time) (TrailResult, error) {
	rate := l.CallsPerSecond
	if rate <= 0 {
		rate = DefaultLookupCallsPerSecond
	}
	pace := newPacer(time.Duration(float64(time.Second) / rate))
	c := newTrailCollector(from, to)
	in := &cloudtrail.LookupEventsInput{
		LookupAttributes: []cttypes.LookupAttribute{{
			AttributeKey: cttypes.LookupAttributeKeyEventSource, AttributeValue: aws.String(BedrockEventSource),
		}},
		// EndTime is inclusive in the API; the collector drops events at exactly `to`.
		StartTime: aws.Time(from), EndTime: aws.Time(to), MaxResults: aws.Int32(50),
	}
	for {
		if err := pace.wait(ctx); err != nil {
			return TrailResult{}, err
		}
		out, err := l.Client.LookupEvents(ctx, in)
		if err != nil {
			return TrailResult{}, fmt.Errorf("cloudtrail LookupEvents (page %d): %w", c.res.Reads+1, err)
		}
		c.res.Reads++
		for _, ev := range out.Events {
			if ev.CloudTrailEvent == nil {
				c.res.Skipped[TrailSkipMalformed]++
				continue
			}
			c.add(json.RawMessage(*ev.CloudTrailEvent))
		}
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	return c.result(), nil
}

// pacer spaces calls at least interval apart: a rate limiter without bursts,
// which is what an API limit of a few calls per second asks for.
type pacer struct {
	interval time.Duration
	next     time.Time
}

func newPacer(interval time.Duration) *pacer { return &pacer{interval: interval} }

func (p *pacer) wait(ctx context.Context) error {
	now := time.Now()
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		// Count from the actual start: a late wake-up must not shorten the next gap.
		now = time.Now()
	}
	p.next = now.Add(p.interval)
	return nil
}
