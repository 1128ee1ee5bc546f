package aggregator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/meter-dev/meter/schemas"
)

// TestSortDailyOrdersByCompareDaily: the packed-key sort gives the order
// CompareDaily defines, on rows whose teams, models, times and request ids
// repeat and tie in every combination.
func TestSortDailyOrdersByCompareDaily(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for _, n := range []int{0, 1, 2, 17, 5000} {
		rows := make([]schemas.DailyRow, n)
		for i := range rows {
			rows[i] = schemas.DailyRow{
				TeamID: fmt.Sprintf("team-%d", rng.IntN(4)), ModelID: fmt.Sprintf("model-%d", rng.IntN(3)),
				Timestamp: int64(rng.IntN(50)), RequestID: fmt.Sprintf("req-%d", rng.IntN(n+1)), InputTokens: int64(i),
			}
		}
		want := slices.Clone(rows)
		slices.SortStableFunc(want, func(a, b schemas.DailyRow) int { return CompareDaily(&a, &b) })
		got := slices.Clone(rows)
		SortDaily(got)
		for i := range got {
			if CompareDaily(&got[i], &want[i]) != 0 {
				t.Fatalf("n=%d: row %d is %+v, want %+v", n, i, got[i], want[i])
			}
		}
		// Nothing lost or repeated: the rows are a permutation of the input.
		seen := make([]bool, n)
		for _, r := range got {
			if seen[r.InputTokens] {
				t.Fatalf("n=%d: row %d twice", n, r.InputTokens)
			}
			seen[r.InputTokens] = true
		}
	}
}
