package bedrocklocal

import (
	"encoding/json"
	"strings"
)

// Each dialect below mirrors one provider's documented InvokeModel request
// and response bodies (and stream chunks) on Bedrock.

func decodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return validation("Malformed input request: %v, please reformat your input and try again.", err)
	}
	return nil
}

// stopReason picks the provider's word for "finished" or "hit the limit".
func stopReason(a answer, done, length string) string {
	if a.truncated {
		return length
	}
	return done
}

// chunkEach maps every stream piece of the answer through fn; last is true
// for the final piece.
func chunkEach(a answer, fn func(piece string, words int, last bool) map[string]any) []map[string]any {
	ps := pieces(a.words)
	out := make([]map[string]any, 0, len(ps))
	words := 0
	for i, p := range ps {
		words += len(strings.Fields(p))
		out = append(out, fn(p, words, i == len(ps)-1))
	}
	return out
}

func nonEmpty(p prompt) (prompt, error) {
	if countTokens(p.texts...) == 0 {
		return p, validation("Malformed input request: the prompt is empty, please reformat your input and try again.")
	}
	return p, nil
}

// ---- Amazon Titan Text ----

var titanText = dialect{
	name:  "inputText",
	match: has("inputText"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			InputText string `json:"inputText"`
			Config    struct {
				MaxTokenCount int `json:"maxTokenCount"`
			} `json:"textGenerationConfig"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		return nonEmpty(prompt{texts: []string{req.InputText}, maxTokens: req.Config.MaxTokenCount})
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{
			"inputTextTokenCount": a.usage.input,
			"results": []any{map[string]any{
				"tokenCount":       a.usage.output,
				"outputText":       a.text,
				"completionReason": stopReason(a, "FINISH", "LENGTH"),
			}},
		}
	},
	stream: func(m *model, p prompt, a answer) []map[string]any {
		return chunkEach(a, func(piece string, words int, last bool) map[string]any {
			c := map[string]any{
				"outputText":                piece,
				"index":                     0,
				"totalOutputTextTokenCount": words,
				"completionReason":          nil,
				"inputTextTokenCount":       a.usage.input,
			}
			if last {
				c["completionReason"] = stopReason(a, "FINISH", "LENGTH")
			}
			return c
		})
	},
}

// ---- Messages with content blocks: Amazon Nova (and the Converse API) ----

type contentBlock struct {
	Text       *string         `json:"text"`
	CachePoint json.RawMessage `json:"cachePoint"`
}

type blockMessage struct {
	Role    string         `json:"role"`
	Content []contentBlock `json:"content"`
}

// blockPrompt gathers the text of system and message blocks in order; a
// cachePoint block ends the cacheable prefix.
func blockPrompt(system []contentBlock, messages []blockMessage) (prompt, error) {
	if len(messages) == 0 {
		return prompt{}, validation("The messages field is required and must contain at least one message.")
	}
	if messages[0].Role != "user" {
		return prompt{}, validation("A conversation must start with a user message. Try again with a conversation that starts with a user message.")
	}
	var p prompt
	add := func(blocks []contentBlock) {
		for _, b := range blocks {
			if b.Text != nil {
				p.texts = append(p.texts, *b.Text)
			}
			if b.CachePoint != nil {
				p.cacheUpTo = len(p.texts)
			}
		}
	}
	add(system)
	for _, m := range messages {
		if m.Role != "user" && m.Role != "assistant" {
			return prompt{}, validation("Unsupported role %q: a message's role must be user or assistant.", m.Role)
		}
		add(m.Content)
	}
	return nonEmpty(p)
}

var novaMessages = dialect{
	name:  "messages",
	match: has("messages"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			System          []contentBlock `json:"system"`
			Messages        []blockMessage `json:"messages"`
			InferenceConfig struct {
				MaxNewTokens int `json:"max_new_tokens"`
				MaxTokens    int `json:"maxTokens"`
			} `json:"inferenceConfig"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		p, err := blockPrompt(req.System, req.Messages)
		p.maxTokens = max(req.InferenceConfig.MaxNewTokens, req.InferenceConfig.MaxTokens)
		return p, err
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{
			"output": map[string]any{"message": map[string]any{
				"role":    "assistant",
				"content": []any{map[string]any{"text": a.text}},
			}},
			"stopReason": stopReason(a, "end_turn", "max_tokens"),
			"usage":      novaUsage(a.usage),
		}
	},
	stream: func(m *model, p prompt, a answer) []map[string]any {
		out := []map[string]any{{"messageStart": map[string]any{"role": "assistant"}}}
		out = append(out, chunkEach(a, func(piece string, _ int, _ bool) map[string]any {
			return map[string]any{"contentBlockDelta": map[string]any{"delta": map[string]any{"text": piece}, "contentBlockIndex": 0}}
		})...)
		return append(out,
			map[string]any{"contentBlockStop": map[string]any{"contentBlockIndex": 0}},
			map[string]any{"messageStop": map[string]any{"stopReason": stopReason(a, "end_turn", "max_tokens")}},
			map[string]any{"metadata": map[string]any{"usage": novaUsage(a.usage), "metrics": map[string]any{}, "trace": map[string]any{}}},
		)
	},
}

