package pricing

import (
	"strings"
	"testing"
	"time"

	"github.com/meter-dev/meter/schemas"
)

// TestConflictingRowsAreRefused: two prices for the same model, date, region
// and tier would leave the bill to the order of the file.
func TestConflictingRowsAreRefused(t *testing.T) {
	csv := "model_id,effective_from,input_per_1k,output_per_1k\nm1,2026-01-01,0.001,0.002\nm1,2026-01-01,0.003,0.004\n"
	_, err := Parse(strings.NewReader(csv), "dup.csv")
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "after line 2") {
		t.Fatalf("err = %v, want the second row refused naming both lines", err)
	}
	// Different dates, tiers or regions are not conflicts.
	ok := "model_id,effective_from,input_per_1k,output_per_1k,pricing_tier,region\nm1,2026-01-01,0.001,0.002,,\nm1,2026-02-01,0.003,0.004,,\nm1,2026-01-01,0.0005,0.001,batch,\nm1,2026-01-01,0.002,0.003,,eu-west-1\n"
	if _, err := Parse(strings.NewReader(ok), "ok.csv"); err != nil {
		t.Fatal(err)
	}
}

// FuzzParse: no price file, however broken, panics the parser, and a book
// that loads prices an event without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte("model_id,effective_from,input_per_1k,output_per_1k\nm1,2026-01-01,0.001,0.002\n"))
	f.Add([]byte("model_id,effective_from,input_per_1k,output_per_1k,per_image,image_max_pixels\nimg,2026-01-01T12:00:00Z,0,0,0.04,1048576\n"))
	f.Add([]byte("# comment\nmodel_id,effective_from,input_per_1k,output_per_1k\nm1,2026-01-01,1e3,-1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(strings.NewReader(string(data)), "fuzz.csv")
		if err != nil {
			return
		}
		for model := range b.rows {
			e := schemas.Event{SchemaVersion: 1, ModelID: model, Status: schemas.StatusSuccess, InputTokens: 1000, OutputTokens: 1000,
				ImageCount: 1, ImageWidth: 512, ImageHeight: 512, Timestamp: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
			b.Cost(&e)
		}
	})
}
