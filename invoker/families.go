package invoker

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/meter-dev/meter/aggregator/pricing"
)

// Modality is what a model family produces.
type Modality string

// Modalities, named as Bedrock's ListFoundationModels names them.
const (
	ModalityText      Modality = "TEXT"
	ModalityEmbedding Modality = "EMBEDDING"
	ModalityImage     Modality = "IMAGE"
)

// family maps the seed request {"inputs","parameters"} onto one model line's
// native InvokeModel body and reads its native response back. The families
// table below is the only place that knows about providers.
type family struct {
	name     string
	provider string
	modality Modality
	prefixes []string // base model id prefixes, most specific first across the table
	models   []string // known base model ids, listed by /list_foundation_models
	// aliases rename seed-style parameters to the family's native names;
	// parameters not listed pass through unchanged.
	aliases map[string]string
	// build makes the native body from the prompt and the renamed parameters.
	build func(inputs string, p map[string]any) map[string]any
	// parse reads the native response body.
	parse func(body []byte) (result, error)
	// image reads the image settings from the native body build made.
	image func(native map[string]any) imageSettings
}

// result is what a native response carries. Token counts from the body are -1
// when the body has none; response headers take precedence anyway.
type result struct {
	Texts        []string
	Embedding    []float64
	Images       []string
	InputTokens  int64
	OutputTokens int64
}

type imageSettings struct {
	Height, Width, Steps int64
	Quality              string
}

