package aggregator

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"slices"
	"time"

	"github.com/meter-dev/meter/schemas"
)

// Compactor compacts one day in parts. Each call of Bucket takes events that
// share no request_id with the events of any other call (partition them with
// BucketOf), so deduplication within a bucket is deduplication of the day;
// the chargeback sums of every bucket are merged exactly. A day larger than
// memory is compacted one bucket at a time with the same results, row for row,
// as CompactDay over all of it.
type Compactor struct {
	day    string
	start  time.Time
	end    time.Time
	pricer *dayPricer
	groups map[groupKey]*group
	// unpriced holds usage that could not be priced, left out of the
	// chargeback and the daily rows.
	unpriced map[unpricedKey]*Unpriced

	RowsRead   int // events given, duplicates and other days included
	Duplicates int // events dropped because their request_id was already counted
	OtherDay   int // events whose event time is not on the day (ignored)
	Requests   int // distinct request ids kept
}

type groupKey struct{ team, cc, model string }

type unpricedKey struct{ team, cc, model, tier string }

// Unpriced is usage of one team, cost center, model and tier that could not
// be priced: it is left out of the chargeback (never billed at zero) and
// listed in the manifest, and the compaction reports it as an error.
type Unpriced struct {
	TeamID, CostCenter, ModelID, Tier string
	Calls, InputTokens, OutputTokens  int64
	Reason                            string // the first price error met
}

// group accumulates one chargeback row: fixed-point sums for what the day
// pricer priced, decimals for the rest.
type group struct {
	row   ChargebackRow
	fixed fixedCosts
	slow  schemas.Costs
}

// NewCompactor starts the compaction of day (YYYY-MM-DD) priced by p.
func NewCompactor(day string, p Pricer) (*Compactor, error) {
	start, err := time.Parse(schemas.DayLayout, day)
	if err != nil {
		return nil, fmt.Errorf("bad day %q: want YYYY-MM-DD", day)
	}
	return &Compactor{day: day, start: start, end: start.Add(24 * time.Hour), pricer: newDayPricer(p, start), groups: map[groupKey]*group{},
		unpriced: map[unpricedKey]*Unpriced{}}, nil
}

// BucketOf returns the bucket, of n, of a request id: the same for every
// event of one request, in every run.
func BucketOf(seed maphash.Seed, requestID string, n int) int {
	if n <= 1 {
		return 0
	}
	return int(maphash.String(seed, requestID) % uint64(n))
}

// Bucket deduplicates and prices one bucket of the day's events, adds them to
// the day's sums and returns the bucket's daily rows sorted by LessDaily.
// events may be reordered and reused by the caller afterwards.
func (c *Compactor) Bucket(events []schemas.Event) ([]schemas.DailyRow, error) {
	c.RowsRead += len(events)
	first := make(map[string]int32, len(events))
	for i := range events {
		e := &events[i]
		if e.Timestamp.Before(c.start) || !e.Timestamp.Before(c.end) {
			c.OtherDay++
			continue
		}
		j, seen := first[e.RequestID]
		if !seen {
			first[e.RequestID] = int32(i)
			continue
		}
		c.Duplicates++
		if k := &events[j]; e.Timestamp.Before(k.Timestamp) || (e.Timestamp.Equal(k.Timestamp) && e.EventID < k.EventID) {
			first[e.RequestID] = int32(i)
		}
	}
	keep := make([]int32, 0, len(first))
	for i := range events {
		if j, ok := first[events[i].RequestID]; ok && int(j) == i {
			keep = append(keep, j)
		}
	}
	first = nil
	c.Requests += len(keep)

	rows := make([]schemas.DailyRow, len(keep))
	n := 0
	var fc fixedCosts
	for _, i := range keep {
		e := &events[i]
		if c.price(e, &rows[n], &fc) {
			n++
		}
	}
	rows = rows[:n:n]
	SortDaily(rows)
	return rows, nil
}