func novaUsage(u usage) map[string]any {
	return map[string]any{
		"inputTokens":               u.input,
		"outputTokens":              u.output,
		"totalTokens":               u.total(),
		"cacheReadInputTokenCount":  u.cacheRead,
		"cacheWriteInputTokenCount": u.cacheWrite,
	}
}

// ---- Anthropic Claude: Messages API and text completions ----

// anthropicContent is a string or a list of blocks, in system and messages.
type anthropicContent []struct {
	Type         string          `json:"type"`
	Text         string          `json:"text"`
	CacheControl json.RawMessage `json:"cache_control"`
}

func (c *anthropicContent) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = anthropicContent{{Type: "text", Text: s}}
		return nil
	}
	type blocks anthropicContent
	return json.Unmarshal(b, (*blocks)(c))
}

func (c anthropicContent) addTo(p *prompt) {
	for _, b := range c {
		if b.Type == "text" {
			p.texts = append(p.texts, b.Text)
		}
		if b.CacheControl != nil && string(b.CacheControl) != "null" {
			p.cacheUpTo = len(p.texts)
		}
	}
}

var anthropicMessages = dialect{
	name:  "messages",
	match: has("messages"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			Version   string           `json:"anthropic_version"`
			MaxTokens *int             `json:"max_tokens"`
			System    anthropicContent `json:"system"`
			Messages  []struct {
				Role    string           `json:"role"`
				Content anthropicContent `json:"content"`
			} `json:"messages"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		if req.Version == "" {
			return prompt{}, validation("Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again.")
		}
		if req.MaxTokens == nil {
			return prompt{}, validation("Malformed input request: #: required key [max_tokens] not found, please reformat your input and try again.")
		}
		if len(req.Messages) == 0 || req.Messages[0].Role != "user" {
			return prompt{}, validation("messages: the first message must use the \"user\" role")
		}
		p := prompt{maxTokens: *req.MaxTokens}
		req.System.addTo(&p)
		for _, m := range req.Messages {
			m.Content.addTo(&p)
		}
		return nonEmpty(p)
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{
			"id":            "msg_bdrk_" + a.id,
			"type":          "message",
			"role":          "assistant",
			"model":         m.short(),
			"content":       []any{map[string]any{"type": "text", "text": a.text}},
			"stop_reason":   stopReason(a, "end_turn", "max_tokens"),
			"stop_sequence": nil,
			"usage":         anthropicUsage(a.usage, a.usage.output),
		}
	},
	stream: func(m *model, p prompt, a answer) []map[string]any {
		// Like Anthropic, message_start reports output_tokens 1 and
		// message_delta the final count: a client must not add them up.
		out := []map[string]any{
			{"type": "message_start", "message": map[string]any{
				"id": "msg_bdrk_" + a.id, "type": "message", "role": "assistant", "model": m.short(),
				"content": []any{}, "stop_reason": nil, "stop_sequence": nil,
				"usage": anthropicUsage(a.usage, 1),
			}},
			{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}},
		}
		out = append(out, chunkEach(a, func(piece string, _ int, _ bool) map[string]any {
			return map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": piece}}
		})...)
		return append(out,
			map[string]any{"type": "content_block_stop", "index": 0},
			map[string]any{"type": "message_delta",
				"delta": map[string]any{"stop_reason": stopReason(a, "end_turn", "max_tokens"), "stop_sequence": nil},
				"usage": map[string]any{"output_tokens": a.usage.output}},
			map[string]any{"type": "message_stop"},
		)
	},
}

func anthropicUsage(u usage, output int) map[string]any {
	return map[string]any{
		"input_tokens":                u.input,
		"output_tokens":               output,
		"cache_creation_input_tokens": u.cacheWrite,
		"cache_read_input_tokens":     u.cacheRead,
	}
}

var anthropicCompletion = dialect{
	name:  "prompt",
	match: has("prompt"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			Prompt            string `json:"prompt"`
			MaxTokensToSample *int   `json:"max_tokens_to_sample"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		if req.MaxTokensToSample == nil {
			return prompt{}, validation("Malformed input request: #: required key [max_tokens_to_sample] not found, please reformat your input and try again.")
		}
		if !strings.Contains(req.Prompt, "\n\nHuman:") || !strings.HasSuffix(strings.TrimRight(req.Prompt, " "), "\n\nAssistant:") {
			return prompt{}, validation("Invalid prompt: prompt must start with \"\\n\\nHuman:\" turn after an optional system prompt and end with \"\\n\\nAssistant:\"")
		}
		return nonEmpty(prompt{texts: []string{req.Prompt}, maxTokens: *req.MaxTokensToSample})
	},
	encode: func(m *model, p prompt, a answer) any {
		stop := any("\n\nHuman:")
		if a.truncated {
			stop = nil
		}
		return map[string]any{
			"type":        "completion",
			"id":          "compl_" + a.id,
			"completion":  " " + a.text,
			"stop_reason": stopReason(a, "stop_sequence", "max_tokens"),
			"stop":        stop,
			"model":       m.short(),
		}
	},
	stream: func(m *model, p prompt, a answer) []map[string]any {
		return chunkEach(a, func(piece string, _ int, last bool) map[string]any {
			c := map[string]any{"type": "completion", "completion": piece, "stop_reason": nil, "stop": nil}
			if last {
				c["stop_reason"] = stopReason(a, "stop_sequence", "max_tokens")
			}
			return c
		})
	},
}

