package aggregator

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/schemas"
)

func event(req, team, model string, ts time.Time, in, out int64) schemas.Event {
	return schemas.Event{SchemaVersion: 1, EventID: "ev-" + req + ts.Format("150405.000"), RequestID: req, Timestamp: ts,
		TeamID: team, CostCenter: "cc-" + team, ModelID: model, Operation: "InvokeModel", Status: schemas.StatusSuccess,
		InputTokens: in, OutputTokens: out, LatencyMS: 10}
}

func line(t *testing.T, e schemas.Event) []byte {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWindowsDedupAndQuarantine(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 2, 0, 0, time.UTC)
	a := New(Config{})
	a.Add(Input{Data: line(t, event("r1", "a", "m", t0, 10, 5))}, t0)
	dup := event("r1", "a", "m", t0, 10, 5)
	dup.EventID = "another-event-id"
	a.Add(Input{Data: line(t, dup)}, t0)
	a.Add(Input{Data: line(t, event("r2", "a", "m", t0.Add(time.Minute), 7, 3))}, t0)
	a.Add(Input{Data: line(t, event("r3", "a", "m", t0.Add(4*time.Minute), 1, 1))}, t0) // next window
	a.Add(Input{Data: []byte(`{"schema_version":1,"timestamp":"yesterday"}`), PartitionKey: MalformedKey("in.jsonl", 7)}, t0)
	b := a.Flush()
	if b.Events != 4 || b.Duplicates != 1 || len(b.Quarantined) != 1 {
		t.Fatalf("events %d duplicates %d quarantined %d; want 4 1 1", b.Events, b.Duplicates, len(b.Quarantined))
	}
	q := b.Quarantined[0]
	if q.Line != 7 || q.Origin != "in.jsonl" || q.Field == "" || !strings.Contains(q.Reason, q.Field) {
		t.Fatalf("quarantine entry lacks origin, line or reason: %+v", q)
	}
	d := b.Days["2026-11-25"]
	if len(d.Events) != 4 {
		t.Fatalf("raw events keep duplicates: got %d rows, want 4", len(d.Events))
	}
	if len(d.Windows) != 2 {
		t.Fatalf("got %d windows, want 2: %+v", len(d.Windows), d.Windows)
	}
	w := d.Windows[0]
	if w.Requests != 2 || w.InputTokens != 17 || w.OutputTokens != 8 || time.UnixMilli(w.WindowStart).UTC().Minute() != 0 {
		t.Fatalf("first window %+v; want 2 requests, 17 in, 8 out, starting at :00", w)
	}
	// A redelivery in a later batch is still recognised within the horizon.
	a.Add(Input{Data: line(t, event("r2", "a", "m", t0.Add(time.Minute), 7, 3))}, t0)
	if b2 := a.Flush(); b2.Duplicates != 1 || len(b2.Days["2026-11-25"].Windows) != 0 {
		t.Fatalf("redelivered record counted again in windows: %+v", b2)
	}
}

func TestLateEventsLandInTheirOwnWindowAndDay(t *testing.T) {
	a := New(Config{Window: time.Minute})
	now := time.Date(2026, 11, 26, 0, 30, 0, 0, time.UTC)
	a.AddEvent(event("late", "a", "m", time.Date(2026, 11, 25, 23, 59, 59, 0, time.UTC), 1, 1))
	a.AddEvent(event("now", "a", "m", now, 1, 1))
	b := a.Flush()
	if len(b.Days) != 2 || len(b.Days["2026-11-25"].Windows) != 1 || b.Days["2026-11-25"].Windows[0].WindowStart != time.Date(2026, 11, 25, 23, 59, 0, 0, time.UTC).UnixMilli() {
		t.Fatalf("late event not in its own event-time window: %+v", b.Days)
	}
}