// BucketRows is Bucket over daily rows whose costs are zero (rows made by
// DailyRow.SetEvent, as a spilled bucket holds them): the same deduplication,
// prices, sums and counts, and the same rows returned, in the order Bucket
// returns them. It works in place: the result shares rows' memory, and the
// rows past its end are left zero.
func (c *Compactor) BucketRows(rows []schemas.DailyRow) ([]schemas.DailyRow, error) {
	c.RowsRead += len(rows)
	startMS, endMS := c.start.UnixMilli(), c.end.UnixMilli()
	// first is the row kept so far for each request id; dropped marks every
	// other row (other days, and the duplicates that lost), so that the
	// rows kept are found without looking their ids up again.
	first := make(map[string]int32, len(rows))
	dropped := make([]bool, len(rows))
	for i := range rows {
		r := &rows[i]
		if r.Timestamp < startMS || r.Timestamp >= endMS {
			c.OtherDay++
			dropped[i] = true
			continue
		}
		j, seen := first[r.RequestID]
		if !seen {
			first[r.RequestID] = int32(i)
			continue
		}
		c.Duplicates++
		if k := &rows[j]; r.Timestamp < k.Timestamp || (r.Timestamp == k.Timestamp && r.EventID < k.EventID) {
			first[r.RequestID] = int32(i)
			dropped[j] = true
		} else {
			dropped[i] = true
		}
	}
	first = nil
	n := 0
	var fc fixedCosts
	for i := range rows {
		if dropped[i] {
			continue
		}
		c.Requests++
		e := rows[i].Event()
		if c.price(&e, &rows[n], &fc) {
			n++
		}
	}
	clear(rows[n:])
	rows = rows[:n:n]
	SortDaily(rows)
	return rows, nil
}

// price prices one kept event into r (every column set) and adds it to its
// group's sums; false when it could not be priced (it is then counted as
// unpriced and r must be left out).
func (c *Compactor) price(e *schemas.Event, r *schemas.DailyRow, fc *fixedCosts) bool {
	k := groupKey{e.TeamID, e.CostCenter, e.ModelID}
	g := c.groups[k]
	if g == nil {
		g = &group{row: ChargebackRow{Day: c.day, TeamID: e.TeamID, CostCenter: e.CostCenter, ModelID: e.ModelID}}
		c.groups[k] = g
	}
	r.SetEvent(e)
	if c.pricer.fast(e, fc) && g.addFixed(e, fc, r) {
		return true
	}
	cost, err := c.pricer.p.Cost(e)
	if err != nil {
		c.addUnpriced(e, err)
		return false
	}
	g.row.Count(e)
	g.slow = g.slow.Add(cost)
	*r = schemas.NewDailyRow(e, cost)
	return true
}

func (c *Compactor) addUnpriced(e *schemas.Event, err error) {
	k := unpricedKey{e.TeamID, e.CostCenter, e.ModelID, e.Tier()}
	u := c.unpriced[k]
	if u == nil {
		u = &Unpriced{TeamID: e.TeamID, CostCenter: e.CostCenter, ModelID: e.ModelID, Tier: e.Tier(), Reason: err.Error()}
		c.unpriced[k] = u
	}
	u.Calls++
	u.InputTokens += e.InputTokens
	u.OutputTokens += e.OutputTokens
}

// addFixed adds an event priced in fixed point; false (nothing added) when a
// sum would not fit, so the caller prices it with decimals instead.
func (g *group) addFixed(e *schemas.Event, fc *fixedCosts, r *schemas.DailyRow) bool {
	var total fixed
	var cents [5]int64
	for i := range fc {
		var ok bool
		if cents[i], ok = fc[i].scaled(); !ok {
			return false
		}
		if total, ok = total.add(fc[i]); !ok {
			return false
		}
	}
	tc, ok := total.scaled()
	if !ok {
		return false
	}
	sum := g.fixed
	if !sum.addAll(fc) {
		return false
	}
	g.fixed = sum
	g.row.Count(e)
	r.InputCost, r.OutputCost, r.CacheReadCost, r.CacheWriteCost, r.ImageCost, r.TotalCost = cents[0], cents[1], cents[2], cents[3], cents[4], tc
	return true
}

// Result returns the day's chargeback (sorted by team, cost center, model) and
// totals so far; Daily is left empty.
func (c *Compactor) Result() *DayResult {
	res := &DayResult{Day: c.day, RowsRead: c.RowsRead, Duplicates: c.Duplicates, OtherDay: c.OtherDay}
	for _, g := range c.groups {
		row := g.row
		if row.Counts == (Counts{}) {
			continue // a group whose only usage could not be priced
		}
		row.Costs = g.fixed.costs().Add(g.slow)
		res.Chargeback = append(res.Chargeback, row)
	}
	for _, u := range c.unpriced {
		res.Unpriced = append(res.Unpriced, *u)
	}
	slices.SortFunc(res.Unpriced, func(a, b Unpriced) int {
		return cmp.Or(cmp.Compare(a.ModelID, b.ModelID), cmp.Compare(a.TeamID, b.TeamID), cmp.Compare(a.CostCenter, b.CostCenter), cmp.Compare(a.Tier, b.Tier))
	})
	slices.SortFunc(res.Chargeback, func(a, b ChargebackRow) int {
		return cmp.Or(cmp.Compare(a.TeamID, b.TeamID), cmp.Compare(a.CostCenter, b.CostCenter), cmp.Compare(a.ModelID, b.ModelID))
	})
	res.Totals = ChargebackRow{Day: c.day}
	for i := range res.Chargeback {
		res.Totals.merge(&res.Chargeback[i])
	}
	return res
}

