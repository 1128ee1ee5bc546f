package bedrocklocal

import (
	"net/http"
	"time"
)

// decodeConverse reads a Converse or ConverseStream request body.
func decodeConverse(body []byte) (prompt, error) {
	var req struct {
		Messages        []blockMessage `json:"messages"`
		System          []contentBlock `json:"system"`
		InferenceConfig struct {
			MaxTokens int `json:"maxTokens"`
		} `json:"inferenceConfig"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return prompt{}, err
	}
	p, err := blockPrompt(req.System, req.Messages)
	p.maxTokens = req.InferenceConfig.MaxTokens
	return p, err
}

func converseUsage(u usage) map[string]any {
	m := map[string]any{
		"inputTokens":  u.input,
		"outputTokens": u.output,
		"totalTokens":  u.total(),
	}
	if u.caching {
		m["cacheReadInputTokens"] = u.cacheRead
		m["cacheWriteInputTokens"] = u.cacheWrite
	}
	return m
}

func converseStop(a answer) string { return stopReason(a, "end_turn", "max_tokens") }

func converseResponse(a answer, latencyMs int64) map[string]any {
	return map[string]any{
		"output": map[string]any{"message": map[string]any{
			"role":    "assistant",
			"content": []any{map[string]any{"text": a.text}},
		}},
		"stopReason": converseStop(a),
		"usage":      converseUsage(a.usage),
		"metrics":    map[string]any{"latencyMs": latencyMs},
	}
}

// writeConverseStream sends messageStart, one contentBlockDelta per piece,
// contentBlockStop, messageStop and metadata (usage and metrics), as
// ConverseStream does.
func (s *Server) writeConverseStream(w http.ResponseWriter, r *http.Request, c *call, a answer, midStream bool) error {
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.WriteHeader(http.StatusOK)
	c.started = true
	c.firstByte = time.Since(c.start)
	ew := newEventWriter(w)
	if err := ew.event("messageStart", map[string]any{"role": "assistant"}); err != nil {
		return err
	}
	ps := pieces(a.words)
	for i, piece := range ps {
		if err := sleep(r.Context(), s.cfg.StreamInterval); err != nil {
			return err
		}
		if midStream && i == len(ps)/2 {
			return ew.exception("modelStreamErrorException", map[string]any{
				"message": errorMessage["ModelStreamErrorException"], "originalStatusCode": 500,
			})
		}
		if err := ew.event("contentBlockDelta", map[string]any{"contentBlockIndex": 0, "delta": map[string]any{"text": piece}}); err != nil {
			return err
		}
	}
	for _, ev := range []struct {
		typ     string
		payload map[string]any
	}{
		{"contentBlockStop", map[string]any{"contentBlockIndex": 0}},
		{"messageStop", map[string]any{"stopReason": converseStop(a)}},
		{"metadata", map[string]any{"usage": converseUsage(a.usage), "metrics": map[string]any{"latencyMs": c.elapsedMs()}}},
	} {
		if err := ew.event(ev.typ, ev.payload); err != nil {
			return err
		}
	}
	return nil
}