// ---- AI21: Jamba chat and Jurassic-2 completions ----

type roleContent struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func chatPrompt(messages []roleContent, maxTokens int) (prompt, error) {
	if len(messages) == 0 {
		return prompt{}, validation("Malformed input request: messages must contain at least one message, please reformat your input and try again.")
	}
	p := prompt{maxTokens: maxTokens}
	for _, m := range messages {
		p.texts = append(p.texts, m.Content)
	}
	return nonEmpty(p)
}

func openAIUsage(u usage) map[string]any {
	return map[string]any{"prompt_tokens": u.input, "completion_tokens": u.output, "total_tokens": u.total()}
}

// decodeChatMessages reads the OpenAI-style chat body AI21 Jamba and Mistral
// accept: {"messages": [...], "max_tokens": N}.
func decodeChatMessages(body []byte) (prompt, error) {
	var req struct {
		Messages  []roleContent `json:"messages"`
		MaxTokens int           `json:"max_tokens"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return prompt{}, err
	}
	return chatPrompt(req.Messages, req.MaxTokens)
}

var jambaChat = dialect{
	name:   "messages",
	match:  has("messages"),
	decode: decodeChatMessages,
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{
			"id":    "chatcmpl-" + a.id,
			"model": m.short(),
			"choices": []any{map[string]any{
				"index":         0,
				"message":       map[string]any{"role": "assistant", "content": a.text, "tool_calls": nil},
				"finish_reason": stopReason(a, "stop", "length"),
			}},
			"usage": openAIUsage(a.usage),
		}
	},
	stream: func(m *model, p prompt, a answer) []map[string]any {
		return chunkEach(a, func(piece string, _ int, last bool) map[string]any {
			choice := map[string]any{"index": 0, "delta": map[string]any{"content": piece}, "finish_reason": nil}
			c := map[string]any{"id": "chatcmpl-" + a.id, "choices": []any{choice}, "usage": nil}
			if last {
				choice["finish_reason"] = stopReason(a, "stop", "length")
				c["usage"] = openAIUsage(a.usage)
			}
			return c
		})
	},
}

// j2Tokens lists words the way Jurassic-2 lists its tokens, so a client can
// count them.
func j2Tokens(text string) []any {
	var out []any
	pos := 0
	for _, w := range strings.Fields(text) {
		start := strings.Index(text[pos:], w) + pos
		pos = start + len(w)
		out = append(out, map[string]any{
			"generatedToken": map[string]any{"token": "▁" + w, "logprob": -0.5, "raw_logprob": -0.5},
			"topTokens":      nil,
			"textRange":      map[string]any{"start": start, "end": pos},
		})
	}
	return out
}

var j2Completion = dialect{
	name:  "prompt",
	match: has("prompt"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			Prompt    string `json:"prompt"`
			MaxTokens int    `json:"maxTokens"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		return nonEmpty(prompt{texts: []string{req.Prompt}, maxTokens: req.MaxTokens})
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{
			"id":     int64(seedOf(a.id) % 100000),
			"prompt": map[string]any{"text": p.texts[0], "tokens": j2Tokens(p.texts[0])},
			"completions": []any{map[string]any{
				"data":         map[string]any{"text": a.text, "tokens": j2Tokens(a.text)},
				"finishReason": map[string]any{"reason": stopReason(a, "endoftext", "length")},
			}},
		}
	},
}

