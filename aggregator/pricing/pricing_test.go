package pricing

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/schemas"
)

const twoRows = `model_id,effective_from,input_per_1k,output_per_1k,cache_read_per_1k,cache_write_per_1k
m1,2026-01-01,0.003,0.015,0.0003,0.00375
m1,2026-06-01,0.001,0.005,0.0001,0.00125
`

func ev(model, day string, in, out int64) *schemas.Event {
	ts, _ := time.Parse(time.RFC3339, day+"T12:00:00Z")
	return &schemas.Event{ModelID: model, Timestamp: ts, Status: schemas.StatusSuccess, InputTokens: in, OutputTokens: out}
}

func TestCostUsesRowInForce(t *testing.T) {
	b, err := Parse(strings.NewReader(twoRows), "test")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		day, model      string
		in, out         int64
		wantIn, wantOut string
	}{
		{"2026-03-01", "m1", 1234, 567, "0.003702", "0.008505"},
		{"2026-06-01", "m1", 1234, 567, "0.001234", "0.002835"},
		{"2026-12-31", "us.m1", 1, 1, "0.000001", "0.000005"},
		{"2026-03-01", "arn:aws:bedrock:us-east-1::foundation-model/m1", 1000, 0, "0.003", "0"},
		{"2026-03-01", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.m1", 1000, 0, "0.003", "0"},
	}
	for _, c := range cases {
		got, err := b.Cost(ev(c.model, c.day, c.in, c.out))
		if err != nil {
			t.Fatalf("%s %s: %v", c.model, c.day, err)
		}
		if got.Input.String() != c.wantIn || got.Output.String() != c.wantOut {
			t.Errorf("%s %s: got %s/%s want %s/%s", c.model, c.day, got.Input, got.Output, c.wantIn, c.wantOut)
		}
	}
}

func TestCostIsExactOverManyEvents(t *testing.T) {
	b, _ := Parse(strings.NewReader(twoRows), "test")
	var sum schemas.Costs
	for i := 0; i < 100000; i++ {
		c, err := b.Cost(ev("m1", "2026-03-01", 1, 0))
		if err != nil {
			t.Fatal(err)
		}
		sum = sum.Add(c)
	}
	if sum.Input.String() != "0.3" {
		t.Fatalf("100000 x 1 token x 0.003/1k = %s, want 0.3", sum.Input)
	}
}

func TestPriceChangingMidDay(t *testing.T) {
	b, err := Parse(strings.NewReader("model_id,effective_from,input_per_1k,output_per_1k\nm,2026-01-01,0.002,0.004\nm,2026-11-25T12:00:00Z,0.001,0.002\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	before := ev("m", "2026-11-25", 1000, 1000)
	before.Timestamp = before.Timestamp.Add(-time.Millisecond)
	after := ev("m", "2026-11-25", 1000, 1000)
	cb, _ := b.Cost(before)
	ca, _ := b.Cost(after)
	if cb.Total().String() != "0.006" || ca.Total().String() != "0.003" {
		t.Fatalf("before noon %s, from noon %s; want 0.006 and 0.003", cb.Total(), ca.Total())
	}
}

func TestMissingPriceNamesModel(t *testing.T) {
	b, _ := Parse(strings.NewReader(twoRows), "test")
	_, err := b.Cost(ev("m2", "2026-03-01", 1, 1))
	var np *NoPriceError
	if !errors.As(err, &np) || np.ModelID != "m2" || !strings.Contains(err.Error(), `"m2"`) {
		t.Fatalf("want NoPriceError naming m2, got %v", err)
	}
	// Before the first effective date there is no price either.
	if _, err := b.Cost(ev("m1", "2025-12-31", 1, 1)); !errors.As(err, &np) {
		t.Fatalf("want NoPriceError before effective_from, got %v", err)
	}
	// Substrings never match.
	if _, err := b.Cost(ev("m1-large", "2026-03-01", 1, 1)); !errors.As(err, &np) {
		t.Fatalf("want NoPriceError for a longer id, got %v", err)
	}
	// Non-successful calls cost nothing and need no price.
	e := ev("m2", "2026-03-01", 5, 5)
	e.Status = schemas.StatusThrottled
	if c, err := b.Cost(e); err != nil || !c.Total().IsZero() {
		t.Fatalf("throttled call: %v %v", c, err)
	}
}

func TestParseErrorsNameLineAndColumn(t *testing.T) {
	cases := map[string]string{
		"model_id,effective_from,input_per_1k\nm,2026-01-01,1\n":                            `"output_per_1k" missing`,
		"model_id,effective_from,input_per_1k,output_per_1k\nm,2026-13-01,1,1\n":            "line 2: effective_from",
		"model_id,effective_from,input_per_1k,output_per_1k\nm,2026-01-01,abc,1\n":          "line 2: input_per_1k",
		"model_id,effective_from,input_per_1k,output_per_1k\nm,2026-01-01,1,0.1\nm,x,1,1\n": "line 3: effective_from",
		"model_id,effective_from,input_per_1k,output_per_1k\n":                              "no price rows",
	}
	for in, want := range cases {
		_, err := Parse(strings.NewReader(in), "t")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestDefaultBookPricesImagesAndCache(t *testing.T) {
	b := Default()
	e := ev("amazon.titan-image-generator-v1", "2026-11-25", 0, 0)
	e.ImageCount, e.ImageWidth, e.ImageHeight, e.ImageQuality = 3, 1024, 1024, "premium"
	c, err := b.Cost(e)
	if err != nil || c.Image.String() != "0.036" {
		t.Fatalf("3 premium 1024x1024 Titan images: %v %v, want 0.036", c.Image, err)
	}
	e.ImageWidth, e.ImageHeight, e.ImageQuality = 512, 512, "standard"
	if c, _ = b.Cost(e); c.Image.String() != "0.024" {
		t.Fatalf("3 standard 512x512: %v, want 0.024", c.Image)
	}
	s := ev("stability.stable-diffusion-xl-v1", "2026-11-25", 0, 0)
	s.ImageCount, s.ImageWidth, s.ImageHeight, s.ImageSteps = 2, 1024, 1024, 70
	if c, _ = b.Cost(s); c.Image.String() != "0.16" {
		t.Fatalf("2 SDXL premium: %v, want 0.16", c.Image)
	}
	h := ev("us.anthropic.claude-3-5-haiku-20241022-v1:0", "2026-11-25", 1000, 1000)
	h.CacheReadInputTokens, h.CacheWriteInputTokens = 10000, 2000
	c, err = b.Cost(h)
	if err != nil || c.Total().String() != "0.0076" {
		t.Fatalf("haiku with cache: %v %v, want 0.0008+0.004+0.0008+0.002=0.0076", c.Total(), err)
	}
}

func ExampleBook_Cost() {
	b := Default()
	ts, _ := time.Parse(time.RFC3339, "2026-11-25T10:00:00Z")
	c, _ := b.Cost(&schemas.Event{ModelID: "anthropic.claude-3-haiku-20240307-v1:0", Timestamp: ts,
		Status: schemas.StatusSuccess, InputTokens: 1200, OutputTokens: 350})
	fmt.Println(c.Input, c.Output, c.Total())
	// Output: 0.0003 0.0004375 0.0007375
}
