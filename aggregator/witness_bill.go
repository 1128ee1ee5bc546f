package aggregator

// The dollar witness: the bill. A CUR 2.0 data export bills every Bedrock
// request as separate line items per token type, told apart by the usage
// type (REGION-MODEL[-modifiers]-TOKENTYPE). CompareBill sums the day's lines
// per model, token type, service tier and cross-region routing and sets them
// beside the compacted day's metered tokens and list-price costs. Pure: the
// reconcile stage reads the export and the daily table.
//
// Decisions:
//   - Billed dollars are the sum of every Bedrock line of the day (usage,
//     discounts, credits, refunds: net, as the export gives it), except Tax.
//   - Billed tokens are the usage amounts of usage lines only (Usage,
//     DiscountedUsage, SavingsPlanCoveredUsage), times the pricing unit
//     (a "1K tokens" or "1M tokens" unit scales the amount).
//   - Metered tokens and costs are the successful calls of the daily table,
//     keyed by the base model (a cross-region profile bills as its model,
//     flagged cross_region), their pricing tier and token type.
//   - The tolerance is per model and day: a model differs when the sum of its
//     cost differences, or any one of them, exceeds it.

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/csv"
	"fmt"
	"io"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/schemas"
)

// Token types of a bill row.
const (
	TokenInput        = "input"
	TokenOutput       = "output"
	TokenCacheRead    = "cache_read"
	TokenCacheWrite   = "cache_write"
	TokenImage        = "image"
	TokenUnrecognized = "unrecognized"
)

// Bill statuses (schemas.BillStatuses).
const (
	BillMatched      = "matched"
	BillDiffers      = "differs"
	BillTokensDiffer = "tokens_differ"
	BillBilledOnly   = "billed_only"
	BillMeteredOnly  = "metered_only"
)

// DefaultBillTolerance is the default --bill-tolerance: 0.01 USD per model and day.
var DefaultBillTolerance = decimal.New(1, -2)

// BillLine is one Amazon Bedrock line item of a CUR 2.0 export, with where it
// was read.
type BillLine struct {
	Key          string
	Row          int
	UsageType    string // line_item_usage_type
	LineItemType string // line_item_line_item_type
	ResourceID   string // line_item_resource_id (with INCLUDE_RESOURCES)
	Start        time.Time
	UsageAmount  decimal.Decimal
	PricingUnit  string
	Cost         decimal.Decimal // net unblended cost when the export has it, else unblended
}

// UsageType is what a Bedrock usage type says.
type UsageType struct {
	ModelName   string // the usage type's model part, e.g. Claude3Haiku
	ModelID     string // the model id it bills as; "" when unknown
	TokenType   string
	Tier        string // on_demand, batch, flex, priority, ...
	CrossRegion bool
}

//go:embed usage_type_models.csv
var usageTypeModelsCSV []byte

// DefaultUsageTypeModels returns meter's table of usage-type model names to
// model ids (usage_type_models.csv).
func DefaultUsageTypeModels() map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(usageTypeModelsCSV))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "usage_type_model,") {
			continue
		}
		if name, id, ok := strings.Cut(line, ","); ok {
			m[name] = id
		}
	}
	return m
}

var (
	regionPrefix = regexp.MustCompile(`^[A-Z]{2,4}[0-9]{1,2}-`)
	mantleSuffix = regexp.MustCompile(`-mantle-(input|output)-tokens(-[A-Za-z0-9._]+)?$`)
)

// tokenSuffixes are the token types' usage-type suffixes, longest first. The
// first four are AWS's; -images is meter's for per-image models.
var tokenSuffixes = []struct{ suffix, typ string }{
	{"-cache-write-input-token-count", TokenCacheWrite},
	{"-cache-read-input-token-count", TokenCacheRead},
	{"-output-tokens", TokenOutput},
	{"-input-tokens", TokenInput},
	{"-images", TokenImage},
}

// tierWords and crossWords are the modifiers a usage type's model part may end with.
var tierWords = map[string]string{"batch": "batch", "flex": "flex", "priority": "priority", "provisioned": "provisioned", "reserved": "reserved"}

