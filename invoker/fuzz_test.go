package invoker

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzRequestBodies: no request body, however malformed, panics the
// handlers' parsers: the seed route's {"inputs", "parameters"} mapped onto
// every model family's native body, and the Converse body mapped onto the
// SDK's input.
func FuzzRequestBodies(f *testing.F) {
	f.Add([]byte(`{"inputs": "hello", "parameters": {"max_tokens": 50, "temperature": 0.5}}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":10},"system":[{"text":"be brief"}]}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"image":{"format":"png","source":{"bytes":"AAAA"}}},{"cachePoint":{"type":"default"}}]}]}`))
	f.Add([]byte(`{"inputs": "", "parameters": {"height": 1e308, "width": -1, "cfg_scale": "x"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		// A call's bound (what it reserves) is never negative, whatever it sent.
		checkBound := func(c *call) {
			b := boundOf(c)
			if b.inputTokens < promptOverheadTokens || b.outputTokens < 0 || b.images < 0 {
				t.Fatalf("bound %+v of %s %q", b, c.modelID, c.body)
			}
		}
		checkBound(&call{op: "Converse", modelID: "anthropic.claude-3-haiku-20240307-v1:0", body: body})
		if req, err := parseConverse(body); err == nil {
			req.input("anthropic.claude-3-haiku-20240307-v1:0")
			req.streamInput("anthropic.claude-3-haiku-20240307-v1:0")
		}
		var in invokeBody
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.UseNumber()
		if dec.Decode(&in) != nil || in.Inputs == nil {
			return
		}
		for _, fam := range families {
			native, raw, err := fam.nativeBody(*in.Inputs, in.Parameters)
			if err == nil && fam.image != nil {
				fam.image(native)
			}
			if err == nil {
				checkBound(&call{op: "InvokeModel", modelID: fam.models[0], body: raw})
			}
		}
	})
}

// FuzzModelAnswers: no answer from a model, however malformed, panics the
// parsers that read its tokens and text.
func FuzzModelAnswers(f *testing.F) {
	f.Add([]byte(`{"content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"output_tokens":5}}`))
	f.Add([]byte(`{"results":[{"outputText":"hi","tokenCount":5}],"inputTextTokenCount":3}`))
	f.Add([]byte(`{"embedding":[0.1,0.2],"inputTextTokenCount":2}`))
	f.Add([]byte(`{"images":["AAAA"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, fam := range families {
			fam.parse(body)
		}
	})
}
