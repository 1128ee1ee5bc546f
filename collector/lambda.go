package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/metrics"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/internal/stream"
)

// WindowHandler is the collector as a Lambda function on a Kinesis event source
// with tumbling windows. Each invocation stages its records durably in the store
// and carries only their keys in the window state (state is capped at 1 MB);
// the window's final invocation aggregates every staged record and writes the
// same outputs a consumer batch of those records would: the same object names
// (shard and sequence range) and the same bytes. A retried invocation stages
// under the same key, so it replaces rather than duplicates.
type WindowHandler struct {
	cfg WindowConfig
}

// WindowConfig wires a WindowHandler.
type WindowConfig struct {
	Store      store.Store
	Aggregator aggregator.Config
	Parquet    parquetio.Options
	Now        func() time.Time // default time.Now
	// Metrics receives one CloudWatch EMF line per window written (stdout in Lambda).
	Metrics *metrics.EMF
}

// Validate reports the first thing wrong with cfg; zero values take defaults.
func (cfg *WindowConfig) Validate() error {
	if cfg.Store == nil {
		return errors.New("collector: no store to write (WindowConfig.Store)")
	}
	return cfg.Aggregator.Validate()
}

// NewWindowHandler returns the handler of a valid cfg.
func NewWindowHandler(cfg WindowConfig) (*WindowHandler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &WindowHandler{cfg: cfg}, nil
}

// State keys carried between the invocations of one window.
const (
	stateStaged  = "staged"  // JSON array of staging keys, in order
	stateFirst   = "first"   // sequence number of the window's first record
	stateLast    = "last"    // sequence number of the window's last record
	stateArrival = "arrival" // arrival time of the window's first record (RFC 3339)
)

type stagedRecord struct {
	Seq     string    `json:"seq"`
	Key     string    `json:"key"`
	Arrival time.Time `json:"arrival"`
	Data    []byte    `json:"data"`
}

// Handle processes one invocation.
func (h *WindowHandler) Handle(ctx context.Context, ev events.KinesisTimeWindowEvent) (events.KinesisTimeWindowEventResponse, error) {
	now := h.cfg.Now
	state := map[string]string{}
	for k, v := range ev.State {
		state[k] = v
	}
	var staged []string
	if s := state[stateStaged]; s != "" {
		if err := json.Unmarshal([]byte(s), &staged); err != nil {
			return events.KinesisTimeWindowEventResponse{}, fmt.Errorf("window state is corrupt: %w", err)
		}
	}
	resp := events.KinesisTimeWindowEventResponse{}
	if len(ev.Records) > 0 {
		var recs []stagedRecord
		for _, r := range ev.Records {
			k := r.Kinesis
			for _, u := range stream.Deaggregate(ev.ShardID, k.SequenceNumber, k.PartitionKey, k.ApproximateArrivalTimestamp.Time, k.Data) {
				recs = append(recs, stagedRecord{Seq: u.SequenceNumber, Key: u.PartitionKey, Arrival: u.Arrival, Data: u.Data})
			}
		}
		first, last := ev.Records[0].Kinesis.SequenceNumber, ev.Records[len(ev.Records)-1].Kinesis.SequenceNumber
		key := stagingKey(ev.ShardID, first, last)
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		for _, r := range recs {
			enc.Encode(r)
		}
		if err := h.cfg.Store.Put(ctx, key, &buf); err != nil {
			// Nothing of this batch is staged: have Lambda retry it from its first record.
			resp.BatchItemFailures = []events.KinesisBatchItemFailure{{ItemIdentifier: first}}
			resp.State = ev.State
			return resp, nil
		}
		staged = append(staged, key)
		if state[stateFirst] == "" {
			state[stateFirst] = recs[0].Seq
			state[stateArrival] = ev.Records[0].Kinesis.ApproximateArrivalTimestamp.UTC().Format(time.RFC3339Nano)
		}
		state[stateLast] = recs[len(recs)-1].Seq
		b, _ := json.Marshal(staged)
		state[stateStaged] = string(b)
	}
	if !ev.IsFinalInvokeForWindow || len(staged) == 0 {
		resp.State = state
		return resp, nil
	}
	agg := aggregator.New(h.cfg.Aggregator)
	at := now()
	records := 0
	for _, key := range staged {
		data, err := store.ReadAll(ctx, h.cfg.Store, key)
		if err != nil {
			return resp, fmt.Errorf("staged records: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		for dec.More() {
			var r stagedRecord
			if err := dec.Decode(&r); err != nil {
				return resp, fmt.Errorf("staged records %s are corrupt: %w", key, err)
			}
			agg.Add(aggregator.Input{Data: r.Data, Source: ev.ShardID + "/" + r.Seq, PartitionKey: r.Key, Arrival: r.Arrival}, at)
			records++
		}
	}
	name := BatchName(ev.ShardID, state[stateFirst], state[stateLast])
	arrived, err := time.Parse(time.RFC3339Nano, state[stateArrival])
	if err != nil {
		arrived = at
	}
	batch := agg.Flush()
	if _, err := WriteBatch(ctx, h.cfg.Store, batch, name, h.cfg.Parquet, arrived); err != nil {
		// Returning the error makes Lambda retry the window's final invocation;
		// the staged records stay until it succeeds.
		h.cfg.Metrics.Write(map[string]string{"stage": "collector"}, []metrics.Value{{Name: metrics.CollectorFailures, Value: 1, Unit: "Count"}},
			map[string]any{"shard": ev.ShardID, "error": err.Error()})
		return resp, err
	}
	h.emitWindow(ev.ShardID, records, batch, at.Sub(arrived))
	for _, key := range staged {
		h.cfg.Store.Delete(ctx, key)
	}
	resp.State = map[string]string{}
	return resp, nil
}

// emitWindow writes the window's EMF line: what it read, wrote, dropped and
// quarantined (by kind), and how old its first record was when written.
func (h *WindowHandler) emitWindow(shard string, records int, b aggregator.Batch, age time.Duration) {
	kinds := map[string]int{aggregator.QuarantineMalformed: 0, aggregator.QuarantineInvalid: 0}
	for _, q := range b.Quarantined {
		kinds[q.Kind]++
	}
	for kind, n := range kinds {
		h.cfg.Metrics.Write(map[string]string{"stage": "collector", "reason": kind},
			[]metrics.Value{{Name: metrics.CollectorQuarantined, Value: float64(n), Unit: "Count"}}, map[string]any{"shard": shard})
	}
	h.cfg.Metrics.Write(map[string]string{"stage": "collector"}, []metrics.Value{
		{Name: metrics.CollectorRecords, Value: float64(records), Unit: "Count"},
		{Name: metrics.CollectorEvents, Value: float64(b.Events), Unit: "Count"},
		{Name: metrics.CollectorDuplicates, Value: float64(b.Duplicates), Unit: "Count"},
		{Name: metrics.CollectorFailures, Value: 0, Unit: "Count"},
		{Name: metrics.CollectorIteratorAgeMS, Value: float64(max(age, 0).Milliseconds()), Unit: "Milliseconds"},
	}, map[string]any{"shard": shard})
}

// stagingKey is where an invocation's records wait for the window's end.
func stagingKey(shardID, first, last string) string {
	return "_staging/" + strings.ReplaceAll(shardID, "/", "_") + "/" + first + "-" + last + ".jsonl"
}
