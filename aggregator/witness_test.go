package aggregator_test

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/schemas"
)

func TestParseUsageType(t *testing.T) {
	models := aggregator.DefaultUsageTypeModels()
	for ut, want := range map[string]aggregator.UsageType{
		"USE1-Claude3Haiku-input-tokens":                     {ModelName: "Claude3Haiku", ModelID: "anthropic.claude-3-haiku-20240307-v1:0", TokenType: "input", Tier: "on_demand"},
		"USE1-Claude3.7Sonnet-cache-read-input-token-count":  {ModelName: "Claude3.7Sonnet", ModelID: "anthropic.claude-3-7-sonnet-20250219-v1:0", TokenType: "cache_read", Tier: "on_demand"},
		"USE1-Claude3.7Sonnet-cache-write-input-token-count": {ModelName: "Claude3.7Sonnet", ModelID: "anthropic.claude-3-7-sonnet-20250219-v1:0", TokenType: "cache_write", Tier: "on_demand"},
		"USW2-Claude3Haiku-cross-region-output-tokens":       {ModelName: "Claude3Haiku", ModelID: "anthropic.claude-3-haiku-20240307-v1:0", TokenType: "output", Tier: "on_demand", CrossRegion: true},
		"USE1-Llama3-70B-Instruct-batch-input-tokens":        {ModelName: "Llama3-70B-Instruct", ModelID: "meta.llama3-70b-instruct-v1:0", TokenType: "input", Tier: "batch"},
		"EUC1-Claude3Haiku-mantle-output-tokens-standard":    {ModelName: "Claude3Haiku", ModelID: "anthropic.claude-3-haiku-20240307-v1:0", TokenType: "output", Tier: "on_demand"},
		"USE1-SomethingNew-flex-global-input-tokens":         {ModelName: "SomethingNew", TokenType: "input", Tier: "flex", CrossRegion: true},
		"USE1-TitanImageGenerator-images":                    {ModelName: "TitanImageGenerator", ModelID: "amazon.titan-image-generator-v1", TokenType: "image", Tier: "on_demand"},
	} {
		got, ok := aggregator.ParseUsageType(ut, models)
		if !ok || got != want {
			t.Errorf("ParseUsageType(%q) = %+v, %v; want %+v", ut, got, ok, want)
		}
	}
	if _, ok := aggregator.ParseUsageType("USE1-ProvisionedThroughput-ModelUnits", models); ok {
		t.Error("a provisioned-throughput usage type parsed as tokens")
	}
}

func dailyRow(team, model string, in, out int64, inCost, outCost string) schemas.DailyRow {
	ic, oc := decimal.RequireFromString(inCost), decimal.RequireFromString(outCost)
	return schemas.DailyRow{TeamID: team, CostCenter: "cc-" + team, ModelID: model, Status: schemas.StatusSuccess, PricingTier: "on_demand",
		InputTokens: in, OutputTokens: out, InputCost: schemas.ScaledMoney(ic), OutputCost: schemas.ScaledMoney(oc), TotalCost: schemas.ScaledMoney(ic.Add(oc))}
}

