package collector

import (
	"runtime"
	"sync"
	"time"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/schemas"
)

// minDecodeShare is the fewest records worth a goroutine of their own.
const minDecodeShare = 2048

// decodedBatch is a batch's records decoded: the valid events' rows and the
// quarantined records, each in stream order.
type decodedBatch struct {
	rows        []schemas.EventRow
	quarantined []*aggregator.Quarantined
}

// decode decodes a batch's records on up to GOMAXPROCS goroutines, each a
// contiguous share with its own decoder. The rows and the quarantined
// records come back each in stream order, and are added to the aggregator
// one batch after another (AddRows, AddDecoded), so dedup, windows and
// quarantine are exactly those of adding the records one by one (rows and
// quarantine are separate lists in a batch).
func (c *Consumer) decode(shardID string, recs []stream.Record, now time.Time) decodedBatch {
	rows := make([]schemas.EventRow, len(recs))
	workers := max(1, min(runtime.GOMAXPROCS(0), len(recs)/minDecodeShare))
	for len(c.decoders) < workers {
		c.decoders = append(c.decoders, &aggregator.RecordDecoder{})
	}
	share := (len(recs) + workers - 1) / workers
	ends := make([]int, workers) // where each share's rows end
	quarantined := make([][]*aggregator.Quarantined, workers)
	var wg sync.WaitGroup
	for w := workers - 1; w >= 0; w-- {
		lo, hi := w*share, min(len(recs), (w+1)*share)
		run := func() {
			dec := c.decoders[w]
			k := lo
			for i := lo; i < hi; i++ {
				r := &recs[i]
				q := dec.DecodeTo(aggregator.Input{Data: r.Data, PartitionKey: r.PartitionKey, Arrival: r.Arrival}, now, &rows[k])
				if q == nil {
					k++
					continue
				}
				// The record's source is named only when it is quarantined:
				// building it for every record cost an allocation each.
				q.Source = shardID + "/" + r.SequenceNumber
				quarantined[w] = append(quarantined[w], q)
			}
			ends[w] = k
		}
		if w == 0 {
			run()
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	wg.Wait()
	var out decodedBatch
	n := 0
	for w := range workers {
		if lo := w * share; n == lo {
			n = ends[w]
		} else { // records before this share were quarantined
			n += copy(rows[n:], rows[lo:ends[w]])
		}
		out.quarantined = append(out.quarantined, quarantined[w]...)
	}
	clear(rows[n:])
	out.rows = rows[:n:n]
	return out
}