// ParseUsageType reads a Bedrock usage type. ok is false when it names no
// token type meter knows (provisioned throughput hours, for example).
func ParseUsageType(ut string, models map[string]string) (UsageType, bool) {
	rest := regionPrefix.ReplaceAllString(ut, "")
	u := UsageType{Tier: "on_demand"}
	if m := mantleSuffix.FindStringSubmatchIndex(rest); m != nil {
		if rest[m[2]:m[3]] == "input" {
			u.TokenType = TokenInput
		} else {
			u.TokenType = TokenOutput
		}
		rest = rest[:m[0]]
	} else {
		for _, s := range tokenSuffixes {
			if strings.HasSuffix(rest, s.suffix) {
				u.TokenType, rest = s.typ, strings.TrimSuffix(rest, s.suffix)
				break
			}
		}
	}
	if u.TokenType == "" || rest == "" {
		return UsageType{ModelName: rest}, false
	}
	parts := strings.Split(rest, "-")
modifiers:
	for len(parts) > 1 {
		last := strings.ToLower(parts[len(parts)-1])
		switch {
		case tierWords[last] != "":
			u.Tier = tierWords[last]
		case last == "global":
			u.CrossRegion = true
		case last == "region" && len(parts) > 2 && strings.EqualFold(parts[len(parts)-2], "cross"):
			u.CrossRegion = true
			parts = parts[:len(parts)-1]
		case last == "cris" || last == "crossregion":
			u.CrossRegion = true
		default:
			break modifiers
		}
		parts = parts[:len(parts)-1]
	}
	u.ModelName = strings.Join(parts, "-")
	u.ModelID = models[u.ModelName]
	return u, true
}

// ClassifyLine returns the bill row a line belongs to: its model (from a
// foundation-model resource id, else the usage type's model name through
// models), token type, tier and cross-region routing. ok is false for a line
// whose usage type names no token type or no known model: its key then has
// TokenType TokenUnrecognized and the usage type's model part as ModelID.
func ClassifyLine(l *BillLine, models map[string]string) (BillKey, bool) {
	u, ok := ParseUsageType(l.UsageType, models)
	if model := resourceModel(l.ResourceID); model != "" {
		u.ModelID = pricing.BaseModel(model)
	}
	if !ok || u.ModelID == "" {
		k := BillKey{ModelID: u.ModelName, TokenType: TokenUnrecognized, Tier: u.Tier}
		if k.ModelID == "" {
			k.ModelID = l.UsageType
		}
		return k, false
	}
	return BillKey{ModelID: u.ModelID, TokenType: u.TokenType, Tier: u.Tier, CrossRegion: u.CrossRegion}, true
}

// billingLine reports whether a line item type carries usage (its amount
// counts as billed tokens); taxLine whether it is left out of model cost.
func billingLine(t string) bool {
	switch t {
	case "", "Usage", "DiscountedUsage", "SavingsPlanCoveredUsage":
		return true
	}
	return false
}

func taxLine(t string) bool { return t == "Tax" }

// pricingUnitTokens is the number of tokens one unit of the pricing unit stands for.
func pricingUnitTokens(unit string) decimal.Decimal {
	u := strings.ToLower(strings.ReplaceAll(unit, " ", ""))
	switch {
	case strings.HasPrefix(u, "1m") || strings.HasPrefix(u, "million"):
		return decimal.New(1, 6)
	case strings.HasPrefix(u, "1k") || strings.HasPrefix(u, "thousand"):
		return decimal.New(1, 3)
	}
	return decimal.New(1, 0)
}

// BillKey identifies a bill row.
type BillKey struct {
	ModelID     string
	TokenType   string
	Tier        string
	CrossRegion bool
}

// BillRow is one row of bill-D.csv.
type BillRow struct {
	BillKey
	Status                       string
	BilledTokens, MeteredTokens  decimal.Decimal
	BilledCost, MeteredCost      decimal.Decimal
	UsageTypes                   []string
	Detail                       string
	billed, metered              bool
	tokensDiffer, costOutOfRange bool
}