// ---- Cohere Command: generate and chat (Command R) ----

var cohereGenerate = dialect{
	name:  "prompt",
	match: has("prompt"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			Prompt    string `json:"prompt"`
			MaxTokens int    `json:"max_tokens"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		return nonEmpty(prompt{texts: []string{req.Prompt}, maxTokens: req.MaxTokens})
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{
			"id":     uuidFromSeed(a.id, "response"),
			"prompt": p.texts[0],
			"generations": []any{map[string]any{
				"id":            uuidFromSeed(a.id, "generation"),
				"text":          a.text,
				"finish_reason": stopReason(a, "COMPLETE", "MAX_TOKENS"),
			}},
		}
	},
	stream: func(m *model, p prompt, a answer) []map[string]any {
		return chunkEach(a, func(piece string, _ int, last bool) map[string]any {
			c := map[string]any{"text": piece, "is_finished": false, "index": 0}
			if last {
				c["is_finished"] = true
				c["finish_reason"] = stopReason(a, "COMPLETE", "MAX_TOKENS")
			}
			return c
		})
	},
}

var cohereChat = dialect{
	name:  "message",
	match: has("message"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			Message     string `json:"message"`
			Preamble    string `json:"preamble"`
			ChatHistory []struct {
				Role    string `json:"role"`
				Message string `json:"message"`
			} `json:"chat_history"`
			MaxTokens int `json:"max_tokens"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		p := prompt{maxTokens: req.MaxTokens}
		if req.Preamble != "" {
			p.texts = append(p.texts, req.Preamble)
		}
		for _, h := range req.ChatHistory {
			p.texts = append(p.texts, h.Message)
		}
		p.texts = append(p.texts, req.Message)
		return nonEmpty(p)
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{
			"response_id":   uuidFromSeed(a.id, "response"),
			"generation_id": uuidFromSeed(a.id, "generation"),
			"text":          a.text,
			"finish_reason": stopReason(a, "COMPLETE", "MAX_TOKENS"),
			"chat_history": []any{
				map[string]any{"role": "USER", "message": p.texts[len(p.texts)-1]},
				map[string]any{"role": "CHATBOT", "message": a.text},
			},
		}
	},
	stream: func(m *model, p prompt, a answer) []map[string]any {
		out := chunkEach(a, func(piece string, _ int, _ bool) map[string]any {
			return map[string]any{"event_type": "text-generation", "text": piece, "is_finished": false}
		})
		return append(out, map[string]any{
			"event_type": "stream-end", "is_finished": true,
			"finish_reason": stopReason(a, "COMPLETE", "MAX_TOKENS"),
			"response": map[string]any{
				"response_id": uuidFromSeed(a.id, "response"), "generation_id": uuidFromSeed(a.id, "generation"),
				"text": a.text, "finish_reason": stopReason(a, "COMPLETE", "MAX_TOKENS"),
			},
		})
	},
}

// ---- Meta Llama ----

