package aggregator

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/schemas"
)

const reconcileDay = "2026-11-25"

func rts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// meteredCall is a usage event as the invoker writes it.
func meteredCall(requestID, at, status, model string, latencyMS int64) schemas.Event {
	return schemas.Event{
		SchemaVersion: 1, EventID: "ev-" + requestID + "-" + at, RequestID: requestID, Timestamp: rts(at),
		TeamID: "team-search", CostCenter: "cc-100", ModelID: model, Operation: "InvokeModel", Status: status,
		InputTokens: 120, OutputTokens: 30, LatencyMS: latencyMS,
	}
}

// trailCall is CloudTrail's record of a call.
func trailCall(requestID, eventID, at, model string) TrailRecord {
	return TrailRecord{
		EventID: eventID, RequestID: requestID, EventName: "InvokeModel", ModelID: model, Region: "us-east-1",
		Caller: "arn:aws:sts::111122223333:assumed-role/meter-invoker/i-0abc", EventTime: rts(at),
	}
}

const haiku = "anthropic.claude-3-haiku-20240307-v1:0"

func TestReconcile(t *testing.T) {
	dayAfter := rts("2026-11-27T00:00:00Z")
	cases := []struct {
		name        string
		usage       []schemas.Event
		trail       []TrailRecord
		now         time.Time
		want        map[string]string
		wantPending int
		wantSkipped map[string]int
	}{
		{
			name:  "matched: CloudTrail's arrival time lies within the metered call",
			usage: []schemas.Event{meteredCall("r1", "2026-11-25T10:00:02.500Z", "success", haiku, 2400)},
			trail: []TrailRecord{trailCall("r1", "ct-1", "2026-11-25T10:00:00Z", haiku)},
			want:  map[string]string{"r1": "matched"},
		},
		{
			name:  "unmetered: in CloudTrail only",
			trail: []TrailRecord{trailCall("r2", "ct-2", "2026-11-25T11:00:00Z", haiku)},
			want:  map[string]string{"r2": "unmetered"},
		},
		{
			name:  "unconfirmed: metered success older than the delivery allowance, no CloudTrail record",
			usage: []schemas.Event{meteredCall("r3", "2026-11-25T12:00:00Z", "success", haiku, 800)},
			want:  map[string]string{"r3": "unconfirmed"},
		},
		{
			name:        "pending: metered 30 minutes before now, inside the 1h allowance",
			usage:       []schemas.Event{meteredCall("r4", "2026-11-25T23:40:00Z", "success", haiku, 800), meteredCall("r5", "2026-11-25T22:59:00Z", "success", haiku, 800)},
			now:         rts("2026-11-26T00:10:00Z"),
			want:        map[string]string{"r5": "unconfirmed"},
			wantPending: 1,
		},
		{
			name:  "mismatched model: a cross-region profile is not its base model",
			usage: []schemas.Event{meteredCall("r6", "2026-11-25T10:00:01Z", "success", haiku, 900)},
			trail: []TrailRecord{trailCall("r6", "ct-6", "2026-11-25T10:00:00Z", "us."+haiku)},
			want:  map[string]string{"r6": "mismatched"},
		},
		{
			name:  "matched model: a foundation-model ARN equals its id",
			usage: []schemas.Event{meteredCall("r7", "2026-11-25T10:00:01Z", "success", haiku, 900)},
			trail: []TrailRecord{trailCall("r7", "ct-7", "2026-11-25T10:00:00Z", "arn:aws:bedrock:us-east-1::foundation-model/"+haiku)},
			want:  map[string]string{"r7": "matched"},
		},
		{
			name: "time: within the 5m tolerance matches, beyond it mismatches",
			usage: []schemas.Event{
				meteredCall("r8", "2026-11-25T10:00:00Z", "success", haiku, 1000),
				meteredCall("r9", "2026-11-25T10:00:00Z", "success", haiku, 1000),
				meteredCall("r10", "2026-11-25T10:00:00Z", "success", haiku, 1000),
			},
			trail: []TrailRecord{
				trailCall("r8", "ct-8", "2026-11-25T10:04:59Z", haiku),
				trailCall("r9", "ct-9", "2026-11-25T09:50:00Z", haiku),
				trailCall("r10", "ct-10", "2026-11-25T10:05:01Z", haiku),
			},
			want: map[string]string{"r8": "matched", "r9": "mismatched", "r10": "mismatched"},
		},
		{
			name: "dedup: a request delivered three times is one call",
			usage: []schemas.Event{
				meteredCall("r11", "2026-11-25T10:00:01Z", "success", haiku, 900),
				meteredCall("r11", "2026-11-25T10:00:01Z", "success", haiku, 900),
				meteredCall("r11", "2026-11-25T10:00:01Z", "success", haiku, 900),
			},
			trail:       []TrailRecord{trailCall("r11", "ct-11", "2026-11-25T10:00:00Z", haiku), trailCall("r11", "ct-11", "2026-11-25T10:00:00Z", haiku)},
			want:        map[string]string{"r11": "matched"},
			wantSkipped: map[string]int{SkipUsageDuplicate: 2, SkipCloudTrailDuplicate: 1},
		},
		{
			name: "failed calls: denied never reached Bedrock; throttled joins when CloudTrail has it, else is skipped",
			usage: []schemas.Event{
				meteredCall("r12", "2026-11-25T10:00:00Z", "denied", haiku, 0),
				meteredCall("r13", "2026-11-25T10:00:00Z", "throttled", haiku, 0),
				meteredCall("r14", "2026-11-25T10:00:00Z", "throttled", haiku, 40),
				meteredCall("r15", "2026-11-25T10:00:00Z", "upstream_error", haiku, 40),
			},
			trail: []TrailRecord{func() TrailRecord {
				r := trailCall("r14", "ct-14", "2026-11-25T10:00:00Z", haiku)
				r.ErrorCode = "ThrottlingException"
				return r
			}()},
			want:        map[string]string{"r14": "matched"},
			wantSkipped: map[string]int{SkipUsageDenied: 1, SkipUsageFailedUnrecorded: 2},
		},
		{
			name: "outcomes: Bedrock's own denial joins its record; success against an errorCode, or failure against a served call, is mismatched",
			usage: []schemas.Event{
				meteredCall("r16", "2026-11-25T10:00:00Z", "denied", haiku, 30),
				meteredCall("r17", "2026-11-25T10:00:00Z", "success", haiku, 30),
				meteredCall("r18", "2026-11-25T10:00:00Z", "upstream_error", haiku, 30),
			},
			trail: []TrailRecord{
				func() TrailRecord {
					r := trailCall("r16", "ct-16", "2026-11-25T10:00:00Z", haiku)
					r.ErrorCode = "AccessDeniedException"
					return r
				}(),
				func() TrailRecord {
					r := trailCall("r17", "ct-17", "2026-11-25T10:00:00Z", haiku)
					r.ErrorCode = "ValidationException"
					return r
				}(),
				trailCall("r18", "ct-18", "2026-11-25T10:00:00Z", haiku),
			},
			want: map[string]string{"r16": "matched", "r17": "mismatched", "r18": "mismatched"},
		},
		{
			name: "midnight: a request id belongs to the day of its usage event, else of its CloudTrail event",
			usage: []schemas.Event{
				meteredCall("late", "2026-11-25T23:59:59.900Z", "success", haiku, 500),
				meteredCall("early", "2026-11-25T00:00:00.500Z", "success", haiku, 2000), // started the day before
				meteredCall("prev", "2026-11-24T23:59:59Z", "success", haiku, 500),       // the 24th's call
				meteredCall("next", "2026-11-26T00:00:01Z", "success", haiku, 3000),      // the 26th's call
			},
			trail: []TrailRecord{
				trailCall("late", "ct-late", "2026-11-25T23:59:59Z", haiku),
				trailCall("early", "ct-early", "2026-11-24T23:59:58.9Z", haiku),
				trailCall("prev", "ct-prev", "2026-11-25T00:00:01Z", haiku),
				trailCall("next", "ct-next", "2026-11-25T23:59:59Z", haiku),
				trailCall("gone", "ct-gone", "2026-11-26T00:00:10Z", haiku),
			},
			want: map[string]string{"late": "matched", "early": "matched"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = dayAfter
			}
			rep, err := Reconcile(tc.usage, tc.trail, ReconcileOptions{Day: reconcileDay, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			counts := map[string]int{}
			for _, r := range rep.Rows {
				got[r.RequestID] = r.Status
				counts[r.Status]++
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rows = %v, want %v", got, tc.want)
			}
			for _, s := range schemas.ReconciliationStatuses {
				if rep.Counts[s] != counts[s] {
					t.Errorf("Counts[%s] = %d, rows say %d", s, rep.Counts[s], counts[s])
				}
			}
			if rep.Pending != tc.wantPending {
				t.Errorf("Pending = %d, want %d", rep.Pending, tc.wantPending)
			}
			for k, v := range tc.wantSkipped {
				if rep.Skipped[k] != v {
					t.Errorf("Skipped[%s] = %d, want %d (all: %v)", k, rep.Skipped[k], v, rep.Skipped)
				}
			}
		})
	}
}

func TestReconcileReport(t *testing.T) {
	usage := []schemas.Event{
		meteredCall("req-b", "2026-11-25T10:00:02.500Z", "success", haiku, 2400),
		meteredCall("req-c", "2026-11-25T12:00:00Z", "success", "amazon.titan-embed-text-v2:0", 80),
	}
	unmetered := trailCall("req-a", "ct-a", "2026-11-25T11:00:00Z", "us.anthropic.claude-3-5-sonnet-20241022-v2:0")
	unmetered.Caller = "arn:aws:iam::111122223333:user/alice"
	unmetered.EventName = "Converse"
	trail := []TrailRecord{trailCall("req-b", "ct-b", "2026-11-25T10:00:00Z", haiku), unmetered}

	rep, err := Reconcile(usage, trail, ReconcileOptions{Day: reconcileDay, Now: rts("2026-11-26T06:00:00Z")})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		schemas.ReconciliationColumns,
		{"req-a", "unmetered", "", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", "2026-11-25T11:00:00.000Z", "ct-a",
			"2026-11-25T11:00:00.000Z", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", "Converse", "arn:aws:iam::111122223333:user/alice",
			"in CloudTrail only: no usage event for this request id"},
		{"req-b", "matched", "team-search", haiku, "2026-11-25T10:00:02.500Z", "ct-b", "2026-11-25T10:00:00.000Z", haiku, "InvokeModel",
			"arn:aws:sts::111122223333:assumed-role/meter-invoker/i-0abc", ""},
		{"req-c", "unconfirmed", "team-search", "amazon.titan-embed-text-v2:0", "2026-11-25T12:00:00.000Z", "", "", "", "InvokeModel", "",
			"metered, but CloudTrail has no record of it (delivery allowance of 1h0m0s has passed)"},
	}
	if !reflect.DeepEqual(recs, want) {
		t.Errorf("CSV =\n%q\nwant\n%q", recs, want)
	}

	var sum map[string]any
	if err := json.Unmarshal(rep.SummaryJSON(), &sum); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]float64{"matched": 1, "unmetered": 1, "unconfirmed": 1, "mismatched": 0, "pending": 0, "rows": 3} {
		if sum[k] != v {
			t.Errorf("summary %s = %v, want %v", k, sum[k], v)
		}
	}
	if sum["day"] != reconcileDay {
		t.Errorf("summary day = %v", sum["day"])
	}
	h := rep.Human()
	for _, s := range []string{"1 matched, 1 unmetered, 1 unconfirmed, 0 mismatched", "req-a", "user/alice"} {
		if !strings.Contains(h, s) {
			t.Errorf("Human() lacks %q:\n%s", s, h)
		}
	}
}

func TestReconcileRejectsBadDay(t *testing.T) {
	if _, err := Reconcile(nil, nil, ReconcileOptions{Day: "25/11/2026"}); err == nil {
		t.Fatal("want an error for a malformed day")
	}
}
