package collector

import (
	"runtime"
	"sync"
	"time"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/stream"
)

// minDecodeShare is the fewest records worth a goroutine of their own.
const minDecodeShare = 2048

// decode decodes a batch's records on up to GOMAXPROCS goroutines, each a
// contiguous share with its own decoder, and returns them in stream order
// (in a buffer from the pool; putDecoded returns it). They are added to the
// aggregator in that order, one batch after another, so dedup, windows and
// quarantine are exactly those of adding the records one by one.
func (c *Consumer) decode(shardID string, recs []stream.Record, now time.Time) []aggregator.Decoded {
	var out []aggregator.Decoded
	if p, _ := c.decodedPool.Get().(*[]aggregator.Decoded); p != nil && cap(*p) >= len(recs) {
		out = (*p)[:len(recs)]
	} else {
		out = make([]aggregator.Decoded, len(recs))
	}
	workers := max(1, min(runtime.GOMAXPROCS(0), len(recs)/minDecodeShare))
	for len(c.decoders) < workers {
		c.decoders = append(c.decoders, &aggregator.RecordDecoder{})
	}
	share := (len(recs) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := workers - 1; w >= 0; w-- {
		lo, hi := w*share, min(len(recs), (w+1)*share)
		run := func() {
			dec := c.decoders[w]
			for i := lo; i < hi; i++ {
				r := &recs[i]
				// The record's source is named only when it is quarantined:
				// building it for every record cost an allocation each.
				out[i] = dec.Decode(aggregator.Input{Data: r.Data, PartitionKey: r.PartitionKey, Arrival: r.Arrival}, now)
				if q := out[i].Quarantined; q != nil {
					q.Source = shardID + "/" + r.SequenceNumber
				}
			}
		}
		if w == 0 {
			run()
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	wg.Wait()
	return out
}

// putDecoded gives a batch's decoded records back to the pool once the
// aggregator has taken them.
func (c *Consumer) putDecoded(d []aggregator.Decoded) {
	clear(d)
	c.decodedPool.Put(&d)
}
