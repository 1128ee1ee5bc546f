package aggregator

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"strconv"

	"github.com/shopspring/decimal"
)

// ChargebackKey identifies a row of the chargeback CSV.
type ChargebackKey [3]string // team_id, cost_center, model_id

// ChargebackRecord is one row of a chargeback CSV as it was written.
type ChargebackRecord struct {
	Invocations int64
	TotalCost   decimal.Decimal
	Cells       map[string]string // every cell by column name
}

// ReadChargebackCSV reads a chargeback CSV written by WriteChargebackCSV (or an
// earlier release: columns are found by the header's names). Empty data is a
// day without rows.
func ReadChargebackCSV(data []byte) (map[ChargebackKey]ChargebackRecord, error) {
	out := map[ChargebackKey]ChargebackRecord{}
	if len(data) == 0 {
		return out, nil
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return out, nil
	}
	idx := map[string]int{}
	for i, h := range recs[0] {
		idx[h] = i
	}
	for _, col := range []string{"team_id", "cost_center", "model_id", "invocations", "total_cost"} {
		if _, ok := idx[col]; !ok {
			return nil, fmt.Errorf("no %s column", col)
		}
	}
	for n, rec := range recs[1:] {
		line := n + 2
		if len(rec) != len(recs[0]) {
			return nil, fmt.Errorf("line %d: %d fields for %d columns", line, len(rec), len(recs[0]))
		}
		k := ChargebackKey{rec[idx["team_id"]], rec[idx["cost_center"]], rec[idx["model_id"]]}
		r := ChargebackRecord{Cells: make(map[string]string, len(idx))}
		for col, i := range idx {
			r.Cells[col] = rec[i]
		}
		if r.Invocations, err = strconv.ParseInt(rec[idx["invocations"]], 10, 64); err != nil {
			return nil, fmt.Errorf("line %d: invocations: %w", line, err)
		}
		if r.TotalCost, err = decimal.NewFromString(rec[idx["total_cost"]]); err != nil {
			return nil, fmt.Errorf("line %d: total_cost: %w", line, err)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("line %d: a second row for %s/%s/%s", line, k[0], k[1], k[2])
		}
		out[k] = r
	}
	return out, nil
}
