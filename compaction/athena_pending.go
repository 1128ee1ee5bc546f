package compaction

// A day large enough for Athena may take longer than the process waiting
// for it is allowed to live (a Lambda stops at 15 minutes). The queries go
// on running in Athena, so the run records them before it waits; the next
// run for the same inputs (a Lambda retry, the next schedule, the operator)
// picks them up instead of submitting them again.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// athenaPending is a started Athena compaction.
type athenaPending struct {
	Signature   string   `json:"signature"`    // of the inputs, prices, scale and location it was started for
	QueryIDs    []string `json:"query_ids"`    // chargeback, inputs, UNLOAD
	DailyBefore []string `json:"daily_before"` // daily objects that were there before the UNLOAD
}

// PendingKey is where a started Athena compaction of day is recorded until
// it commits.
func PendingKey(day string) string {
	return schemas.Partition(schemas.ChargebackPrefix, day) + "_athena/pending.json"
}

func athenaSignature(m *schemas.Manifest, loc string) string {
	h := sha256.New()
	for _, in := range m.Inputs {
		fmt.Fprintf(h, "%s\x00%d\x00%s\n", in.Key, in.Size, in.SHA256)
	}
	fmt.Fprintf(h, "prices %s scale %s location %s\n", m.PriceSHA256, strconv.Itoa(m.Scale), loc)
	return hex.EncodeToString(h.Sum(nil))
}

// readPending returns the recorded compaction of day if it was started for
// sig; a record for other inputs is stale and ignored.
func readPending(ctx context.Context, st store.Store, day, sig string) (*athenaPending, error) {
	data, err := store.ReadAll(ctx, st, PendingKey(day))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p athenaPending
	if json.Unmarshal(data, &p) != nil || p.Signature != sig || len(p.QueryIDs) != 3 {
		return nil, nil
	}
	return &p, nil
}

func writePending(ctx context.Context, st store.Store, day string, p *athenaPending) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := st.Put(ctx, PendingKey(day), bytes.NewReader(append(data, '\n'))); err != nil {
		return fmt.Errorf("recording the started Athena queries: %w", err)
	}
	return nil
}
