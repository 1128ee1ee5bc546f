package compaction_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/compaction"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// TestUnpricedModelDoesNotFailTheOtherTeams: a successful call of a model with
// no price leaves that usage out (listed in the manifest, reported as an
// error), while every priced row is billed as usual.
func TestUnpricedModelDoesNotFailTheOtherTeams(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	putFixtureEvents(t, st)
	// The fixture price file without the embedding model's price.
	book, err := pricing.Parse(strings.NewReader("model_id,effective_from,input_per_1k,output_per_1k,cache_read_per_1k,cache_write_per_1k\n"+
		"anthropic.claude-3-5-haiku-20241022-v1:0,2024-11-04,0.0008,0.004,0.00008,0.001\n"), "no-titan.csv")
	if err != nil {
		t.Fatal(err)
	}
	res, err := compaction.Compact(ctx, compaction.Config{Store: st, Day: "2026-11-25", Prices: book, Force: true})
	var up *compaction.UnpricedError
	if !errors.As(err, &up) || res == nil {
		t.Fatalf("err = %v, want an UnpricedError with the result", err)
	}
	if !strings.Contains(err.Error(), "amazon.titan-embed-text-v2:0 (1 calls)") {
		t.Errorf("error %q does not name the model", err)
	}
	data, err := store.ReadAll(ctx, st, schemas.ChargebackCSVKey("2026-11-25"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := aggregator.ReadChargebackCSV(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Errorf("chargeback rows %d, want the 3 priced ones:\n%s", len(rows), data)
	}
	for k := range rows {
		if k[2] == "amazon.titan-embed-text-v2:0" {
			t.Errorf("the unpriced model has a chargeback row: %v", k)
		}
	}
	if r := rows[aggregator.ChargebackKey{"search", "CC-1001", "anthropic.claude-3-5-haiku-20241022-v1:0"}]; r.TotalCost.String() != "0.00588" {
		t.Errorf("a priced row moved: %s", r.TotalCost)
	}
	mdata, err := store.ReadAll(ctx, st, schemas.ManifestKey("2026-11-25"))
	if err != nil {
		t.Fatal(err)
	}
	var m schemas.Manifest
	if err := json.Unmarshal(mdata, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Unpriced) != 1 || m.Unpriced[0].ModelID != "amazon.titan-embed-text-v2:0" || m.Unpriced[0].TeamID != "ads" ||
		m.Unpriced[0].Calls != 1 || m.Unpriced[0].InputTokens != 5000 {
		t.Errorf("manifest unpriced %+v", m.Unpriced)
	}
}
