package compaction

import (
	"fmt"
	"strings"
	"time"

	"github.com/meter-dev/meter/infra/athena"
	"github.com/meter-dev/meter/schemas"
)

// AthenaSQL returns the query that computes day's chargeback in Athena over
// the events and prices tables: the same deduplication, pricing and sums as
// Compact. meter does not submit it; run it in Athena (engine v3).
func AthenaSQL(day string) (string, error) {
	if _, err := time.Parse(schemas.DayLayout, day); err != nil {
		return "", fmt.Errorf("bad day %q: want YYYY-MM-DD", day)
	}
	// The header comment keeps its placeholder; the query gets the day.
	i := strings.Index(athena.Compact, "\nWITH ")
	return athena.Compact[:i] + strings.ReplaceAll(athena.Compact[i:], "${DAY}", day), nil
}