// BillOptions parameterise CompareBill.
type BillOptions struct {
	Day       string
	Tolerance decimal.Decimal // default DefaultBillTolerance
	// Models maps usage-type model names to model ids; nil means DefaultUsageTypeModels.
	Models map[string]string
}

// BillReport is the bill reconciliation of one day.
type BillReport struct {
	Day       string
	Tolerance decimal.Decimal
	Rows      []BillRow
	Counts    map[string]int
	// Differing lists the models whose costs differ beyond the tolerance.
	Differing []string
	// BilledByModel is each model's billed cost of the day (token-type lines
	// only); Unrecognized the cost of lines whose usage type names no token type
	// or no known model.
	BilledByModel map[string]decimal.Decimal
	Unrecognized  decimal.Decimal
	BilledTotal   decimal.Decimal
	MeteredTotal  decimal.Decimal
	// Lines are the day's Bedrock lines the report was made from.
	Lines []BillLine
}

// MeteredKey returns the bill key of a metered token type of a daily row.
func MeteredKey(r *schemas.DailyRow, tokenType string) BillKey {
	base := pricing.BaseModel(r.ModelID)
	tier := r.PricingTier
	if tier == "" {
		tier = "on_demand"
	}
	return BillKey{ModelID: base, TokenType: tokenType, Tier: tier, CrossRegion: base != normalModelID(r.ModelID)}
}

func money(scaled int64) decimal.Decimal { return decimal.New(scaled, -schemas.MoneyScale) }