// CompareDaily orders daily rows the way the daily file is sorted for Athena:
// by team, model, event time and request id. Request ids are unique in a day,
// so the order is total and the file does not depend on input order.
func CompareDaily(a, b *schemas.DailyRow) int {
	if a.TeamID != b.TeamID {
		return cmp.Compare(a.TeamID, b.TeamID)
	}
	if a.ModelID != b.ModelID {
		return cmp.Compare(a.ModelID, b.ModelID)
	}
	if a.Timestamp != b.Timestamp {
		return cmp.Compare(a.Timestamp, b.Timestamp)
	}
	return cmp.Compare(a.RequestID, b.RequestID)
}

// SortDaily sorts rows by CompareDaily. Rows are large and their team and
// model repeat: each row's (team, model) is ranked once, then packed keys of
// rank, time and index are sorted (the request id is read only to break a
// tie), and the rows permuted once.
func SortDaily(rows []schemas.DailyRow) {
	type pair struct{ team, model string }
	type key struct {
		ts         int64
		group, row int32
	}
	// Each row's (team, model) is looked up once, numbered in the order
	// first met, then the numbers are replaced by the pairs' ranks.
	seen := map[pair]int32{}
	var pairs []pair
	keys := make([]key, len(rows))
	for i := range rows {
		p := pair{rows[i].TeamID, rows[i].ModelID}
		g, ok := seen[p]
		if !ok {
			g = int32(len(pairs))
			seen[p] = g
			pairs = append(pairs, p)
		}
		keys[i] = key{ts: rows[i].Timestamp, group: g, row: int32(i)}
	}
	order := make([]int32, len(pairs))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		if c := cmp.Compare(pairs[a].team, pairs[b].team); c != 0 {
			return c
		}
		return cmp.Compare(pairs[a].model, pairs[b].model)
	})
	rank := make([]int32, len(pairs))
	for r, g := range order {
		rank[g] = int32(r)
	}
	for i := range keys {
		keys[i].group = rank[keys[i].group]
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.group != b.group {
			return cmp.Compare(a.group, b.group)
		}
		if a.ts != b.ts {
			return cmp.Compare(a.ts, b.ts)
		}
		return cmp.Compare(rows[a.row].RequestID, rows[b.row].RequestID)
	})
	idx := make([]int32, len(rows))
	for i, k := range keys {
		idx[i] = k.row
	}
	// Apply the permutation in place by following its cycles.
	for i := range idx {
		if idx[i] < 0 {
			continue
		}
		j := i
		tmp := rows[i]
		for {
			k := int(idx[j])
			idx[j] = -1
			if k == i {
				rows[j] = tmp
				break
			}
			rows[j] = rows[k]
			j = k
		}
	}
}

// Merge adds the sums and counts of o, a Compactor of the same day whose
// buckets were disjoint from c's, into c. Compactors are not safe for
// concurrent use; one per goroutine, merged at the end, is.
func (c *Compactor) Merge(o *Compactor) {
	c.RowsRead += o.RowsRead
	c.Duplicates += o.Duplicates
	c.OtherDay += o.OtherDay
	c.Requests += o.Requests
	for k, g := range o.groups {
		x := c.groups[k]
		if x == nil {
			c.groups[k] = g
			continue
		}
		x.row.merge(&g.row)
		if !x.fixed.addAll(&g.fixed) {
			// Beyond 128 bits: carry both sums as decimals.
			x.slow = x.slow.Add(x.fixed.costs()).Add(g.fixed.costs())
			x.fixed = fixedCosts{}
		}
		x.slow = x.slow.Add(g.slow)
	}
	for k, u := range o.unpriced {
		x := c.unpriced[k]
		if x == nil {
			c.unpriced[k] = u
			continue
		}
		x.Calls += u.Calls
		x.InputTokens += u.InputTokens
		x.OutputTokens += u.OutputTokens
	}
}