// A 10% discount on one model shows per token type, and the allocation of the
// actual bill adds up to it exactly while each row keeps its share to the cent.
func TestCompareBillAndAllocateDiscount(t *testing.T) {
	haiku := "anthropic.claude-3-haiku-20240307-v1:0"
	daily := []schemas.DailyRow{
		dailyRow("a", haiku, 1000, 100, "1.00", "0.50"),
		dailyRow("b", "us."+haiku, 2000, 200, "2.00", "1.00"),
		dailyRow("c", haiku, 1, 1, "0.01", "0.02"),
		dailyRow("a", "meta.llama3-8b-instruct-v1:0", 10, 10, "0.10", "0.20"),
	}
	line := func(ut, typ string, amount int64, cost string) aggregator.BillLine {
		return aggregator.BillLine{UsageType: ut, LineItemType: typ, UsageAmount: decimal.NewFromInt(amount), Cost: decimal.RequireFromString(cost)}
	}
	lines := []aggregator.BillLine{
		line("USE1-Claude3Haiku-input-tokens", "Usage", 1001, "1.01"),
		line("USE1-Claude3Haiku-input-tokens", "Discount", 0, "-0.101"),
		line("USE1-Claude3Haiku-output-tokens", "Usage", 101, "0.52"),
		line("USE1-Claude3Haiku-output-tokens", "Discount", 0, "-0.052"),
		line("USE1-Claude3Haiku-cross-region-input-tokens", "Usage", 2000, "2.00"),
		line("USE1-Claude3Haiku-cross-region-input-tokens", "Discount", 0, "-0.20"),
		line("USE1-Claude3Haiku-cross-region-output-tokens", "Usage", 200, "1.00"),
		line("USE1-Claude3Haiku-cross-region-output-tokens", "Discount", 0, "-0.10"),
		line("USE1-Llama3-8B-Instruct-input-tokens", "Usage", 10, "0.10"),
		line("USE1-Llama3-8B-Instruct-output-tokens", "Usage", 10, "0.20"),
		line("USE1-Llama3-8B-Instruct-output-tokens", "Tax", 0, "0.05"),
	}
	rep, err := aggregator.CompareBill(lines, daily, aggregator.BillOptions{Day: "2026-11-20"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differing) != 1 || rep.Differing[0] != haiku {
		t.Fatalf("differing models %v, want only %s", rep.Differing, haiku)
	}
	got := map[aggregator.BillKey]string{}
	for _, r := range rep.Rows {
		got[r.BillKey] = r.Status + " " + r.BilledCost.Sub(r.MeteredCost).String()
	}
	for k, want := range map[aggregator.BillKey]string{
		{haiku, "input", "on_demand", false}:                           "differs -0.101",
		{haiku, "output", "on_demand", false}:                          "differs -0.052",
		{haiku, "input", "on_demand", true}:                            "differs -0.2",
		{haiku, "output", "on_demand", true}:                           "differs -0.1",
		{"meta.llama3-8b-instruct-v1:0", "input", "on_demand", false}:  "matched 0",
		{"meta.llama3-8b-instruct-v1:0", "output", "on_demand", false}: "matched 0",
	} {
		if got[k] != want {
			t.Errorf("%+v: %q, want %q", k, got[k], want)
		}
	}

	alloc := aggregator.Allocate("2026-11-20", daily, rep.BilledByModel)
	billed := rep.BilledByModel[haiku].Round(2) // 4.077 -> 4.08
	var sum decimal.Decimal
	for _, r := range alloc.Rows {
		if r.BilledModel != haiku {
			if !r.Allocated.Equal(r.ListCost) {
				t.Errorf("%s: allocated %s, want its list cost %s (no discount)", r.ModelID, r.Allocated, r.ListCost)
			}
			continue
		}
		sum = sum.Add(r.Allocated)
		exact := billed.Mul(r.ListCost).Div(decimal.RequireFromString("4.53"))
		if r.Allocated.Sub(exact).Abs().GreaterThanOrEqual(decimal.New(1, -2)) {
			t.Errorf("%s %s: allocated %s, exact share %s", r.TeamID, r.ModelID, r.Allocated, exact)
		}
	}
	if !sum.Equal(billed) {
		t.Errorf("allocated %s for %s, billed %s", sum, haiku, billed)
	}
}

func TestShareCentsRemainderIsDeterministic(t *testing.T) {
	// Three equal rows and 100 cents: 34, 33, 33, the extra cent to the first key.
	daily := []schemas.DailyRow{dailyRow("z", "m", 1, 0, "1", "0"), dailyRow("a", "m", 1, 0, "1", "0"), dailyRow("k", "m", 1, 0, "1", "0")}
	alloc := aggregator.Allocate("2026-11-20", daily, map[string]decimal.Decimal{"m": decimal.NewFromInt(1)})
	var got []string
	for _, r := range alloc.Rows {
		got = append(got, r.TeamID+"="+r.Allocated.StringFixed(2))
	}
	if want := "[a=0.34 k=0.33 z=0.33]"; decimalList(got) != want {
		t.Errorf("allocation %v, want %s", got, want)
	}
}

func decimalList(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out + "]"
}

func TestReconcileTokens(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	ev := func(rid string, in int64) schemas.Event {
		return schemas.Event{EventID: "ev-" + rid, RequestID: rid, Timestamp: at, TeamID: "team-a", ModelID: "m", Status: schemas.StatusSuccess, InputTokens: in, OutputTokens: 5}
	}
	lr := func(rid string, in int64) aggregator.LogRecord {
		return aggregator.LogRecord{RequestID: rid, ModelID: "m", Time: at, Input: in, Output: 5, Key: "k.json.gz", Line: 1,
			Metadata: map[string]string{schemas.MetadataEventID: "ev-" + rid, schemas.MetadataTeamID: "team-a"}}
	}
	rep, err := aggregator.ReconcileTokens(
		[]schemas.Event{ev("r1", 10), ev("r2", 10), ev("r4", 10)},
		[]aggregator.LogRecord{lr("r1", 10), lr("r2", 11), lr("r3", 7)},
		[]aggregator.LogIssue{{Key: "k.json.gz", Line: 9, Reason: "not JSON"}},
		aggregator.TokenOptions{Day: "2026-11-20", Now: at.Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"r1": "matched", "r2": "mismatched", "r3": "unmetered", "r4": "unconfirmed", "": "unreadable"}
	for _, r := range rep.Rows {
		if want[r.RequestID] != r.Status {
			t.Errorf("%s: %s (%s), want %s", r.RequestID, r.Status, r.Detail, want[r.RequestID])
		}
		if r.RequestID == "r2" && (r.Metered.Input != 10 || r.Logged.Input != 11) {
			t.Errorf("r2 counts: metered %d, logged %d", r.Metered.Input, r.Logged.Input)
		}
	}
	if len(rep.Rows) != 5 {
		t.Errorf("%d rows, want 5", len(rep.Rows))
	}
}