// CompareBill compares the day's Bedrock lines with the day's daily rows.
func CompareBill(lines []BillLine, daily []schemas.DailyRow, opts BillOptions) (BillReport, error) {
	if _, err := time.Parse(schemas.DayLayout, opts.Day); err != nil {
		return BillReport{}, fmt.Errorf("day %q: want YYYY-MM-DD", opts.Day)
	}
	if opts.Tolerance.IsZero() {
		opts.Tolerance = DefaultBillTolerance
	}
	if opts.Tolerance.IsNegative() {
		return BillReport{}, fmt.Errorf("bill tolerance %s cannot be negative", opts.Tolerance)
	}
	if opts.Models == nil {
		opts.Models = DefaultUsageTypeModels()
	}
	rep := BillReport{Day: opts.Day, Tolerance: opts.Tolerance, Counts: map[string]int{}, BilledByModel: map[string]decimal.Decimal{}, Lines: lines}
	for _, s := range schemas.BillStatuses {
		rep.Counts[s] = 0
	}
	rows := map[BillKey]*BillRow{}
	row := func(k BillKey) *BillRow {
		r := rows[k]
		if r == nil {
			r = &BillRow{BillKey: k}
			rows[k] = r
		}
		return r
	}
	for i := range lines {
		l := &lines[i]
		if taxLine(l.LineItemType) {
			continue
		}
		k, ok := ClassifyLine(l, opts.Models)
		if !ok {
			rep.Unrecognized = rep.Unrecognized.Add(l.Cost)
		} else {
			rep.BilledByModel[k.ModelID] = rep.BilledByModel[k.ModelID].Add(l.Cost)
		}
		r := row(k)
		r.billed = true
		r.BilledCost = r.BilledCost.Add(l.Cost)
		if billingLine(l.LineItemType) {
			r.BilledTokens = r.BilledTokens.Add(l.UsageAmount.Mul(pricingUnitTokens(l.PricingUnit)))
		}
		if !containsString(r.UsageTypes, l.UsageType) {
			r.UsageTypes = append(r.UsageTypes, l.UsageType)
		}
		rep.BilledTotal = rep.BilledTotal.Add(l.Cost)
	}
	for i := range daily {
		d := &daily[i]
		if d.Status != schemas.StatusSuccess {
			continue
		}
		for _, part := range []struct {
			typ    string
			tokens int64
			cost   int64
		}{
			{TokenInput, d.InputTokens, d.InputCost}, {TokenOutput, d.OutputTokens, d.OutputCost},
			{TokenCacheRead, d.CacheReadInputTokens, d.CacheReadCost}, {TokenCacheWrite, d.CacheWriteInputTokens, d.CacheWriteCost},
			{TokenImage, d.ImageCount, d.ImageCost},
		} {
			if part.tokens == 0 && part.cost == 0 {
				continue
			}
			r := row(MeteredKey(d, part.typ))
			r.metered = true
			r.MeteredTokens = r.MeteredTokens.Add(decimal.NewFromInt(part.tokens))
			r.MeteredCost = r.MeteredCost.Add(money(part.cost))
			rep.MeteredTotal = rep.MeteredTotal.Add(money(part.cost))
		}
	}
	perModel := map[string]decimal.Decimal{}
	flagged := map[string]bool{}
	for _, r := range rows {
		diff := r.BilledCost.Sub(r.MeteredCost)
		perModel[r.ModelID] = perModel[r.ModelID].Add(diff)
		r.tokensDiffer = !r.BilledTokens.Equal(r.MeteredTokens)
		r.costOutOfRange = diff.Abs().GreaterThan(opts.Tolerance)
		switch {
		case !r.metered:
			r.Status = BillBilledOnly
			r.Detail = "billed, but meter metered nothing of this model and token type"
			if r.TokenType == TokenUnrecognized {
				r.Detail = "the usage type names no token type or model meter knows"
			}
		case !r.billed:
			r.Status = BillMeteredOnly
			r.Detail = "metered, but the bill has no line of this model and token type"
		case r.costOutOfRange:
			r.Status = BillDiffers
			r.Detail = fmt.Sprintf("billed %s USD, metered %s USD at list price: %s beyond the tolerance of %s", r.BilledCost, r.MeteredCost, diff, opts.Tolerance)
		case r.tokensDiffer:
			r.Status = BillTokensDiffer
			r.Detail = fmt.Sprintf("billed %s tokens, metered %s", r.BilledTokens, r.MeteredTokens)
		default:
			r.Status = BillMatched
		}
		if r.costOutOfRange {
			flagged[r.ModelID] = true
		}
	}
	for m, d := range perModel {
		if d.Abs().GreaterThan(opts.Tolerance) {
			flagged[m] = true
		}
	}
	for m := range flagged {
		rep.Differing = append(rep.Differing, m)
	}
	sort.Strings(rep.Differing)
	for _, r := range rows {
		sort.Strings(r.UsageTypes)
		rep.Rows = append(rep.Rows, *r)
		rep.Counts[r.Status]++
	}
	sort.Slice(rep.Rows, func(i, j int) bool { return rep.Rows[i].BillKey.less(rep.Rows[j].BillKey) })
	return rep, nil
}

func (a BillKey) less(b BillKey) bool {
	if a.ModelID != b.ModelID {
		return a.ModelID < b.ModelID
	}
	if a.TokenType != b.TokenType {
		return a.TokenType < b.TokenType
	}
	if a.Tier != b.Tier {
		return a.Tier < b.Tier
	}
	return !a.CrossRegion && b.CrossRegion
}