const prices = `model_id,effective_from,input_per_1k,output_per_1k,cache_read_per_1k,cache_write_per_1k,per_image
m1,2026-01-01,0.003,0.015,0.0003,0.00375,
m1,2026-11-25T12:00:00Z,0.001,0.005,0.0001,0.00125,
img,2026-01-01,0,0,,,0.04
`

func TestCompactDayKnownTotals(t *testing.T) {
	book, err := pricing.Parse(strings.NewReader(prices), "test")
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	var evs []schemas.Event
	// 100 morning calls and 100 afternoon calls of m1 by team a: the price changes at noon.
	for i := 0; i < 200; i++ {
		ts := day.Add(time.Duration(i) * 7 * time.Minute) // 0..23:13
		e := event("a-"+itoa(i), "a", "m1", ts, 1000, 100)
		e.CacheReadInputTokens = 2000
		evs = append(evs, e)
		if i%10 == 0 { // redelivered with a new event id
			d := e
			d.EventID += "-again"
			evs = append(evs, d)
		}
	}
	img := event("img-1", "b", "img", day.Add(time.Hour), 0, 0)
	img.ImageCount = 3
	evs = append(evs, img)
	denied := event("deny-1", "b", "unpriced-model", day.Add(time.Hour), 0, 0)
	denied.Status = schemas.StatusDenied
	evs = append(evs, denied)
	evs = append(evs, event("other-day", "a", "m1", day.Add(-time.Second), 1000, 1000))

	res, err := CompactDay("2026-11-25", evs, book)
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates != 20 || res.OtherDay != 1 || len(res.Daily) != 202 {
		t.Fatalf("duplicates %d other-day %d daily rows %d; want 20 1 202", res.Duplicates, res.OtherDay, len(res.Daily))
	}
	// Calls before noon: i*7min < 720min, so i <= 102: 103 calls at the first price, 97 at the second.
	a := res.Chargeback[0]
	if a.TeamID != "a" || a.Invocations != 200 || a.InputTokens != 200000 || a.OutputTokens != 20000 || a.CacheReadInputTokens != 400000 {
		t.Fatalf("team a row %+v", a)
	}
	// morning: 103 * (0.003 + 0.0015 + 0.0006) = 0.5253; afternoon: 97 * (0.001 + 0.0005 + 0.0002) = 0.1649
	if got := a.Costs.Total().String(); got != "0.6902" {
		t.Fatalf("team a total %s, want 0.6902", got)
	}
	var b1, b2 ChargebackRow
	for _, r := range res.Chargeback {
		if r.TeamID == "b" && r.ModelID == "img" {
			b1 = r
		}
		if r.TeamID == "b" && r.ModelID == "unpriced-model" {
			b2 = r
		}
	}
	if b1.Costs.Image.String() != "0.12" || b1.ImageCount != 3 || b2.Denied != 1 || b2.Invocations != 0 {
		t.Fatalf("image row %+v denied row %+v", b1, b2)
	}
	if res.Totals.Costs.Total().String() != "0.8102" {
		t.Fatalf("day total %s, want 0.8102", res.Totals.Costs.Total())
	}
	var buf bytes.Buffer
	if err := WriteChargebackCSV(&buf, res.Chargeback, 2, 1); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if !strings.HasPrefix(lines[0], "day,team_id,cost_center,model_id,invocations,input_tokens,output_tokens,input_cost,output_cost,total_cost") {
		t.Fatalf("header %q", lines[0])
	}
	if !strings.HasPrefix(lines[1], "2026-11-25,a,cc-a,m1,200,200000,20000,0.41,0.20,0.69,") {
		t.Fatalf("row %q", lines[1])
	}
}

func TestCompactDayOrderIndependent(t *testing.T) {
	book, _ := pricing.Parse(strings.NewReader(prices), "test")
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	e1 := event("r", "a", "m1", t0, 10, 10)
	e2 := e1
	e2.EventID = "a-earlier-id"
	x, _ := CompactDay("2026-11-25", []schemas.Event{e1, e2}, book)
	y, _ := CompactDay("2026-11-25", []schemas.Event{e2, e1}, book)
	if x.Daily[0].EventID != y.Daily[0].EventID {
		t.Fatalf("kept %s and %s depending on order", x.Daily[0].EventID, y.Daily[0].EventID)
	}
}

