package collector_test

import (
	"bytes"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"testing"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
)

// A batch is decoded in shares on several goroutines: what the consumer
// writes must be exactly what adding its records one by one gives, the
// quarantined records (spread over every share) in stream order with their
// sources, the duplicates of records decoded by another goroutine dropped
// from the windows.
func TestConsumerDecodesInSharesAsOneByOne(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	u := generate(t, genOptions{requests: 20000, days: usageDays, dupRate: 0.05, dupSpan: 9000, poison: true, seed: 11})
	shard := stream.ShardName(0)
	var recs []stream.Record
	for i, e := range u.records {
		data, key := e.Data, e.PartitionKey
		switch i % 1499 {
		case 3:
			data, key = []byte(`{"schema_version":1,"event_id":`), fmt.Sprintf("malformed/in.jsonl:%d", i)
		case 700:
			data = bytes.Replace(data, []byte(`"team_id":"`), []byte(`"team_id":"bad team `), 1)
		}
		recs = append(recs, stream.Record{ShardID: shard, SequenceNumber: stream.FormatFileSeq(int64(1000 + i)), PartitionKey: key, Data: data})
	}
	batch := len(recs) // one batch: every share of it on its own goroutine
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := consumerConfig(&recordSource{shard: shard, recs: recs}, st, batch)
	stats := runConsumer(t, cfg)
	if stats.Batches != 1 || stats.Quarantined < 2*len(recs)/1499 {
		t.Fatalf("stats %+v: want one batch with at least %d quarantined", stats, 2*len(recs)/1499)
	}

	agg := aggregator.New(cfg.Aggregator)
	for _, r := range recs {
		agg.Add(aggregator.Input{Data: r.Data, Source: shard + "/" + r.SequenceNumber, PartitionKey: r.PartitionKey}, runNow())
	}
	b := agg.Flush()
	if b.Duplicates != stats.Duplicates || len(b.Quarantined) != stats.Quarantined || b.Events != stats.Events {
		t.Fatalf("consumer counted %+v, one by one %d events, %d duplicates, %d quarantined", stats, b.Events, b.Duplicates, len(b.Quarantined))
	}
	want, err := collector.EncodeBatch(b, collector.BatchName(shard, recs[0].SequenceNumber, recs[len(recs)-1].SequenceNumber), parquetio.Options{}, runNow())
	if err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, st)
	for _, o := range want {
		if _, ok := got[o.Key]; !ok {
			got[o.Key] = getObject(t, st, o.Key) // the quarantine object
		}
		if !bytes.Equal(got[o.Key], o.Body) {
			t.Errorf("%s differs from the one-by-one batch's (%d bytes against %d)", o.Key, len(got[o.Key]), len(o.Body))
		}
		delete(got, o.Key)
	}
	if len(got) != 0 {
		t.Errorf("objects the one-by-one batch does not have: %v", slices.Sorted(maps.Keys(got)))
	}
}
