package stream_test

// The stream contract (internal/stream/streamtest) run over both streams:
// the embedded file stream in a temporary directory, and Kinesis as
// kinesalite on 127.0.0.1, started per test by testenv.StartKinesalite
// (skipped, loudly, when it is not installed; a failure under
// METER_REQUIRE_SERVERS).

import (
	"context"
	"fmt"
	"math/big"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/internal/stream/streamtest"
	"github.com/meter-dev/meter/internal/testenv"
)

func TestFileStreamContract(t *testing.T) {
	for _, c := range []struct {
		name string
		// source returns the Source of the stream in dir that w writes.
		source func(t *testing.T, dir string, w *stream.FileStream) stream.Source
	}{
		{"one-handle", func(t *testing.T, dir string, w *stream.FileStream) stream.Source { return w }},
		{"read-only-source", func(t *testing.T, dir string, w *stream.FileStream) stream.Source {
			// As the aggregator reads what the collector writes: through
			// its location, read-only, with no lock.
			src, closeSrc, err := stream.OpenSource(t.Context(), "file://"+dir)
			if err != nil {
				t.Fatalf("opening file://%s read-only: %v", dir, err)
			}
			t.Cleanup(func() { closeSrc() })
			return src
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			streamtest.Run(t, streamtest.Harness{
				New: func(t *testing.T, shards int) streamtest.Stream {
					dir := filepath.Join(t.TempDir(), "stream")
					w, err := stream.OpenFile(dir, stream.FileOptions{Shards: shards})
					if err != nil {
						t.Fatalf("creating a file stream of %d shards in %s: %v", shards, dir, err)
					}
					t.Cleanup(func() { w.Close() })
					// The file stream never reshards: no Split.
					return streamtest.Stream{Producer: w, Source: c.source(t, dir, w)}
				},
			})
		})
	}
}

func TestKinesisStreamContract(t *testing.T) {
	k := testenv.StartKinesalite(t)
	client := k.Client()
	var streams atomic.Int64
	streamtest.Run(t, streamtest.Harness{
		New: func(t *testing.T, shards int) streamtest.Stream {
			name := fmt.Sprintf("contract-%d", streams.Add(1))
			k.CreateStream(t, name, shards)
			t.Cleanup(func() {
				// Open shards count against kinesalite's shard limit.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := client.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(name)}); err != nil {
					t.Logf("deleting stream %s: %v", name, err)
				}
			})
			src, err := stream.OpenKinesisWithOptions(t.Context(), client, name, stream.KinesisSourceOptions{
				MinPollInterval:    20 * time.Millisecond,
				AtTimestampTimeout: time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			return streamtest.Stream{
				Producer: stream.NewKinesisProducer(client, name, stream.KinesisProducerOptions{}),
				Source:   src,
				Split:    func(t *testing.T, shardID string) { splitKinesisShard(t, k, name, shardID) },
			}
		},
		DeaggregatesKPL: true,
		Reshards:        true,
		// Where KinesisSource and KinesisProducer depart from the contract
		// in stream.go (the file stream keeps it). Each entry is a bug to
		// fix in kinesis.go or kinesis_producer.go, then delete here.
	})
}

// splitKinesisShard splits shardID at the middle of its hash key range and
// waits until the stream is ACTIVE again, with the two children in place.
func splitKinesisShard(t *testing.T, k *testenv.Kinesalite, streamName, shardID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client := k.Client()
	out, err := client.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(streamName)})
	if err != nil {
		t.Fatalf("listing shards of %s: %v", streamName, err)
	}
	var mid *big.Int
	for _, sh := range out.Shards {
		if aws.ToString(sh.ShardId) != shardID {
			continue
		}
		lo, ok1 := new(big.Int).SetString(aws.ToString(sh.HashKeyRange.StartingHashKey), 10)
		hi, ok2 := new(big.Int).SetString(aws.ToString(sh.HashKeyRange.EndingHashKey), 10)
		if !ok1 || !ok2 {
			t.Fatalf("shard %s: hash key range %+v", shardID, sh.HashKeyRange)
		}
		mid = new(big.Int).Add(lo, hi)
		mid.Add(mid, big.NewInt(1)).Rsh(mid, 1)
	}
	if mid == nil {
		t.Fatalf("no shard %s in %s", shardID, streamName)
	}
	if _, err := client.SplitShard(ctx, &kinesis.SplitShardInput{
		StreamName: aws.String(streamName), ShardToSplit: aws.String(shardID), NewStartingHashKey: aws.String(mid.String()),
	}); err != nil {
		t.Fatalf("splitting %s/%s: %v", streamName, shardID, err)
	}
	k.WaitActive(t, streamName)
}
