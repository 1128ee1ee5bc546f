package parquetio_test

import (
	"reflect"
	"testing"

	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/schemas"
)

// eventRowV1 is the events table as written before model_alias existed.
type eventRowV1 struct {
	SchemaVersion         int32  `parquet:"name=schema_version, type=INT32"`
	EventID               string `parquet:"name=event_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN"`
	RequestID             string `parquet:"name=request_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN"`
	Timestamp             int64  `parquet:"name=timestamp, type=INT64, logicaltype=TIMESTAMP, logicaltype.isadjustedtoutc=true, logicaltype.unit=MILLIS"`
	TeamID                string `parquet:"name=team_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	CostCenter            string `parquet:"name=cost_center, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	ModelID               string `parquet:"name=model_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Operation             string `parquet:"name=operation, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Status                string `parquet:"name=status, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	InputTokens           int64  `parquet:"name=input_tokens, type=INT64"`
	OutputTokens          int64  `parquet:"name=output_tokens, type=INT64"`
	LatencyMS             int64  `parquet:"name=latency_ms, type=INT64"`
	CacheReadInputTokens  int64  `parquet:"name=cache_read_input_tokens, type=INT64"`
	CacheWriteInputTokens int64  `parquet:"name=cache_write_input_tokens, type=INT64"`
	ImageCount            int64  `parquet:"name=image_count, type=INT64"`
	ImageHeight           int64  `parquet:"name=image_height, type=INT64"`
	ImageWidth            int64  `parquet:"name=image_width, type=INT64"`
	ImageSteps            int64  `parquet:"name=image_steps, type=INT64"`
	ImageQuality          string `parquet:"name=image_quality, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	APIKeyID              string `parquet:"name=api_key_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Region                string `parquet:"name=region, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	PricingTier           string `parquet:"name=pricing_tier, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
}

// TestFilesWithoutAddedColumnsStillRead: an events file written before
// model_alias existed reads with the alias empty and every other column
// whole; a file written now keeps the alias.
func TestFilesWithoutAddedColumnsStillRead(t *testing.T) {
	now := events(50)
	old := make([]eventRowV1, len(now))
	for i := range now {
		now[i].ModelAlias = ""
		// The old shape is the new one less model_alias: copy by field name.
		o, n := reflect.ValueOf(&old[i]).Elem(), reflect.ValueOf(now[i])
		for f := 0; f < o.NumField(); f++ {
			o.Field(f).Set(n.FieldByName(o.Type().Field(f).Name))
		}
	}
	got, err := parquetio.ReadFile[schemas.EventRow](writeFile(t, old, parquetio.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, now) {
		t.Fatalf("an old file read back differently")
	}
	now[3].ModelAlias = "claude"
	got, err = parquetio.ReadFile[schemas.EventRow](writeFile(t, now, parquetio.Options{}))
	if err != nil || got[3].ModelAlias != "claude" || got[4].ModelAlias != "" {
		t.Fatalf("model_alias not kept: %v %q", err, got[3].ModelAlias)
	}
}
