package aggregator

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
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
	err := EachChargebackRow(data, func(k ChargebackKey, r ChargebackLine) error {
		rec := ChargebackRecord{Invocations: r.Invocations, TotalCost: r.TotalCost, Cells: make(map[string]string, len(r.header))}
		for col, i := range r.header {
			rec.Cells[col] = r.cells[i]
		}
		out[k] = rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ChargebackLine is one row of a chargeback CSV as EachChargebackRow reads it;
// it is valid only during the call it is passed to.
type ChargebackLine struct {
	Invocations int64
	TotalCost   decimal.Decimal
	header      map[string]int
	cells       []string
}

// Cell returns the row's cell of a column; "" when the CSV has no such column.
func (r *ChargebackLine) Cell(col string) string {
	if i, ok := r.header[col]; ok {
		return r.cells[i]
	}
	return ""
}

// EachChargebackRow calls fn for every row of a chargeback CSV, in order,
// without keeping them: the reader of many days at once. A row is refused
// when it lacks a column, has a count or a cost that does not read, or
// repeats a key; the error names the line.
func EachChargebackRow(data []byte, fn func(ChargebackKey, ChargebackLine) error) error {
	if len(data) == 0 {
		return nil
	}
	cr := csv.NewReader(bytes.NewReader(data))
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	idx := make(map[string]int, len(head))
	for i, h := range head {
		idx[h] = i
	}
	for _, col := range []string{"team_id", "cost_center", "model_id", "invocations", "total_cost"} {
		if _, ok := idx[col]; !ok {
			return fmt.Errorf("no %s column", col)
		}
	}
	seen := map[ChargebackKey]bool{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if len(rec) != len(head) {
			return fmt.Errorf("line %d: %d fields for %d columns", line, len(rec), len(head))
		}
		k := ChargebackKey{rec[idx["team_id"]], rec[idx["cost_center"]], rec[idx["model_id"]]}
		r := ChargebackLine{header: idx, cells: rec}
		if r.Invocations, err = strconv.ParseInt(rec[idx["invocations"]], 10, 64); err != nil {
			return fmt.Errorf("line %d: invocations: %w", line, err)
		}
		if r.TotalCost, err = decimal.NewFromString(rec[idx["total_cost"]]); err != nil {
			return fmt.Errorf("line %d: total_cost: %w", line, err)
		}
		if seen[k] {
			return fmt.Errorf("line %d: a second row for %s/%s/%s", line, k[0], k[1], k[2])
		}
		seen[k] = true
		if err := fn(k, r); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
}
