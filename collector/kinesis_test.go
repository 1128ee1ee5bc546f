package collector_test

// Servers started by this test, on 127.0.0.1: kinesalite (a local Kinesis,
// testenv.StartKinesalite) and versitygw (a real S3-API server, path-style,
// testenv.StartVersityGW). The consumer reads Kinesis across a shard split
// and writes its outputs to S3; the compaction reads them back from S3.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/big"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/schemas"
)

// checkpointLog is a store that records the order of checkpoint writes.
type checkpointLog struct {
	store.Store
	mu     sync.Mutex
	writes []collector.Checkpoint
}

func (s *checkpointLog) Put(ctx context.Context, key string, body io.Reader) error {
	if strings.HasPrefix(key, schemas.CheckpointPrefix) {
		data := readAll(nil, body)
		var cp collector.Checkpoint
		json.Unmarshal(data, &cp)
		s.mu.Lock()
		s.writes = append(s.writes, cp)
		s.mu.Unlock()
		body = bytes.NewReader(data)
	}
	return s.Store.Put(ctx, key, body)
}

func TestConsumerKinesisSplitToS3(t *testing.T) {
	k := testenv.StartKinesalite(t)
	gw := testenv.StartVersityGW(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k.CreateStream(t, "usage", 2)
	kc := k.Client()
	s3st := store.NewS3(gw.Client(), gw.Bucket(), "meter", store.S3Options{})
	st := &checkpointLog{Store: s3st}

	u := generate(t, genOptions{requests: 3000, days: usageDays, dupRate: 0.03, dupSpan: 30, poison: true, seed: 9})
	p := stream.NewKinesisProducer(kc, "usage", stream.KinesisProducerOptions{})
	src, err := stream.OpenKinesisWithOptions(ctx, kc, "usage", stream.KinesisSourceOptions{MinPollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg := consumerConfig(src, st, 500)
	half, threeQuarters := len(u.records)/2, len(u.records)*3/4
	putAll(t, p, u.records[:half])
	first := runConsumer(t, cfg)

	// More records for the shard about to split, then the split, then the rest,
	// which land in the children.
	putAll(t, p, u.records[half:threeQuarters])
	shards, err := src.Shards(ctx)
	if err != nil || len(shards) != 2 {
		t.Fatalf("shards %v, %v", shards, err)
	}
	parent := shards[0].ID
	desc, err := kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("usage")})
	if err != nil {
		t.Fatal(err)
	}
	var lo, hi big.Int
	for _, s := range desc.Shards {
		if aws.ToString(s.ShardId) == parent {
			lo.SetString(aws.ToString(s.HashKeyRange.StartingHashKey), 10)
			hi.SetString(aws.ToString(s.HashKeyRange.EndingHashKey), 10)
		}
	}
	mid := new(big.Int).Add(&lo, &hi)
	mid.Rsh(mid, 1)
	if _, err := kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("usage"), ShardToSplit: aws.String(parent),
		NewStartingHashKey: aws.String(mid.String())}); err != nil {
		t.Fatal(err)
	}
	for {
		out, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("usage")})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("stream did not become active after the split")
		}
		time.Sleep(20 * time.Millisecond)
	}
	putAll(t, p, u.records[threeQuarters:])
	shards, err = src.Shards(ctx)
	if err != nil || len(shards) != 4 {
		t.Fatalf("after the split: shards %v, %v", shards, err)
	}
	var children []string
	for _, s := range shards {
		if len(s.Parents) > 0 && s.Parents[0] == parent {
			children = append(children, s.ID)
		}
	}
	if len(children) != 2 {
		t.Fatalf("children of %s: %v", parent, children)
	}

	// A new consumer resumes from the checkpoints in S3.
	second := runConsumer(t, cfg)
	if first.Records+second.Records != len(u.records) || first.Quarantined+second.Quarantined != u.poison {
		t.Errorf("read %d+%d records (%d+%d quarantined); want %d (%d)", first.Records, second.Records,
			first.Quarantined, second.Quarantined, len(u.records), u.poison)
	}
	t.Logf("first run %+v; after the split %+v", first, second)

	// The parent was read to its end and checkpointed closed before either
	// child was checkpointed at all.
	closedAt, firstChild := -1, -1
	for i, cp := range st.writes {
		if cp.ShardID == parent && cp.Closed && closedAt < 0 {
			closedAt = i
		}
		if (cp.ShardID == children[0] || cp.ShardID == children[1]) && firstChild < 0 {
			firstChild = i
		}
	}
	if closedAt < 0 || firstChild < 0 || firstChild < closedAt {
		t.Errorf("parent %s closed at checkpoint write %d, first child checkpoint at %d", parent, closedAt, firstChild)
	}

	// Outputs in S3: exact chargeback, each event once in the raw table,
	// every Parquet object passing the page index check.
	want := u.chargeback()
	for _, d := range usageDays {
		if _, err := compaction.Compact(ctx, compaction.Config{Store: s3st, Day: d, Prices: pricingDefault(), Force: true, Now: runNow}); err != nil {
			t.Fatal(err)
		}
		compareChargeback(t, d, parseChargeback(t, getObject(t, s3st, schemas.ChargebackCSVKey(d))), want)
		wt := dayTotal(want, d)
		t.Logf("%s from S3: %d invocations, %d input tokens, total %s USD", d, wt.invocations, wt.in, wt.total)
	}
	root := filepath.Join(gw.Dir(), gw.Bucket(), "meter")
	rows := 0
	for _, f := range parquetFiles(t, root, "events") {
		r, err := parquetio.ReadFile[schemas.EventRow](f)
		if err != nil {
			t.Fatal(err)
		}
		rows += len(r)
	}
	if rows != len(u.events) {
		t.Errorf("events in S3: %d rows for %d events", rows, len(u.events))
	}
	if files := parquetFiles(t, root, "daily"); len(files) != len(usageDays) {
		t.Errorf("daily objects in S3: %v", files)
	}
	var windowRequests int64
	for _, w := range sumWindows(readWindows(t, root)) {
		windowRequests += w.requests
	}
	if windowRequests < int64(len(u.requests)) || windowRequests > int64(len(u.events)) {
		t.Errorf("usage_windows counts %d requests for %d sent in %d events", windowRequests, len(u.requests), len(u.events))
	}
	objs, err := s3st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d objects in s3://%s/meter/; usage_windows counts %d requests for %d", len(objs), gw.Bucket(), windowRequests, len(u.requests))
}
