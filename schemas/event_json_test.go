package schemas

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// marshalByReflection is how events were written before AppendJSON, kept as
// the oracle AppendJSON must equal byte for byte.
func marshalByReflection(e Event) []byte {
	type plain Event
	w := struct {
		plain
		Timestamp string `json:"timestamp"`
	}{plain(e), FormatTime(e.Timestamp)}
	b, err := json.Marshal(w)
	if err != nil {
		panic(err)
	}
	return b
}

func TestAppendJSONEqualsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	texts := []string{"", "team-a", "CC-1", "a<b>&c", `q"uote\`, "tab\there", "ünïcødé", "\xff\xfe bad utf-8", "line\u2028sep", "del\x7f", "nul\x00"}
	str := func() string { return texts[r.IntN(len(texts))] }
	num := func() int64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return -r.Int64N(1000)
		default:
			return r.Int64()
		}
	}
	for i := 0; i < 20000; i++ {
		e := Event{SchemaVersion: r.IntN(3), EventID: str(), RequestID: str(), TeamID: str(), CostCenter: str(), ModelID: str(),
			Operation: str(), Status: str(), InputTokens: num(), OutputTokens: num(), LatencyMS: num(),
			CacheReadInputTokens: num(), CacheWriteInputTokens: num(), ImageCount: num(), ImageHeight: num(), ImageWidth: num(),
			ImageSteps: num(), ImageQuality: str(), APIKeyID: str(), Region: str(), PricingTier: str(), ModelAlias: str(),
			Timestamp: time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(time.FixedZone("x", 3600*(r.IntN(25)-12)))}
		want := marshalByReflection(e)
		got, _ := json.Marshal(e)
		if !bytes.Equal(got, want) {
			t.Fatalf("event %d:\ngot  %s\nwant %s", i, got, want)
		}
		if app := e.AppendJSON([]byte("prefix")); !bytes.Equal(app[6:], want) {
			t.Fatalf("AppendJSON does not append: %s", app)
		}
	}
}