// resourceModel returns the model id a line item's resource id names, when it
// is a foundation-model or system inference-profile ARN.
func resourceModel(id string) string {
	if !strings.HasPrefix(id, "arn:") {
		return ""
	}
	for _, kind := range []string{":foundation-model/", ":inference-profile/"} {
		if i := strings.Index(id, kind); i >= 0 {
			return id[i+len(kind):]
		}
	}
	return ""
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Differs reports whether some model's cost differs beyond the tolerance.
func (r *BillReport) Differs() bool { return len(r.Differing) > 0 }

// Record renders the row in the order of schemas.BillColumns.
func (r *BillRow) Record(day string) []string {
	text := schemas.NeutralizeCell
	return []string{
		day, text(r.ModelID), r.TokenType, text(r.Tier), strconv.FormatBool(r.CrossRegion), r.Status,
		r.BilledTokens.String(), r.MeteredTokens.String(), r.BilledTokens.Sub(r.MeteredTokens).String(),
		r.BilledCost.String(), r.MeteredCost.String(), r.BilledCost.Sub(r.MeteredCost).String(),
		text(strings.Join(r.UsageTypes, " ")), text(r.Detail),
	}
}

// WriteCSV writes the report with a header of schemas.BillColumns.
func (r *BillReport) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(schemas.BillColumns); err != nil {
		return err
	}
	for i := range r.Rows {
		if err := cw.Write(r.Rows[i].Record(r.Day)); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// Human returns a short summary for people.
func (r *BillReport) Human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bill %s: billed %s USD, metered %s USD at list price; %d rows matched, %d differ, %d tokens differ, %d billed only, %d metered only\n",
		r.Day, r.BilledTotal, r.MeteredTotal, r.Counts[BillMatched], r.Counts[BillDiffers], r.Counts[BillTokensDiffer], r.Counts[BillBilledOnly], r.Counts[BillMeteredOnly])
	shown := 0
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Status == BillMatched {
			continue
		}
		if shown == 10 {
			b.WriteString("  ... more in the bill CSV\n")
			break
		}
		fmt.Fprintf(&b, "  %s %s %s: billed %s USD, metered %s USD\n", row.Status, row.ModelID, row.TokenType, row.BilledCost, row.MeteredCost)
		shown++
	}
	if len(r.Differing) > 0 {
		fmt.Fprintf(&b, "  models beyond the tolerance of %s USD: %s\n", r.Tolerance, strings.Join(r.Differing, ", "))
	}
	return b.String()
}

// AllocationRow is one row of allocated-D.csv.
type AllocationRow struct {
	TeamID, CostCenter, ModelID, BilledModel string
	ListCost, Allocated                      decimal.Decimal
}

// Allocation distributes each model's billed cost of a day to the chargeback's
// rows of that model in proportion to their list-price cost.
type Allocation struct {
	Day  string
	Rows []AllocationRow
	// Models holds, per billed model, its billed cost (rounded half away from
	// zero to the cent: the amount distributed), its list cost and rows.
	Models []AllocatedModel
	// Unallocated are billed models no metered usage can carry.
	Unallocated []AllocatedModel
}

// AllocatedModel is one billed model's allocation.
type AllocatedModel struct {
	ModelID             string
	Billed, Distributed decimal.Decimal
	ListCost            decimal.Decimal
	Rows                int
}

// AllocationRule describes the allocation, for the manifest.
const AllocationRule = "each model's billed cost of the day, rounded half away from zero to the cent, is split over the chargeback rows of that model " +
	"(team_id, cost_center, model_id as invoked; cross-region profiles with their base model) in proportion to their list-price cost: " +
	"every row gets the cents of its exact share rounded down, and the cents left go one each to the rows with the largest remainders, " +
	"ties to the smaller (team_id, cost_center, model_id)"

