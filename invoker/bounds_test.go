package invoker

import (
	"strings"
	"testing"
)

// TestBoundOf: the most a call can use comes from its own body, per family.
func TestBoundOf(t *testing.T) {
	for _, c := range []struct {
		name, op, model, body string
		out, images           int64
	}{
		{"claude messages: max_tokens", "InvokeModel", "anthropic.claude-3-haiku-20240307-v1:0", `{"max_tokens":300,"messages":[]}`, 300, 0},
		{"claude via a profile, no max: the model's maximum", "InvokeModel", "us.anthropic.claude-3-haiku-20240307-v1:0", `{"messages":[]}`, 4096, 0},
		{"titan text", "InvokeModel", "amazon.titan-text-express-v1", `{"inputText":"x","textGenerationConfig":{"maxTokenCount":77}}`, 77, 0},
		{"nova", "InvokeModelWithResponseStream", "amazon.nova-lite-v1:0", `{"inferenceConfig":{"max_new_tokens":12.5}}`, 13, 0},
		{"llama", "InvokeModel", "meta.llama3-8b-instruct-v1:0", `{"prompt":"x"}`, 2048, 0},
		{"cohere: completions times count", "InvokeModel", "cohere.command-text-v14", `{"prompt":"x","max_tokens":100,"num_generations":3}`, 300, 0},
		{"negative max: the model's maximum", "InvokeModel", "mistral.mistral-large-2402-v1:0", `{"prompt":"x","max_tokens":-5}`, 8192, 0},
		{"embedding: no output", "InvokeModel", "amazon.titan-embed-text-v2:0", `{"inputText":"x"}`, 0, 0},
		{"titan image count", "InvokeModel", "amazon.titan-image-generator-v1", `{"imageGenerationConfig":{"numberOfImages":3}}`, 0, 3},
		{"sdxl default one image", "InvokeModel", "stability.stable-diffusion-xl-v1", `{"text_prompts":[]}`, 0, 1},
		{"unknown model", "InvokeModel", "acme.new-model-v1", `{}`, unknownMaxOutputTokens, 0},
		{"unknown model naming its maximum", "InvokeModel", "acme.new-model-v1", `{"inferenceConfig":{"maxTokens":64}}`, 64, 0},
		{"converse maxTokens", "Converse", "anthropic.claude-3-haiku-20240307-v1:0", `{"messages":[{"role":"user","content":[{"text":"x"}]}],"inferenceConfig":{"maxTokens":9}}`, 9, 0},
		{"converse without: the model's maximum", "ConverseStream", "anthropic.claude-sonnet-4-20250514-v1:0", `{"messages":[{"role":"user","content":[{"text":"x"}]}]}`, 65536, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := boundOf(&call{op: c.op, modelID: c.model, body: []byte(c.body)})
			if b.outputTokens != c.out || b.images != c.images || b.inputTokens != int64(len(c.body))+promptOverheadTokens {
				t.Fatalf("bound %+v; want output %d, images %d, input %d", b, c.out, c.images, len(c.body)+promptOverheadTokens)
			}
		})
	}
	// An image counts mediaBlockTokens instead of its base64 characters,
	// in a Converse body and in Claude's and Nova's native ones; a document
	// counts its bytes and mediaBlockTokens more.
	data := strings.Repeat("QUJD", 5000)
	for _, c := range []struct{ op, model, body string }{
		{"Converse", "anthropic.claude-3-haiku-20240307-v1:0", `{"messages":[{"role":"user","content":[{"image":{"format":"png","source":{"bytes":"` + data + `"}}},{"text":"x"}]}],"inferenceConfig":{"maxTokens":1}}`},
		{"InvokeModel", "anthropic.claude-3-haiku-20240307-v1:0", `{"max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"` + data + `"}}]}]}`},
		{"InvokeModel", "amazon.nova-lite-v1:0", `{"inferenceConfig":{"max_new_tokens":1},"messages":[{"role":"user","content":[{"image":{"format":"png","source":{"bytes":"` + data + `"}}}]}]}`},
	} {
		b := boundOf(&call{op: c.op, modelID: c.model, body: []byte(c.body)})
		if want := int64(len(c.body)-len(data)) + promptOverheadTokens + mediaBlockTokens; b.inputTokens != want || b.outputTokens != 1 {
			t.Errorf("%s %s: image bound %+v, want input %d", c.op, c.model, b, want)
		}
	}
	// Text shaped like base64 elsewhere counts every byte.
	text := `{"max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"` + data + `"}]}]}`
	if b := boundOf(&call{op: "InvokeModel", modelID: "anthropic.claude-3-haiku-20240307-v1:0", body: []byte(text)}); b.inputTokens != int64(len(text))+promptOverheadTokens {
		t.Errorf("text bound %+v", b)
	}
	doc := `{"messages":[{"role":"user","content":[{"document":{"format":"pdf","name":"a","source":{"bytes":"` + data + `"}}}]}],"inferenceConfig":{"maxTokens":1}}`
	if b := boundOf(&call{op: "Converse", modelID: "anthropic.claude-3-haiku-20240307-v1:0", body: []byte(doc)}); b.inputTokens != int64(len(doc))+promptOverheadTokens+mediaBlockTokens {
		t.Errorf("document bound %+v", b)
	}
}

func TestReadSizedReadsWhatArrivesWhateverWasDeclared(t *testing.T) {
	for _, c := range []struct {
		body     string
		declared int64
		err      bool
	}{{"hello", 5, false}, {"hello", -1, false}, {"hello", 0, false}, {"hello", 3, false}, {"hel", 5, true}, {"", 0, false}} {
		got, err := readSized(strings.NewReader(c.body), c.declared)
		if (err != nil) != c.err || !c.err && string(got) != c.body {
			t.Errorf("%q declared %d: %q, %v", c.body, c.declared, got, err)
		}
	}
}
