package compaction

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/meter-dev/meter/schemas"
)

func spillRows(n int) []schemas.DailyRow {
	var rows []schemas.DailyRow
	for i := range n {
		rows = append(rows, schemas.DailyRow{SchemaVersion: 1, EventID: fmt.Sprintf("ev-%d", i), RequestID: strings.Repeat("r", i%300) + fmt.Sprint(i),
			Timestamp: int64(i) * 997, TeamID: []string{"a", "b", ""}[i%3], ModelID: "m", Operation: "InvokeModel", Status: "success",
			InputTokens: int64(i), OutputTokens: -int64(i), CacheReadInputTokens: 1 << 62, ImageQuality: []string{"", "hd"}[i%2],
			PricingTier: "on_demand", InputCost: int64(i) * 1_000_003, TotalCost: -1})
	}
	return rows
}

// Rows come back as they were written, read whole or in chunks far smaller
// than a row (every row then spans a refill).
func TestSpillRoundTrip(t *testing.T) {
	rows := spillRows(2000)
	for _, chunk := range []int{0, 1, 7, 4096} {
		w, err := newSpillWriter(t.TempDir(), "s-", newStrtab())
		if err != nil {
			t.Fatal(err)
		}
		for i := range rows {
			if err := w.write(&rows[i]); err != nil {
				t.Fatal(err)
			}
		}
		r, err := w.finish()
		if err != nil {
			t.Fatal(err)
		}
		if chunk == 0 {
			r.readAll()
		} else {
			r.chunk = chunk
		}
		var got []schemas.DailyRow
		var row schemas.DailyRow
		for r.read(&row) {
			got = append(got, row)
		}
		r.remove()
		if r.err != nil || !reflect.DeepEqual(got, rows) {
			t.Fatalf("chunk %d: read %d rows (err %v), want %d equal", chunk, len(got), r.err, len(rows))
		}
	}
}

// A spill file cut short is an error, not fewer rows.
func TestSpillTruncatedIsCorrupt(t *testing.T) {
	rows := spillRows(50)
	w, err := newSpillWriter(t.TempDir(), "s-", newStrtab())
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		w.write(&rows[i])
	}
	r, err := w.finish()
	if err != nil {
		t.Fatal(err)
	}
	defer r.remove()
	st, _ := r.f.Stat()
	if err := os.Truncate(r.f.Name(), st.Size()-3); err != nil {
		t.Fatal(err)
	}
	n := 0
	var row schemas.DailyRow
	for r.read(&row) {
		n++
	}
	if n != len(rows)-1 || r.err == nil {
		t.Fatalf("read %d rows, err %v: want %d and a corrupt file", n, r.err, len(rows)-1)
	}
}
