package collector_test

// The Lambda handler over Kinesis tumbling-window events shaped exactly as
// Lambda sends them (testdata/lambda/ at the top of the repository, modelled on AWS's documented
// KinesisTimeWindowEvent sample); no server. Regenerate the fixtures with
// go test ./collector -run TestWindowHandler -update.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files under ../testdata/lambda/")

const (
	lambdaShard  = "shardId-000000000006"
	lambdaStream = "arn:aws:kinesis:us-east-1:123456789012:stream/meter-usage"
	// lambdaSeq0 is the first sequence number, as long as Kinesis's are.
	lambdaSeq0 = "49590338271490256608559692538361571095921575989136588898"
)

var lambdaFixtures = []string{"window-1.json", "window-2.json", "window-3-final.json"}

// writeLambdaFixtures writes three invocations of one 5-minute window: 4, 4
// and 3 records, a duplicate request in the second and a malformed record in
// the third. Each carries the state the previous invocation returns.
func writeLambdaFixtures(t *testing.T) {
	u := generate(t, genOptions{requests: 10, days: usageDays[:1], seed: 5})
	// The records reach the stream just after the day their events are of:
	// late, as events may be, never ahead of their own time.
	start := time.Date(2026, 11, 26, 0, 30, 0, 0, time.UTC)
	var recs []stream.Record
	seq := new(big.Int)
	seq.SetString(lambdaSeq0, 10)
	add := func(key string, data []byte) {
		recs = append(recs, stream.Record{ShardID: lambdaShard, SequenceNumber: seq.String(), PartitionKey: key,
			Arrival: start.Add(time.Duration(len(recs)) * 7 * time.Second), Data: data})
		seq.Add(seq, big.NewInt(1_000_000_000_000_000))
	}
	for i, e := range u.events[:10] {
		data, _ := json.Marshal(e)
		add(e.RequestID, data)
		if i == 5 {
			d := e
			d.EventID += "-redelivered"
			data, _ := json.Marshal(d)
			add(d.RequestID, data)
		}
	}
	add("malformed/batch.jsonl:3", []byte(`{"schema_version":1,"request_id":"req-x",`))
	h := mustWindowHandler(t, collector.WindowConfig{Store: mustFileStore(t, t.TempDir()), Now: runNow})
	state := map[string]string{}
	for i, part := range [][]stream.Record{recs[:4], recs[4:8], recs[8:]} {
		ev := events.KinesisTimeWindowEvent{}
		for _, r := range part {
			ev.Records = append(ev.Records, events.KinesisEventRecord{
				AwsRegion: "us-east-1", EventID: lambdaShard + ":" + r.SequenceNumber, EventName: "aws:kinesis:record",
				EventSource: "aws:kinesis", EventSourceArn: lambdaStream, EventVersion: "1.0",
				InvokeIdentityArn: "arn:aws:iam::123456789012:role/meter-aggregator",
				Kinesis: events.KinesisRecord{ApproximateArrivalTimestamp: events.SecondsEpochTime{Time: r.Arrival}, Data: r.Data,
					PartitionKey: r.PartitionKey, SequenceNumber: r.SequenceNumber, KinesisSchemaVersion: "1.0"}})
		}
		ev.Window = events.Window{Start: events.RFC3339EpochTime{Time: start}, End: events.RFC3339EpochTime{Time: start.Add(5 * time.Minute)}}
		ev.State, ev.ShardID, ev.EventSourceARN = state, lambdaShard, lambdaStream
		ev.IsFinalInvokeForWindow = i == 2
		data, err := json.MarshalIndent(ev, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "testdata", "lambda", lambdaFixtures[i]), append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		resp, err := h.Handle(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		state = resp.State
	}
}

func mustFileStore(t testing.TB, dir string) *store.FileStore {
	t.Helper()
	st, err := store.OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func loadLambdaFixtures(t *testing.T) []events.KinesisTimeWindowEvent {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Join("..", "testdata", "lambda"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeLambdaFixtures(t)
	}
	var out []events.KinesisTimeWindowEvent
	for _, name := range lambdaFixtures {
		data, err := os.ReadFile(filepath.Join("..", "testdata", "lambda", name))
		if err != nil {
			t.Fatal(err)
		}
		// The raw JSON has exactly the fields Lambda sends, by Lambda's names.
		var raw map[string]any
		if err := json.Unmarshal(data, &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"Records", "window", "state", "shardId", "eventSourceARN", "isFinalInvokeForWindow", "isWindowTerminatedEarly"} {
			if _, ok := raw[k]; !ok {
				t.Fatalf("%s has no %q", name, k)
			}
		}
		rec := raw["Records"].([]any)[0].(map[string]any)
		for _, k := range []string{"kinesis", "eventSource", "eventVersion", "eventID", "eventName", "invokeIdentityArn", "awsRegion", "eventSourceARN"} {
			if _, ok := rec[k]; !ok {
				t.Fatalf("%s: record has no %q", name, k)
			}
		}
		kin := rec["kinesis"].(map[string]any)
		for _, k := range []string{"kinesisSchemaVersion", "partitionKey", "sequenceNumber", "data", "approximateArrivalTimestamp"} {
			if _, ok := kin[k]; !ok {
				t.Fatalf("%s: kinesis record has no %q", name, k)
			}
		}
		if _, ok := kin["approximateArrivalTimestamp"].(float64); !ok {
			t.Fatalf("%s: approximateArrivalTimestamp is not epoch seconds", name)
		}
		var ev events.KinesisTimeWindowEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// recordSource is the stream as a list of records already read: the records
// the Lambda fixtures carry, for a Consumer to read the same way.
type recordSource struct {
	shard string
	recs  []stream.Record
}

func (s *recordSource) Shards(context.Context) ([]stream.Shard, error) {
	return []stream.Shard{{ID: s.shard}}, nil
}

func (s *recordSource) Open(_ context.Context, shardID string, from stream.Start) (stream.Iterator, error) {
	if shardID != s.shard || from.Kind != stream.TrimHorizon {
		return nil, fmt.Errorf("open %s from %v: not supported here", shardID, from)
	}
	return &recordIterator{recs: s.recs}, nil
}

type recordIterator struct{ recs []stream.Record }

func (it *recordIterator) Next(_ context.Context, max int) ([]stream.Record, error) {
	n := min(max, len(it.recs))
	out := it.recs[:n]
	it.recs = it.recs[n:]
	return out, nil
}

func (it *recordIterator) Close() error { return nil }

// tableObjects returns the objects of the tables a batch writes, and the
// keys left anywhere else except checkpoints.
func tableObjects(t *testing.T, st store.Store) (tables map[string][]byte, other []string) {
	t.Helper()
	objs, err := st.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	tables = map[string][]byte{}
	for _, o := range objs {
		switch {
		case strings.HasPrefix(o.Key, schemas.EventsPrefix), strings.HasPrefix(o.Key, schemas.WindowsPrefix), strings.HasPrefix(o.Key, schemas.QuarantinePrefix):
			tables[o.Key] = getObject(t, st, o.Key)
		case strings.HasPrefix(o.Key, schemas.CheckpointPrefix):
		default:
			other = append(other, o.Key)
		}
	}
	return tables, other
}

func TestWindowHandlerWritesWhatTheConsumerWrites(t *testing.T) {
	evs := loadLambdaFixtures(t)
	ctx := context.Background()
	st := mustFileStore(t, t.TempDir())
	var stdout bytes.Buffer
	h := mustWindowHandler(t, collector.WindowConfig{Store: st, Now: runNow, Metrics: metrics.NewEMF(&stdout)})

	var all []stream.Record
	state := map[string]string{}
	for i, ev := range evs {
		if ev.ShardID != lambdaShard || ev.EventSourceARN != lambdaStream || ev.IsWindowTerminatedEarly ||
			ev.IsFinalInvokeForWindow != (i == len(evs)-1) || ev.Window.End.Sub(ev.Window.Start.Time) != 5*time.Minute {
			t.Fatalf("%s: window properties %+v", lambdaFixtures[i], ev.TimeWindowProperties)
		}
		// Lambda hands each invocation the state the previous one returned.
		if !maps.Equal(ev.State, state) {
			t.Fatalf("%s: state %v; the previous invocation returned %v", lambdaFixtures[i], ev.State, state)
		}
		for _, r := range ev.Records {
			if r.EventSource != "aws:kinesis" || r.EventID != lambdaShard+":"+r.Kinesis.SequenceNumber {
				t.Fatalf("%s: record %+v", lambdaFixtures[i], r)
			}
			all = append(all, stream.Record{ShardID: ev.ShardID, SequenceNumber: r.Kinesis.SequenceNumber,
				PartitionKey: r.Kinesis.PartitionKey, Arrival: r.Kinesis.ApproximateArrivalTimestamp.Time, Data: r.Kinesis.Data})
		}
		resp, err := h.Handle(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.BatchItemFailures) != 0 {
			t.Fatalf("%s: batch item failures %v", lambdaFixtures[i], resp.BatchItemFailures)
		}
		tables, other := tableObjects(t, st)
		if !ev.IsFinalInvokeForWindow {
			if len(tables) != 0 {
				t.Fatalf("after %s, before the window's end, the table objects %v exist", lambdaFixtures[i], slicesKeys(tables))
			}
			if len(other) != i+1 {
				t.Fatalf("after %s: staged %v", lambdaFixtures[i], other)
			}
		} else {
			if len(other) != 0 {
				t.Errorf("staged records left after the final invocation: %v", other)
			}
			if len(resp.State) != 0 {
				t.Errorf("final invocation returned state %v", resp.State)
			}
		}
		state = resp.State
	}
	lambdaOut, _ := tableObjects(t, st)
	if len(lambdaOut) != 3 {
		t.Errorf("the window wrote %v; want events, usage_windows and quarantine", slicesKeys(lambdaOut))
	}

	// The Consumer, reading the same records in one batch, writes the same
	// objects under the same names, byte for byte.
	cst := mustFileStore(t, t.TempDir())
	stats := runConsumer(t, collector.Config{Source: &recordSource{shard: lambdaShard, recs: all}, Store: cst, Now: runNow})
	if stats.Batches != 1 || stats.Records != len(all) || stats.Quarantined != 1 || stats.Duplicates != 1 ||
		stats.QuarantinedBy[aggregator.QuarantineMalformed]+stats.QuarantinedBy[aggregator.QuarantineInvalid] != stats.Quarantined {
		t.Errorf("consumer stats %+v", stats)
	}
	consumerOut, _ := tableObjects(t, cst)

	// The handler's stdout holds valid EMF lines whose values are what the
	// window processed (the same counts the consumer reports).
	got := map[string]float64{}
	for _, line := range bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n")) {
		vals, err := metrics.ParseEMF(line)
		if err != nil {
			t.Fatalf("EMF line %s: %v", line, err)
		}
		var doc map[string]any
		json.Unmarshal(line, &doc)
		for k, v := range vals {
			if k == metrics.CollectorQuarantined {
				k += "/" + doc["reason"].(string)
			}
			got[k] += v
		}
	}
	quarantinedOf := func(kind string) float64 { return got[metrics.CollectorQuarantined+"/"+kind] }
	if got[metrics.CollectorRecords] != float64(stats.Records) || got[metrics.CollectorEvents] != float64(stats.Events) ||
		got[metrics.CollectorDuplicates] != float64(stats.Duplicates) || got[metrics.CollectorFailures] != 0 ||
		quarantinedOf("malformed")+quarantinedOf("invalid") != float64(stats.Quarantined) || got[metrics.CollectorIteratorAgeMS] <= 0 {
		t.Errorf("EMF values %v; the consumer counted %+v", got, stats)
	}
	if !reflect.DeepEqual(slicesKeys(lambdaOut), slicesKeys(consumerOut)) {
		t.Fatalf("object names differ:\nlambda   %v\nconsumer %v", slicesKeys(lambdaOut), slicesKeys(consumerOut))
	}
	for k, b := range lambdaOut {
		if !bytes.Equal(b, consumerOut[k]) {
			t.Errorf("%s differs between the Lambda handler (%d bytes) and the consumer (%d bytes)", k, len(b), len(consumerOut[k]))
		}
	}
	want := BatchNameOf(all)
	for k := range lambdaOut {
		if !strings.Contains(k, want) {
			t.Errorf("%s is not named for the window's records %s", k, want)
		}
	}
	t.Logf("3 invocations, %d records: %v", len(all), slicesKeys(lambdaOut))
}

// BatchNameOf is the name the first and last records give a batch.
func BatchNameOf(recs []stream.Record) string {
	return collector.BatchName(recs[0].ShardID, recs[0].SequenceNumber, recs[len(recs)-1].SequenceNumber)
}

func slicesKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// stagingFailStore is the file store whose staging writes fail.
type stagingFailStore struct{ store.Store }

func (s stagingFailStore) Put(ctx context.Context, key string, body io.Reader) error {
	if strings.HasPrefix(key, "_staging/") {
		return errors.New("store unavailable")
	}
	return s.Store.Put(ctx, key, body)
}

// TestWindowHandlerReportsBatchItemFailure: when an invocation cannot stage its
// records it reports its first record as failed and keeps the state it was
// given, so Lambda retries the batch; the retry then completes the window.
func TestWindowHandlerReportsBatchItemFailure(t *testing.T) {
	evs := loadLambdaFixtures(t)
	ctx := context.Background()
	st := mustFileStore(t, t.TempDir())
	ok := mustWindowHandler(t, collector.WindowConfig{Store: st, Now: runNow})
	resp, err := ok.Handle(ctx, evs[0])
	if err != nil {
		t.Fatal(err)
	}
	second := evs[1]
	second.State = resp.State
	failing := mustWindowHandler(t, collector.WindowConfig{Store: stagingFailStore{st}, Now: runNow})
	fail, err := failing.Handle(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	wantFailure := []events.KinesisBatchItemFailure{{ItemIdentifier: second.Records[0].Kinesis.SequenceNumber}}
	if !reflect.DeepEqual(fail.BatchItemFailures, wantFailure) || !maps.Equal(fail.State, second.State) {
		t.Fatalf("failed staging answered %+v; want failures %v and the state it was given", fail, wantFailure)
	}
	// Lambda retries the batch with the same state; then the window ends.
	retry, err := ok.Handle(ctx, second)
	if err != nil || len(retry.BatchItemFailures) != 0 {
		t.Fatalf("retry: %+v, %v", retry, err)
	}
	final := evs[2]
	final.State = retry.State
	if _, err := ok.Handle(ctx, final); err != nil {
		t.Fatal(err)
	}
	out, other := tableObjects(t, st)
	if len(out) != 3 || len(other) != 0 {
		t.Fatalf("after the retried window: %v, left %v", slicesKeys(out), other)
	}
	// The same outputs as a window that never failed.
	clean := mustFileStore(t, t.TempDir())
	h := mustWindowHandler(t, collector.WindowConfig{Store: clean, Now: runNow})
	state := map[string]string{}
	for _, ev := range evs {
		ev.State = state
		r, err := h.Handle(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		state = r.State
	}
	want, _ := tableObjects(t, clean)
	if !maps.EqualFunc(out, want, bytes.Equal) {
		t.Errorf("a window with a retried batch wrote other outputs than one without")
	}
}

func mustWindowHandler(t testing.TB, cfg collector.WindowConfig) *collector.WindowHandler {
	t.Helper()
	h, err := collector.NewWindowHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
