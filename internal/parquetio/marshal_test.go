package parquetio

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/xitongsys/parquet-go/marshal"

	"github.com/meter-dev/meter/schemas"
)

// The column-wise marshaller must produce the very file the library's generic
// marshaller produces.
func TestFlatMarshalMatchesLibrary(t *testing.T) {
	rows := make([]schemas.DailyRow, 30_000)
	for i := range rows {
		rows[i] = schemas.DailyRow{
			SchemaVersion: 1, EventID: fmt.Sprintf("ev-%d", i), RequestID: fmt.Sprintf("req-%d", i),
			Timestamp: 1741910400000 + int64(i)*997, TeamID: fmt.Sprintf("team-%d", i%7), ModelID: fmt.Sprintf("model-%d", i%5),
			Operation: "Converse", Status: "success", InputTokens: int64(i * 31), OutputTokens: int64(i % 300),
			LatencyMS: int64(i % 1000), ImageQuality: []string{"", "standard", "premium"}[i%3],
			InputCost: int64(i) * 30_000_000, TotalCost: -int64(i), // negative values too
		}
	}
	write := func(generic bool) []byte {
		var buf bytes.Buffer
		w, err := NewWriter[schemas.DailyRow](&buf, Options{PageBytes: 8 << 10})
		if err != nil {
			t.Fatal(err)
		}
		if generic {
			w.pw.MarshalFunc = marshal.Marshal
		}
		for _, r := range rows {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	if _, ok := flatMarshal[schemas.DailyRow](nil); ok {
		t.Fatal("flatMarshal accepted a nil schema handler")
	}
	fast, slow := write(false), write(true)
	if !bytes.Equal(fast, slow) {
		t.Fatalf("files differ: %d bytes column-wise, %d bytes generic", len(fast), len(slow))
	}
}