// TestCompactDayLeavesUnpricedUsageOut: a call with no price in force is
// never billed at zero: it is left out of the chargeback and the daily rows
// and listed, with the price error naming the model; the priced call stays.
func TestCompactDayLeavesUnpricedUsageOut(t *testing.T) {
	book, _ := pricing.Parse(strings.NewReader(prices), "test")
	at := time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC)
	res, err := CompactDay("2026-11-25", []schemas.Event{event("r", "a", "nope", at, 1, 1), event("s", "a", "m1", at, 1000, 100)}, book)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unpriced) != 1 || res.Unpriced[0].ModelID != "nope" || res.Unpriced[0].Calls != 1 || !strings.Contains(res.Unpriced[0].Reason, `"nope"`) {
		t.Fatalf("unpriced %+v", res.Unpriced)
	}
	if len(res.Chargeback) != 1 || res.Chargeback[0].ModelID != "m1" || len(res.Daily) != 1 || res.Daily[0].RequestID != "s" {
		t.Fatalf("chargeback %+v, daily %d rows", res.Chargeback, len(res.Daily))
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestChargebackCSVNeutralizesFormulas: whatever reaches a text cell, finance's
// spreadsheet shows it as text: no cell starts with = + - @, a tab or a return.
func TestChargebackCSVNeutralizesFormulas(t *testing.T) {
	var buf bytes.Buffer
	rows := []ChargebackRow{{Day: "2026-11-25", TeamID: "=HYPERLINK(\"x\")", CostCenter: "-1", ModelID: "@SUM(A1)"}}
	rows[0].Invocations = 1
	if err := WriteChargebackCSV(&buf, rows, -1, 1); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, cell := range recs[1] {
		if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) && !isNumber(cell) {
			t.Errorf("cell %q starts a formula", cell)
		}
	}
	if recs[1][1] != `'=HYPERLINK("x")` || recs[1][2] != "'-1" || recs[1][3] != "'@SUM(A1)" {
		t.Errorf("row %q", recs[1])
	}
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// TestEventTimeIsBoundedByArrival: an event dated after it reached the stream
// (9999-12-31, a clock far ahead) or before meter's time (year 0) is
// quarantined naming the timestamp; an event a day late still counts.
func TestEventTimeIsBoundedByArrival(t *testing.T) {
	arrival := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	line := func(id, ts string) []byte {
		return []byte(`{"schema_version":1,"event_id":"e-` + id + `","request_id":"` + id + `","timestamp":"` + ts +
			`","team_id":"a","cost_center":"","model_id":"m1","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":1,"latency_ms":1}`)
	}
	a := New(Config{})
	for id, ts := range map[string]string{
		"far-future": "9999-12-31T23:59:59Z", "year-zero": "0000-01-01T00:00:00Z", "ahead": "2026-11-26T12:06:00Z",
		"day-late": "2026-11-25T12:00:00Z", "skew-ok": "2026-11-26T12:04:00Z",
	} {
		a.Add(Input{Data: line(id, ts), Source: id, PartitionKey: id, Arrival: arrival}, arrival.Add(time.Hour))
	}
	b := a.Flush()
	if b.Events != 2 || len(b.Quarantined) != 3 {
		t.Fatalf("%d events, %d quarantined; want the day-late and skewed events kept, 3 quarantined", b.Events, len(b.Quarantined))
	}
	for _, q := range b.Quarantined {
		if q.Field != "timestamp" || q.Kind != QuarantineInvalid || (q.Source != "far-future" && q.Source != "year-zero" && q.Source != "ahead") {
			t.Errorf("quarantined %+v", q)
		}
	}
}