// Allocate splits billed (per base model) over the successful daily rows of
// each model in proportion to their list-price cost, exact to the cent: the
// allocated cents of a model add up to its billed cost rounded to the cent.
func Allocate(day string, daily []schemas.DailyRow, billed map[string]decimal.Decimal) Allocation {
	type key struct{ team, cc, model string }
	type group struct {
		keys []key
		cost map[key]int64
	}
	groups := map[string]*group{}
	for i := range daily {
		d := &daily[i]
		if d.Status != schemas.StatusSuccess {
			continue
		}
		base := pricing.BaseModel(d.ModelID)
		g := groups[base]
		if g == nil {
			g = &group{cost: map[key]int64{}}
			groups[base] = g
		}
		k := key{d.TeamID, d.CostCenter, d.ModelID}
		if _, ok := g.cost[k]; !ok {
			g.keys = append(g.keys, k)
		}
		g.cost[k] += d.TotalCost
	}
	models := make([]string, 0, len(groups)+len(billed))
	for m := range groups {
		models = append(models, m)
	}
	for m := range billed {
		if groups[m] == nil {
			models = append(models, m)
		}
	}
	sort.Strings(models)
	a := Allocation{Day: day}
	for _, m := range models {
		target := billed[m].Round(2)
		g := groups[m]
		if g == nil {
			a.Unallocated = append(a.Unallocated, AllocatedModel{ModelID: m, Billed: billed[m]})
			continue
		}
		sort.Slice(g.keys, func(i, j int) bool {
			x, y := g.keys[i], g.keys[j]
			if x.team != y.team {
				return x.team < y.team
			}
			if x.cc != y.cc {
				return x.cc < y.cc
			}
			return x.model < y.model
		})
		var total int64
		for _, k := range g.keys {
			total += g.cost[k]
		}
		am := AllocatedModel{ModelID: m, Billed: billed[m], ListCost: money(total), Rows: len(g.keys)}
		cents := make([]*big.Int, len(g.keys))
		if total == 0 {
			for i := range cents {
				cents[i] = new(big.Int)
			}
			if !target.IsZero() {
				a.Unallocated = append(a.Unallocated, AllocatedModel{ModelID: m, Billed: billed[m], Rows: len(g.keys)})
			}
		} else {
			cents = shareCents(target.Shift(2).BigInt(), g.keys, func(k key) int64 { return g.cost[k] }, total)
			am.Distributed = target
		}
		for i, k := range g.keys {
			a.Rows = append(a.Rows, AllocationRow{TeamID: k.team, CostCenter: k.cc, ModelID: k.model, BilledModel: m,
				ListCost: money(g.cost[k]), Allocated: decimal.NewFromBigInt(cents[i], -2)})
		}
		a.Models = append(a.Models, am)
	}
	sort.SliceStable(a.Rows, func(i, j int) bool {
		x, y := &a.Rows[i], &a.Rows[j]
		if x.TeamID != y.TeamID {
			return x.TeamID < y.TeamID
		}
		if x.CostCenter != y.CostCenter {
			return x.CostCenter < y.CostCenter
		}
		return x.ModelID < y.ModelID
	})
	return a
}

// shareCents splits n cents over keys in proportion to weight (total their
// sum, > 0) by largest remainders: floor(n*w/total) each, then one more cent
// to the largest remainders, ties to the earlier key. Exact integers throughout.
func shareCents[K any](n *big.Int, keys []K, weight func(K) int64, total int64) []*big.Int {
	out := make([]*big.Int, len(keys))
	rems := make([]*big.Int, len(keys))
	tot := big.NewInt(total)
	left := new(big.Int).Set(n)
	for i, k := range keys {
		prod := new(big.Int).Mul(n, big.NewInt(weight(k)))
		q, r := new(big.Int), new(big.Int)
		q.DivMod(prod, tot, r) // Euclidean: floor for a positive divisor, 0 <= r < total
		out[i], rems[i] = q, r
		left.Sub(left, q)
	}
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return rems[order[i]].Cmp(rems[order[j]]) > 0 })
	for i := 0; left.Sign() > 0 && i < len(order); i++ {
		out[order[i]].Add(out[order[i]], big.NewInt(1))
		left.Sub(left, big.NewInt(1))
	}
	return out
}

// Total returns the sum of the allocated costs.
func (a *Allocation) Total() decimal.Decimal {
	t := decimal.Zero
	for i := range a.Rows {
		t = t.Add(a.Rows[i].Allocated)
	}
	return t
}

// WriteCSV writes allocated-D.csv with a header of schemas.AllocatedColumns.
func (a *Allocation) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(schemas.AllocatedColumns); err != nil {
		return err
	}
	text := schemas.NeutralizeCell
	for i := range a.Rows {
		r := &a.Rows[i]
		if err := cw.Write([]string{a.Day, text(r.TeamID), text(r.CostCenter), text(r.ModelID), text(r.BilledModel),
			r.ListCost.String(), r.Allocated.StringFixed(2)}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