var llamaGenerate = dialect{
	name:  "prompt",
	match: has("prompt"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			Prompt    string `json:"prompt"`
			MaxGenLen int    `json:"max_gen_len"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		return nonEmpty(prompt{texts: []string{req.Prompt}, maxTokens: req.MaxGenLen})
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{
			"generation":             a.text,
			"prompt_token_count":     a.usage.input,
			"generation_token_count": a.usage.output,
			"stop_reason":            stopReason(a, "stop", "length"),
		}
	},
	stream: func(m *model, p prompt, a answer) []map[string]any {
		first := true
		return chunkEach(a, func(piece string, words int, last bool) map[string]any {
			c := map[string]any{"generation": piece, "prompt_token_count": nil, "generation_token_count": words, "stop_reason": nil}
			if first {
				c["prompt_token_count"], first = a.usage.input, false
			}
			if last {
				c["stop_reason"] = stopReason(a, "stop", "length")
			}
			return c
		})
	},
}

// ---- Mistral: text completion and chat ----

var mistralCompletion = dialect{
	name:  "prompt",
	match: has("prompt"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			Prompt    string `json:"prompt"`
			MaxTokens int    `json:"max_tokens"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		return nonEmpty(prompt{texts: []string{req.Prompt}, maxTokens: req.MaxTokens})
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{"outputs": []any{map[string]any{"text": a.text, "stop_reason": stopReason(a, "stop", "length")}}}
	},
	stream: func(m *model, p prompt, a answer) []map[string]any {
		return chunkEach(a, func(piece string, _ int, last bool) map[string]any {
			out := map[string]any{"text": piece, "stop_reason": nil}
			if last {
				out["stop_reason"] = stopReason(a, "stop", "length")
			}
			return map[string]any{"outputs": []any{out}}
		})
	},
}

var mistralChat = dialect{
	name:   "messages",
	match:  has("messages"),
	decode: decodeChatMessages,
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{
			"id":     "cmpl-" + a.id,
			"object": "chat.completion",
			"model":  m.short(),
			"choices": []any{map[string]any{
				"index":       0,
				"message":     map[string]any{"role": "assistant", "content": a.text},
				"stop_reason": stopReason(a, "stop", "length"),
			}},
			"usage": openAIUsage(a.usage),
		}
	},
	stream: func(m *model, p prompt, a answer) []map[string]any {
		return chunkEach(a, func(piece string, _ int, last bool) map[string]any {
			choice := map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": piece}, "stop_reason": nil}
			if last {
				choice["stop_reason"] = stopReason(a, "stop", "length")
			}
			return map[string]any{"choices": []any{choice}}
		})
	},
}

// ---- Embeddings: Titan and Cohere ----

var titanEmbed = dialect{
	name:  "inputText",
	match: has("inputText"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			InputText  string `json:"inputText"`
			Dimensions int    `json:"dimensions"`
			Normalize  *bool  `json:"normalize"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		p := prompt{texts: []string{req.InputText}, inputs: []string{req.InputText}, dims: req.Dimensions, normalize: true}
		if req.Normalize != nil {
			p.normalize = *req.Normalize
		}
		switch p.dims {
		case 0:
		case 256, 512, 1024:
		default:
			return prompt{}, validation("Malformed input request: #/dimensions: %d is not a valid enum value, please reformat your input and try again.", p.dims)
		}
		return nonEmpty(p)
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{"embedding": a.embeddings[0], "inputTextTokenCount": a.usage.input}
	},
}

var cohereEmbed = dialect{
	name:  "texts",
	match: has("texts"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			Texts     []string `json:"texts"`
			InputType string   `json:"input_type"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		if req.InputType == "" {
			return prompt{}, validation("Malformed input request: #: required key [input_type] not found, please reformat your input and try again.")
		}
		if len(req.Texts) == 0 || len(req.Texts) > 96 {
			return prompt{}, validation("Malformed input request: #/texts: expected between 1 and 96 texts, please reformat your input and try again.")
		}
		return nonEmpty(prompt{texts: req.Texts, inputs: req.Texts, dims: 1024, normalize: true})
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{
			"id":            uuidFromSeed(a.id, "embed"),
			"embeddings":    a.embeddings,
			"response_type": "embeddings_floats",
			"texts":         p.inputs,
		}
	},
}

// ---- Images: Titan Image Generator and Stability ----

