package reconcile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzCloudTrailRecord: no CloudTrail record, however malformed, panics the
// reader; a record it keeps lies in the window it reads. (A kept record may
// lack a request id: the reconciliation counts those as skipped, by reason.)
func FuzzCloudTrailRecord(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "cloudtrail", "2026-11-25.json"))
	if err != nil {
		f.Fatal(err)
	}
	var doc struct{ Records []json.RawMessage }
	if err := json.Unmarshal(data, &doc); err != nil {
		f.Fatal(err)
	}
	for _, r := range doc.Records {
		f.Add([]byte(r))
	}
	f.Add([]byte(`{"eventSource":"bedrock.amazonaws.com","eventName":"InvokeModel","eventTime":"9999-12-31T00:00:00Z"}`))
	f.Add([]byte(`null`))
	from, to := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw []byte) {
		c := newTrailCollector(from, to)
		c.add(json.RawMessage(raw))
		res := c.result()
		for _, ev := range res.Events {
			rec := ev.Record()
			if rec.EventTime.Before(from) || !rec.EventTime.Before(to) {
				t.Fatalf("kept %+v from %s", rec, raw)
			}
		}
	})
}
