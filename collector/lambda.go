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
	Seq  string `json:"seq"`
	Key  string `json:"key"`
	Data []byte `json:"data"`
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
				recs = append(recs, stagedRecord{Seq: u.SequenceNumber, Key: u.PartitionKey, Data: u.Data})
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
			agg.Add(aggregator.Input{Data: r.Data, Source: ev.ShardID + "/" + r.Seq, PartitionKey: r.Key}, at)
		}
	}
	name := BatchName(ev.ShardID, state[stateFirst], state[stateLast])
	arrived, err := time.Parse(time.RFC3339Nano, state[stateArrival])
	if err != nil {
		arrived = at
	}
	if _, err := WriteBatch(ctx, h.cfg.Store, agg.Flush(), name, h.cfg.Parquet, arrived); err != nil {
		// Returning the error makes Lambda retry the window's final invocation;
		// the staged records stay until it succeeds.
		return resp, err
	}
	for _, key := range staged {
		h.cfg.Store.Delete(ctx, key)
	}
	resp.State = map[string]string{}
	return resp, nil
}

// stagingKey is where an invocation's records wait for the window's end.
func stagingKey(shardID, first, last string) string {
	return "_staging/" + strings.ReplaceAll(shardID, "/", "_") + "/" + first + "-" + last + ".jsonl"
}