var titanImage = dialect{
	name:  "taskType",
	match: has("taskType"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			TaskType string `json:"taskType"`
			Params   struct {
				Text string `json:"text"`
			} `json:"textToImageParams"`
			Config struct {
				NumberOfImages *int   `json:"numberOfImages"`
				Height         *int   `json:"height"`
				Width          *int   `json:"width"`
				Quality        string `json:"quality"`
				Seed           *int64 `json:"seed"`
			} `json:"imageGenerationConfig"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		if req.TaskType != "TEXT_IMAGE" {
			return prompt{}, validation("Malformed input request: taskType %q is not supported by this server, please use TEXT_IMAGE.", req.TaskType)
		}
		p := prompt{texts: []string{req.Params.Text}, images: 1, width: 1024, height: 1024, quality: "standard", seed: 42}
		setIf(&p.images, req.Config.NumberOfImages)
		setIf(&p.height, req.Config.Height)
		setIf(&p.width, req.Config.Width)
		if req.Config.Quality != "" {
			p.quality = req.Config.Quality
		}
		if req.Config.Seed != nil {
			p.seed = *req.Config.Seed
		}
		if p.quality != "standard" && p.quality != "premium" {
			return prompt{}, validation("Malformed input request: #/imageGenerationConfig/quality: %s is not a valid enum value, please reformat your input and try again.", p.quality)
		}
		if p.images < 1 || p.images > 5 {
			return prompt{}, validation("Malformed input request: #/imageGenerationConfig/numberOfImages: %d is not between 1 and 5, please reformat your input and try again.", p.images)
		}
		return imageSize(p)
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{"images": a.images, "error": nil}
	},
}

func setIf(dst *int, src *int) {
	if src != nil {
		*dst = *src
	}
}

func imageSize(p prompt) (prompt, error) {
	if p.width < 256 || p.width > 2048 || p.height < 256 || p.height > 2048 {
		return prompt{}, validation("Malformed input request: image size %dx%d is outside 256..2048 pixels per side, please reformat your input and try again.", p.width, p.height)
	}
	return nonEmpty(p)
}

var stabilitySDXL = dialect{
	name:  "text_prompts",
	match: has("text_prompts"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			TextPrompts []struct {
				Text string `json:"text"`
			} `json:"text_prompts"`
			Height  *int   `json:"height"`
			Width   *int   `json:"width"`
			Steps   *int   `json:"steps"`
			Samples *int   `json:"samples"`
			Seed    *int64 `json:"seed"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		p := prompt{images: 1, width: 1024, height: 1024, steps: 30, quality: "standard"}
		for _, t := range req.TextPrompts {
			p.texts = append(p.texts, t.Text)
		}
		setIf(&p.height, req.Height)
		setIf(&p.width, req.Width)
		setIf(&p.steps, req.Steps)
		setIf(&p.images, req.Samples)
		if req.Seed != nil {
			p.seed = *req.Seed
		}
		if p.steps < 10 || p.steps > 50 {
			return prompt{}, validation("Malformed input request: #/steps: %d is not between 10 and 50, please reformat your input and try again.", p.steps)
		}
		if p.images != 1 {
			return prompt{}, validation("Malformed input request: #/samples: only 1 sample per request is supported, please reformat your input and try again.")
		}
		return imageSize(p)
	},
	encode: func(m *model, p prompt, a answer) any {
		var arts []any
		for i, img := range a.images {
			arts = append(arts, map[string]any{"seed": a.seeds[i], "base64": img, "finishReason": "SUCCESS"})
		}
		return map[string]any{"result": "success", "artifacts": arts}
	},
}

// aspectSizes are the pixel sizes of the Stable Image aspect ratios.
var aspectSizes = map[string][2]int{
	"1:1": {1024, 1024}, "16:9": {1344, 768}, "9:16": {768, 1344}, "21:9": {1536, 640}, "9:21": {640, 1536},
	"2:3": {832, 1216}, "3:2": {1216, 832}, "4:5": {896, 1088}, "5:4": {1088, 896},
}

var stabilityImage = dialect{
	name:  "prompt",
	match: has("prompt"),
	decode: func(body []byte) (prompt, error) {
		var req struct {
			Prompt      string `json:"prompt"`
			AspectRatio string `json:"aspect_ratio"`
			Seed        int64  `json:"seed"`
		}
		if err := decodeJSON(body, &req); err != nil {
			return prompt{}, err
		}
		if req.AspectRatio == "" {
			req.AspectRatio = "1:1"
		}
		size, ok := aspectSizes[req.AspectRatio]
		if !ok {
			return prompt{}, validation("Malformed input request: #/aspect_ratio: %s is not a valid enum value, please reformat your input and try again.", req.AspectRatio)
		}
		return imageSize(prompt{texts: []string{req.Prompt}, images: 1, width: size[0], height: size[1], quality: "standard", seed: req.Seed})
	},
	encode: func(m *model, p prompt, a answer) any {
		return map[string]any{"seeds": a.seeds, "finish_reasons": []any{nil}, "images": a.images}
	},
}