var families = []*family{
	{
		name: "amazon-titan-text", provider: "Amazon", modality: ModalityText,
		prefixes: []string{"amazon.titan-text-", "amazon.titan-tg1-"},
		models:   []string{"amazon.titan-text-express-v1", "amazon.titan-text-lite-v1", "amazon.titan-text-premier-v1:0"},
		aliases:  map[string]string{"max_new_tokens": "maxTokenCount", "max_tokens": "maxTokenCount", "top_p": "topP", "stop": "stopSequences", "stop_sequences": "stopSequences"},
		build: func(in string, p map[string]any) map[string]any {
			b := map[string]any{"inputText": in}
			if len(p) > 0 {
				b["textGenerationConfig"] = p
			}
			return b
		},
		parse: func(body []byte) (result, error) {
			var r struct {
				InputTextTokenCount *int64 `json:"inputTextTokenCount"`
				Results             []struct {
					TokenCount *int64 `json:"tokenCount"`
					OutputText string `json:"outputText"`
				} `json:"results"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			res := result{InputTokens: val(r.InputTextTokenCount), OutputTokens: -1}
			for _, x := range r.Results {
				res.Texts = append(res.Texts, x.OutputText)
				if x.TokenCount != nil {
					res.OutputTokens = max(res.OutputTokens, 0) + *x.TokenCount
				}
			}
			return res, nil
		},
	},
	{
		name: "amazon-nova", provider: "Amazon", modality: ModalityText,
		prefixes: []string{"amazon.nova-"},
		models:   []string{"amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0"},
		aliases:  map[string]string{"max_tokens": "max_new_tokens", "stop": "stopSequences", "stop_sequences": "stopSequences"},
		build: func(in string, p map[string]any) map[string]any {
			b := map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"text": in}}}}}
			if sys, ok := p["system"]; ok {
				b["system"] = []any{map[string]any{"text": sys}}
				delete(p, "system")
			}
			if len(p) > 0 {
				b["inferenceConfig"] = p
			}
			return b
		},
		parse: func(body []byte) (result, error) {
			var r struct {
				Output struct {
					Message struct {
						Content []struct {
							Text string `json:"text"`
						} `json:"content"`
					} `json:"message"`
				} `json:"output"`
				Usage struct {
					InputTokens  *int64 `json:"inputTokens"`
					OutputTokens *int64 `json:"outputTokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			res := result{InputTokens: val(r.Usage.InputTokens), OutputTokens: val(r.Usage.OutputTokens)}
			res.Texts = []string{joinText(r.Output.Message.Content)}
			return res, nil
		},
	},
	{
		// The text-completion API of Claude 2 and Instant; later Claude models speak Messages.
		name: "anthropic-claude-completion", provider: "Anthropic", modality: ModalityText,
		prefixes: []string{"anthropic.claude-v2", "anthropic.claude-instant-"},
		models:   []string{"anthropic.claude-v2", "anthropic.claude-v2:1", "anthropic.claude-instant-v1"},
		aliases:  map[string]string{"max_new_tokens": "max_tokens_to_sample", "max_tokens": "max_tokens_to_sample", "stop": "stop_sequences"},
		build: func(in string, p map[string]any) map[string]any {
			if !strings.HasPrefix(in, "\n\nHuman:") {
				in = "\n\nHuman: " + in + "\n\nAssistant:"
			}
			b := map[string]any{"prompt": in, "max_tokens_to_sample": 512}
			for k, v := range p {
				b[k] = v
			}
			return b
		},
		parse: func(body []byte) (result, error) {
			var r struct {
				Completion string `json:"completion"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			return result{Texts: []string{r.Completion}, InputTokens: -1, OutputTokens: -1}, nil
		},
	},
	{
		name: "anthropic-claude-messages", provider: "Anthropic", modality: ModalityText,
		prefixes: []string{"anthropic.claude-"},
		models: []string{
			"anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-sonnet-20240229-v1:0",
			"anthropic.claude-3-opus-20240229-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0",
			"anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic.claude-3-5-haiku-20241022-v1:0",
			"anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0",
			"anthropic.claude-opus-4-20250514-v1:0", "anthropic.claude-opus-4-1-20250805-v1:0",
			"anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-haiku-4-5-20251001-v1:0",
		},
		aliases: map[string]string{"max_new_tokens": "max_tokens", "stop": "stop_sequences"},
		build: func(in string, p map[string]any) map[string]any {
			b := map[string]any{
				"anthropic_version": "bedrock-2023-05-31", "max_tokens": 512,
				"messages": []any{map[string]any{"role": "user", "content": in}},
			}
			for k, v := range p {
				b[k] = v
			}
			return b
		},
		parse: func(body []byte) (result, error) {
			var r struct {
				Content []struct {
					Type string `json:"type"`
					Text string `json:"text"`
				} `json:"content"`
				Usage struct {
					InputTokens  *int64 `json:"input_tokens"`
					OutputTokens *int64 `json:"output_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			var sb strings.Builder
			for _, c := range r.Content {
				if c.Type == "text" || c.Type == "" {
					sb.WriteString(c.Text)
				}
			}
			return result{Texts: []string{sb.String()}, InputTokens: val(r.Usage.InputTokens), OutputTokens: val(r.Usage.OutputTokens)}, nil
		},
	},
	{
		name: "ai21-jurassic", provider: "AI21 Labs", modality: ModalityText,
		prefixes: []string{"ai21.j2-"},
		models:   []string{"ai21.j2-mid-v1", "ai21.j2-ultra-v1"},
		aliases:  map[string]string{"max_new_tokens": "maxTokens", "max_tokens": "maxTokens", "top_p": "topP", "stop": "stopSequences", "stop_sequences": "stopSequences"},
		build:    promptBody("prompt"),
		parse: func(body []byte) (result, error) {
			var r struct {
				Prompt struct {
					Tokens []json.RawMessage `json:"tokens"`
				} `json:"prompt"`
				Completions []struct {
					Data struct {
						Text   string            `json:"text"`
						Tokens []json.RawMessage `json:"tokens"`
					} `json:"data"`
				} `json:"completions"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			res := result{InputTokens: int64(len(r.Prompt.Tokens)), OutputTokens: 0}
			for _, c := range r.Completions {
				res.Texts = append(res.Texts, c.Data.Text)
				res.OutputTokens += int64(len(c.Data.Tokens))
			}
			return res, nil
		},
	},
	{
		name: "ai21-jamba", provider: "AI21 Labs", modality: ModalityText,
		prefixes: []string{"ai21."},
		models:   []string{"ai21.jamba-1-5-mini-v1:0", "ai21.jamba-1-5-large-v1:0", "ai21.jamba-instruct-v1:0"},
		aliases:  map[string]string{"max_new_tokens": "max_tokens", "stop_sequences": "stop"},
		build:    chatBody,
		parse:    parseChatCompletion,
	},
	{
		name: "cohere-command-r", provider: "Cohere", modality: ModalityText,
		prefixes: []string{"cohere.command-r"},
		models:   []string{"cohere.command-r-v1:0", "cohere.command-r-plus-v1:0"},
		aliases:  map[string]string{"max_new_tokens": "max_tokens", "top_p": "p", "top_k": "k", "stop": "stop_sequences"},
		build:    promptBody("message"),
		parse: func(body []byte) (result, error) {
			var r struct {
				Text string `json:"text"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			return result{Texts: []string{r.Text}, InputTokens: -1, OutputTokens: -1}, nil
		},
	},
	{
		name: "cohere-command", provider: "Cohere", modality: ModalityText,
		prefixes: []string{"cohere.command-"},
		models:   []string{"cohere.command-text-v14", "cohere.command-light-text-v14"},
		aliases:  map[string]string{"max_new_tokens": "max_tokens", "top_p": "p", "top_k": "k", "stop": "stop_sequences"},
		build:    promptBody("prompt"),
		parse: func(body []byte) (result, error) {
			var r struct {
				Generations []struct {
					Text string `json:"text"`
				} `json:"generations"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			res := result{InputTokens: -1, OutputTokens: -1}
			for _, g := range r.Generations {
				res.Texts = append(res.Texts, g.Text)
			}
			return res, nil
		},
	},
	{
		name: "meta-llama", provider: "Meta", modality: ModalityText,
		prefixes: []string{"meta.llama"},
		models: []string{
			"meta.llama3-8b-instruct-v1:0", "meta.llama3-70b-instruct-v1:0", "meta.llama3-1-8b-instruct-v1:0",
			"meta.llama3-1-70b-instruct-v1:0", "meta.llama3-1-405b-instruct-v1:0", "meta.llama3-2-1b-instruct-v1:0",
			"meta.llama3-2-3b-instruct-v1:0", "meta.llama3-2-11b-instruct-v1:0", "meta.llama3-2-90b-instruct-v1:0",
			"meta.llama3-3-70b-instruct-v1:0",
		},
		aliases: map[string]string{"max_new_tokens": "max_gen_len", "max_tokens": "max_gen_len"},
		build:   promptBody("prompt"),
		parse: func(body []byte) (result, error) {
			var r struct {
				Generation           string `json:"generation"`
				PromptTokenCount     *int64 `json:"prompt_token_count"`
				GenerationTokenCount *int64 `json:"generation_token_count"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			return result{Texts: []string{r.Generation}, InputTokens: val(r.PromptTokenCount), OutputTokens: val(r.GenerationTokenCount)}, nil
		},
	},
	{
		name: "mistral", provider: "Mistral AI", modality: ModalityText,
		prefixes: []string{"mistral."},
		models: []string{
			"mistral.mistral-7b-instruct-v0:2", "mistral.mixtral-8x7b-instruct-v0:1", "mistral.mistral-small-2402-v1:0",
			"mistral.mistral-large-2402-v1:0",
		},
		aliases: map[string]string{"max_new_tokens": "max_tokens", "stop_sequences": "stop"},
		build: func(in string, p map[string]any) map[string]any {
			if !strings.HasPrefix(in, "<s>") {
				in = "<s>[INST] " + in + " [/INST]"
			}
			b := map[string]any{"prompt": in}
			for k, v := range p {
				b[k] = v
			}
			return b
		},
		parse: func(body []byte) (result, error) {
			var r struct {
				Outputs []struct {
					Text string `json:"text"`
				} `json:"outputs"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			if len(r.Outputs) == 0 {
				return parseChatCompletion(body)
			}
			res := result{InputTokens: -1, OutputTokens: -1}
			for _, o := range r.Outputs {
				res.Texts = append(res.Texts, o.Text)
			}
			return res, nil
		},
	},
	{
		name: "amazon-titan-embed", provider: "Amazon", modality: ModalityEmbedding,
		prefixes: []string{"amazon.titan-embed-"},
		models:   []string{"amazon.titan-embed-text-v1", "amazon.titan-embed-text-v2:0", "amazon.titan-embed-g1-text-02"},
		build:    promptBody("inputText"),
		parse: func(body []byte) (result, error) {
			var r struct {
				Embedding           []float64 `json:"embedding"`
				InputTextTokenCount *int64    `json:"inputTextTokenCount"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			return result{Embedding: r.Embedding, InputTokens: val(r.InputTextTokenCount), OutputTokens: 0}, nil
		},
	},
	{
		name: "cohere-embed", provider: "Cohere", modality: ModalityEmbedding,
		prefixes: []string{"cohere.embed-"},
		models:   []string{"cohere.embed-english-v3", "cohere.embed-multilingual-v3"},
		build: func(in string, p map[string]any) map[string]any {
			b := map[string]any{"texts": []string{in}, "input_type": "search_document"}
			for k, v := range p {
				b[k] = v
			}
			return b
		},
		parse: func(body []byte) (result, error) {
			var r struct {
				Embeddings json.RawMessage `json:"embeddings"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			var list [][]float64
			if err := json.Unmarshal(r.Embeddings, &list); err != nil {
				// embedding_types makes it an object keyed by type.
				var byType map[string][][]float64
				if err := json.Unmarshal(r.Embeddings, &byType); err != nil {
					return result{}, err
				}
				list = byType["float"]
			}
			res := result{InputTokens: -1, OutputTokens: 0}
			if len(list) > 0 {
				res.Embedding = list[0]
			}
			return res, nil
		},
	},
	{
		name: "amazon-titan-image", provider: "Amazon", modality: ModalityImage,
		prefixes: []string{"amazon.titan-image-generator-"},
		models:   []string{"amazon.titan-image-generator-v1", "amazon.titan-image-generator-v2:0"},
		aliases:  map[string]string{"num_images": "numberOfImages", "n": "numberOfImages", "cfg_scale": "cfgScale", "negative_prompt": "negativeText"},
		build: func(in string, p map[string]any) map[string]any {
			t2i := map[string]any{"text": in}
			if neg, ok := p["negativeText"]; ok {
				t2i["negativeText"] = neg
				delete(p, "negativeText")
			}
			// Defaults are written out so that what is metered is what was asked for.
			cfg := map[string]any{"numberOfImages": 1, "height": 1024, "width": 1024, "quality": "standard"}
			for k, v := range p {
				cfg[k] = v
			}
			return map[string]any{"taskType": "TEXT_IMAGE", "textToImageParams": t2i, "imageGenerationConfig": cfg}
		},
		parse: parseImages("images"),
		image: func(b map[string]any) imageSettings {
			cfg, _ := b["imageGenerationConfig"].(map[string]any)
			q, _ := cfg["quality"].(string)
			return imageSettings{Height: num(cfg["height"]), Width: num(cfg["width"]), Quality: q}
		},
	},
	{
		name: "stability-sdxl", provider: "Stability AI", modality: ModalityImage,
		prefixes: []string{"stability.stable-diffusion-xl"},
		models:   []string{"stability.stable-diffusion-xl-v1"},
		aliases:  map[string]string{"num_inference_steps": "steps", "guidance_scale": "cfg_scale", "num_images": "samples"},
		build: func(in string, p map[string]any) map[string]any {
			b := map[string]any{"text_prompts": []any{map[string]any{"text": in}}, "height": 1024, "width": 1024, "steps": 30, "cfg_scale": 7, "samples": 1}
			for k, v := range p {
				b[k] = v
			}
			return b
		},
		parse: func(body []byte) (result, error) {
			var r struct {
				Artifacts []struct {
					Base64 string `json:"base64"`
				} `json:"artifacts"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return result{}, err
			}
			res := result{InputTokens: -1, OutputTokens: -1}
			for _, a := range r.Artifacts {
				res.Images = append(res.Images, a.Base64)
			}
			return res, nil
		},
		image: func(b map[string]any) imageSettings {
			s := imageSettings{Height: num(b["height"]), Width: num(b["width"]), Steps: num(b["steps"]), Quality: "standard"}
			// SDXL is priced premium above 50 steps.
			if s.Steps > 50 {
				s.Quality = "premium"
			}
			return s
		},
	},
	{
		name: "stability-image", provider: "Stability AI", modality: ModalityImage,
		prefixes: []string{"stability."},
		models:   []string{"stability.sd3-large-v1:0", "stability.sd3-5-large-v1:0", "stability.stable-image-core-v1:1", "stability.stable-image-ultra-v1:1"},
		aliases:  map[string]string{"negativeText": "negative_prompt"},
		build:    promptBody("prompt"),
		parse:    parseImages("images"),
		image:    func(map[string]any) imageSettings { return imageSettings{} },
	},
}

// Profile prefixes of cross-region inference profiles; such ids bill as their base model.
// BaseModelID maps a model id as invoked to the foundation model it runs:
// cross-region inference profiles ("us.anthropic.claude-…") and ARNs of
// foundation models or system inference profiles lose their wrapping.
// Application inference profile ARNs are returned unchanged.
func BaseModelID(id string) string { return pricing.BaseModel(id) }

// familyOf returns the family of a model id as invoked, or nil.
func familyOf(modelID string) *family {
	base := BaseModelID(modelID)
	for _, f := range families {
		for _, p := range f.prefixes {
			if strings.HasPrefix(base, p) {
				return f
			}
		}
	}
	return nil
}

// nativeBody builds the family's InvokeModel body from a seed-style request.
func (f *family) nativeBody(inputs string, params map[string]any) (map[string]any, []byte, error) {
	p := make(map[string]any, len(params))
	for k, v := range params {
		if n, ok := f.aliases[k]; ok {
			k = n
		}
		p[k] = v
	}
	b := f.build(inputs, p)
	raw, err := json.Marshal(b)
	if err != nil {
		return nil, nil, fmt.Errorf("parameters: %w", err)
	}
	return b, raw, nil
}

func promptBody(key string) func(string, map[string]any) map[string]any {
	return func(in string, p map[string]any) map[string]any {
		b := map[string]any{key: in}
		for k, v := range p {
			b[k] = v
		}
		return b
	}
}

func chatBody(in string, p map[string]any) map[string]any {
	b := map[string]any{"messages": []any{map[string]any{"role": "user", "content": in}}}
	for k, v := range p {
		b[k] = v
	}
	return b
}

func parseChatCompletion(body []byte) (result, error) {
	var r struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     *int64 `json:"prompt_tokens"`
			CompletionTokens *int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return result{}, err
	}
	res := result{InputTokens: val(r.Usage.PromptTokens), OutputTokens: val(r.Usage.CompletionTokens)}
	for _, c := range r.Choices {
		res.Texts = append(res.Texts, c.Message.Content)
	}
	return res, nil
}

func parseImages(key string) func([]byte) (result, error) {
	return func(body []byte) (result, error) {
		var r map[string]json.RawMessage
		if err := json.Unmarshal(body, &r); err != nil {
			return result{}, err
		}
		res := result{InputTokens: -1, OutputTokens: -1}
		if raw, ok := r[key]; ok {
			if err := json.Unmarshal(raw, &res.Images); err != nil {
				return result{}, err
			}
		}
		return res, nil
	}
}

func joinText(cs []struct {
	Text string `json:"text"`
}) string {
	var sb strings.Builder
	for _, c := range cs {
		sb.WriteString(c.Text)
	}
	return sb.String()
}

func val(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}

// num reads a JSON-ish number (int from our own defaults, float64 from decoded JSON).
func num(v any) int64 {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int64:
		return x
	case float64:
		return int64(x)
	case json.Number:
		n, _ := x.Int64()
		return n
	}
	return 0
}
