package aggregator

import (
	"fmt"
	"sort"

	"github.com/shopspring/decimal"
)

// ChargebackDiff compares two chargeback CSVs of a day row by row, keyed by
// team, cost center and model. The day and revision columns are left out.
type ChargebackDiff struct {
	RowsBefore, RowsAfter int
	Added                 []RowChange // rows only the new CSV has
	Removed               []RowChange // rows only the old CSV has
	Changed               []RowChange // rows in both with another value in some column
	Unchanged             int
	TotalBefore           decimal.Decimal // sum of total_cost
	TotalAfter            decimal.Decimal
}

// Moved is the money that moves: the new total less the old.
func (d *ChargebackDiff) Moved() decimal.Decimal { return d.TotalAfter.Sub(d.TotalBefore) }

// Same says whether the two CSVs hold the same rows and values.
func (d *ChargebackDiff) Same() bool {
	return len(d.Added) == 0 && len(d.Removed) == 0 && len(d.Changed) == 0
}

// RowChange is one chargeback row before and after.
type RowChange struct {
	TeamID, CostCenter, ModelID         string
	InvocationsBefore, InvocationsAfter int64
	CostBefore, CostAfter               decimal.Decimal
	Columns                             []string // the columns that differ (Changed only)
}

// CostDiff is the row's money that moves.
func (c *RowChange) CostDiff() decimal.Decimal { return c.CostAfter.Sub(c.CostBefore) }

// DiffChargeback compares an old chargeback CSV (nil when the day had none)
// with a new one.
func DiffChargeback(before, after []byte) (ChargebackDiff, error) {
	var d ChargebackDiff
	old, err := ReadChargebackCSV(before)
	if err != nil {
		return d, fmt.Errorf("reading the current chargeback: %w", err)
	}
	cur, err := ReadChargebackCSV(after)
	if err != nil {
		return d, fmt.Errorf("reading the rebuilt chargeback: %w", err)
	}
	d.RowsBefore, d.RowsAfter = len(old), len(cur)
	keys := map[ChargebackKey]bool{}
	for k, r := range old {
		keys[k] = true
		d.TotalBefore = d.TotalBefore.Add(r.TotalCost)
	}
	for k, r := range cur {
		keys[k] = true
		d.TotalAfter = d.TotalAfter.Add(r.TotalCost)
	}
	sorted := make([]ChargebackKey, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		if a[1] != b[1] {
			return a[1] < b[1]
		}
		return a[2] < b[2]
	})
	for _, k := range sorted {
		o, inOld := old[k]
		n, inNew := cur[k]
		c := RowChange{TeamID: k[0], CostCenter: k[1], ModelID: k[2]}
		if inOld {
			c.InvocationsBefore, c.CostBefore = o.Invocations, o.TotalCost
		}
		if inNew {
			c.InvocationsAfter, c.CostAfter = n.Invocations, n.TotalCost
		}
		switch {
		case !inOld:
			d.Added = append(d.Added, c)
		case !inNew:
			d.Removed = append(d.Removed, c)
		default:
			cols := map[string]bool{}
			for col := range o.Cells {
				cols[col] = true
			}
			for col := range n.Cells {
				cols[col] = true
			}
			delete(cols, "day") // the same day in both; the revision always moves on
			delete(cols, "revision")
			for col := range cols {
				if o.Cells[col] != n.Cells[col] {
					c.Columns = append(c.Columns, col)
				}
			}
			if len(c.Columns) == 0 {
				d.Unchanged++
				continue
			}
			sort.Strings(c.Columns)
			d.Changed = append(d.Changed, c)
		}
	}
	return d, nil
}
