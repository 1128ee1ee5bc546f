package aggregator

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/schemas"
)

// BucketRows over the rows a spilled bucket holds gives what Bucket gives
// over the events: the same rows in the same order, the same sums, counts
// and unpriced usage; duplicates (earlier and later, equal times broken by
// event id), other days, unpriced models and sums past the fixed-point
// range included.
func TestBucketRowsIsBucket(t *testing.T) {
	book, err := pricing.Parse(strings.NewReader(prices), "test")
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(3, 4))
	var events []schemas.Event
	for i := range 5000 {
		ts := day.Add(time.Duration(rng.IntN(26*3600*1000)-3600*1000) * time.Millisecond)
		model := []string{"m1", "m1", "img", "nope"}[rng.IntN(4)]
		e := event(fmt.Sprintf("r%d", rng.IntN(4000)), []string{"a", "b", "c"}[rng.IntN(3)], model, ts, int64(rng.IntN(9000)), int64(rng.IntN(900)))
		e.EventID = fmt.Sprintf("ev-%d", i)
		if i%97 == 0 {
			e.InputTokens = 1 << 62 // past the fixed-point sums: priced with decimals
		}
		if model == "img" {
			e.ImageCount = int64(rng.IntN(3))
		}
		events = append(events, e)
		if i%50 == 0 { // the same request again, same time, another event id
			d := e
			d.EventID = fmt.Sprintf("ev-%d-b", i)
			events = append(events, d)
		}
	}
	a, err := NewCompactor("2026-11-25", book)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewCompactor("2026-11-25", book)
	rows := make([]schemas.DailyRow, len(events))
	for i := range events {
		rows[i].SetEvent(&events[i])
	}
	want, err := a.Bucket(append([]schemas.Event(nil), events...))
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.BucketRows(rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 1000 || len(a.unpriced) == 0 || a.Duplicates == 0 || a.OtherDay == 0 {
		t.Fatalf("the day does not test much: %d rows, %d unpriced groups, %d duplicates, %d other day", len(want), len(a.unpriced), a.Duplicates, a.OtherDay)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows differ: %d against %d", len(got), len(want))
	}
	if ra, rb := a.Result(), b.Result(); !reflect.DeepEqual(ra, rb) || a.Requests != b.Requests {
		t.Fatalf("results differ:\n%+v\n%+v", ra, rb)
	}
}
