package schemas

import (
	"fmt"
	"strings"
	"testing"
)

// A Decoder cuts the ids of many events from shared blocks: each event keeps
// its own ids, whichever block they came from, the longest included.
func TestDecoderIDsStayTheirOwn(t *testing.T) {
	var d Decoder
	var got []Event
	var want []string
	for i := range 5000 {
		id := fmt.Sprintf("req-%d-%s", i, strings.Repeat("x", i%200))
		if i%1000 == 7 {
			id = strings.Repeat("L", 256) // the longest id
		}
		in := fmt.Sprintf(`{"schema_version":1,"event_id":"ev-%d","request_id":%q,"timestamp":"2026-11-25T10:00:00Z","team_id":"a","cost_center":"","model_id":"m","operation":"InvokeModel","status":"success","input_tokens":1,"output_tokens":2,"latency_ms":3}`, i, id)
		e, err := d.Parse([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
		want = append(want, id)
	}
	for i, e := range got {
		if e.RequestID != want[i] || e.EventID != fmt.Sprintf("ev-%d", i) {
			t.Fatalf("event %d: ids %q, %q", i, e.EventID, e.RequestID)
		}
	}
}
