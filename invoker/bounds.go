package invoker

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meter-dev/meter/invoker/limits"
	"github.com/meter-dev/meter/schemas"
)

// A call reserves, against its team's daily token quota and monthly budget,
// the most it can use, computed from what the caller sent, never from what
// earlier calls used: the caller chooses how large the next call is.
//
//   - input tokens: at most one per byte of the body Bedrock receives (every
//     tokenizer Bedrock's models use spends at least one byte of text per
//     token), plus promptOverheadTokens for the template a model wraps a
//     prompt in. An image (a Converse or Nova image block, a Claude image
//     content block) counts mediaBlockTokens instead of its base64 bytes:
//     models scale images down to a bounded number of tokens, and a small
//     compressed image can count more tokens than its bytes. A Converse
//     document block counts its bytes and mediaBlockTokens more. Cache read
//     and write tokens are input tokens too.
//   - output tokens: the request's own maximum (max_tokens, maxTokenCount,
//     max_gen_len, inferenceConfig.maxTokens, ... by family) times the
//     number of completions asked for, or the model's maximum output when the
//     request names none (modelMaxOutput; unknownMaxOutputTokens for a model
//     meter does not know).
//   - images: the number the request asks for, at the price of the
//     requested size and quality.
//
// The bound is priced at the price in force now, at the dearest way those
// input tokens could be billed (plain, cache write or cache read).
const (
	promptOverheadTokens   = 128
	mediaBlockTokens       = 4096
	unknownMaxOutputTokens = 131072
)

// familyBound is where a family's native InvokeModel body says how much it may
// produce.
type familyBound struct {
	maxParam   []string // path of the max-output-tokens parameter
	countParam []string // path of the number of completions or images, default 1
	maxOutput  int64    // the family's largest maximum output
}

// familyBounds is keyed by family name (families.go).
var familyBounds = map[string]familyBound{
	"amazon-titan-text":           {maxParam: []string{"textGenerationConfig", "maxTokenCount"}, maxOutput: 8192},
	"amazon-nova":                 {maxParam: []string{"inferenceConfig", "max_new_tokens"}, maxOutput: 10000},
	"anthropic-claude-completion": {maxParam: []string{"max_tokens_to_sample"}, maxOutput: 8192},
	"anthropic-claude-messages":   {maxParam: []string{"max_tokens"}, maxOutput: 131072},
	"ai21-jurassic":               {maxParam: []string{"maxTokens"}, countParam: []string{"numResults"}, maxOutput: 8191},
	"ai21-jamba":                  {maxParam: []string{"max_tokens"}, countParam: []string{"n"}, maxOutput: 4096},
	"cohere-command-r":            {maxParam: []string{"max_tokens"}, maxOutput: 4096},
	"cohere-command":              {maxParam: []string{"max_tokens"}, countParam: []string{"num_generations"}, maxOutput: 4096},
	"meta-llama":                  {maxParam: []string{"max_gen_len"}, maxOutput: 8192},
	"mistral":                     {maxParam: []string{"max_tokens"}, maxOutput: 8192},
	"amazon-titan-embed":          {},
	"cohere-embed":                {},
	"amazon-titan-image":          {countParam: []string{"imageGenerationConfig", "numberOfImages"}},
	"stability-sdxl":              {countParam: []string{"samples"}},
	"stability-image":             {},
}

// unknownMaxParams are where a model meter has no family for may name its
// maximum output: the names Bedrock's model families use.
var unknownMaxParams = [][]string{
	{"max_tokens"}, {"maxTokens"}, {"max_new_tokens"}, {"max_gen_len"}, {"max_tokens_to_sample"}, {"maxTokenCount"},
	{"inferenceConfig", "maxTokens"}, {"inferenceConfig", "max_new_tokens"}, {"textGenerationConfig", "maxTokenCount"},
}

// modelMaxOutput narrows a family's maximum output for models known to have
// a smaller one (base model id prefixes; the longest match wins).
var modelMaxOutput = map[string]int64{
	"anthropic.claude-3-haiku":    4096,
	"anthropic.claude-3-sonnet":   4096,
	"anthropic.claude-3-opus":     4096,
	"anthropic.claude-3-5-":       8192,
	"anthropic.claude-opus-4":     32768,
	"anthropic.claude-sonnet-4":   65536,
	"anthropic.claude-haiku-4":    65536,
	"amazon.titan-text-lite":      4096,
	"amazon.titan-text-premier":   3072,
	"meta.llama3-8b-instruct":     2048,
	"meta.llama3-70b-instruct":    2048,
	"mistral.mistral-7b-instruct": 8192,
}

// maxOutputOf is the most a model can produce when the request does not say.
func maxOutputOf(modelID string, fam *family) int64 {
	base := BaseModelID(modelID)
	best, bestLen := int64(0), 0
	for p, m := range modelMaxOutput {
		if strings.HasPrefix(base, p) && len(p) > bestLen {
			best, bestLen = m, len(p)
		}
	}
	switch {
	case best > 0:
		return best
	case fam == nil:
		return unknownMaxOutputTokens
	}
	if fb, ok := familyBounds[fam.name]; ok && fb.maxParam != nil {
		return fb.maxOutput
	}
	if fam.modality == ModalityText {
		return unknownMaxOutputTokens
	}
	return 0
}

// callBound is the most one call can use.
type callBound struct {
	inputTokens, outputTokens, images int64
}

func (b callBound) tokens() int64 { return b.inputTokens + b.outputTokens }

// boundOf computes the call's bound from the body Bedrock receives (c.body):
// a Converse body on the Converse routes, the model's native body on the
// InvokeModel ones.
func boundOf(c *call) callBound {
	b := callBound{inputTokens: int64(len(c.body)) + promptOverheadTokens}
	fam := familyOf(c.modelID)
	var native map[string]any
	dec := json.NewDecoder(strings.NewReader(string(c.body)))
	dec.UseNumber()
	if dec.Decode(&native) != nil {
		native = nil
	}
	imageBytes, images := imageData(native, 0)
	b.inputTokens += images*mediaBlockTokens - imageBytes
	if c.op == "Converse" || c.op == "ConverseStream" {
		b.outputTokens = maxOutputOf(c.modelID, fam)
		req, err := parseConverse(c.body)
		if err != nil {
			return b
		}
		if req.InferenceConfig != nil && req.InferenceConfig.MaxTokens != nil && *req.InferenceConfig.MaxTokens > 0 {
			b.outputTokens = int64(*req.InferenceConfig.MaxTokens)
		}
		for _, m := range req.Messages {
			for _, blk := range m.Content {
				if blk.Document != nil {
					b.inputTokens += mediaBlockTokens
				}
			}
		}
		return b
	}
	var fb familyBound
	if fam != nil {
		fb = familyBounds[fam.name]
	}
	count := int64(1)
	if n, ok := positive(lookup(native, fb.countParam)); ok {
		count = n
	}
	switch {
	case fam != nil && fam.modality == ModalityImage:
		b.images = count
	case fam != nil && fam.modality == ModalityEmbedding:
	default:
		out := maxOutputOf(c.modelID, fam)
		paths := [][]string{fb.maxParam}
		if fam == nil {
			paths = unknownMaxParams
		}
		for _, p := range paths {
			if n, ok := positive(lookup(native, p)); ok {
				out = n
				break
			}
		}
		b.outputTokens = satMul(out, count)
	}
	return b
}

// imageData finds the images of a request body: Converse's and Nova's
// {"image": {"source": {"bytes": B64}}} and Claude's {"type": "image",
// "source": {"data": B64}}. It returns their base64 characters and how many
// there are. Only blocks shaped as images count: Bedrock refuses anything else
// in them, so no text can pass as an image to reserve less.
func imageData(v any, depth int) (chars, n int64) {
	if depth > 64 {
		return 0, 0
	}
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			c, k := imageData(e, depth+1)
			chars, n = chars+c, n+k
		}
	case map[string]any:
		if img, ok := x["image"].(map[string]any); ok {
			if src, ok := img["source"].(map[string]any); ok {
				if data, ok := src["bytes"].(string); ok {
					return int64(len(data)), 1
				}
			}
		}
		if t, _ := x["type"].(string); t == "image" {
			if src, ok := x["source"].(map[string]any); ok {
				if data, ok := src["data"].(string); ok {
					return int64(len(data)), 1
				}
			}
		}
		for _, e := range x {
			c, k := imageData(e, depth+1)
			chars, n = chars+c, n+k
		}
	}
	return chars, n
}

// lookup follows path through nested JSON objects.
func lookup(m map[string]any, path []string) any {
	if len(path) == 0 || m == nil {
		return nil
	}
	var v any = m
	for _, k := range path {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[k]
	}
	return v
}

// positive reads a positive whole number from a JSON value, rounding up.
func positive(v any) (int64, bool) {
	var f float64
	switch x := v.(type) {
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, false
		}
	case float64:
		f = x
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	default:
		return 0, false
	}
	if math.IsNaN(f) || f <= 0 {
		return 0, false
	}
	if f >= math.MaxInt32*1024.0 {
		return math.MaxInt32 * 1024, true
	}
	return int64(math.Ceil(f)), true
}

func satMul(a, b int64) int64 {
	if a > 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}

// bound is the reservation of a call: its bound's tokens and, when the team
// has a budget, their price in force at now. It fails when the team has a
// budget and the call cannot be priced.
func (s *Server) bound(c *call, now time.Time) (limits.Usage, error) {
	q := c.team.Quotas
	if q.DailyTokens <= 0 && c.team.MonthlyBudgetUSD == nil {
		return limits.Usage{}, nil // nothing a bound counts against
	}
	b := boundOf(c)
	u := limits.Usage{Tokens: b.tokens()}
	if c.team.MonthlyBudgetUSD == nil {
		return u, nil
	}
	if s.cfg.Prices == nil {
		return u, errors.New("the invoker has no price book")
	}
	ev := s.event(c, schemas.StatusSuccess)
	ev.Timestamp = now.UTC()
	ev.OutputTokens = b.outputTokens
	if b.images > 0 && c.image != nil {
		ev.ImageCount, ev.ImageHeight, ev.ImageWidth, ev.ImageSteps, ev.ImageQuality = b.images, c.image.Height, c.image.Width, c.image.Steps, c.image.Quality
	}
	// The input tokens at each rate they could be billed at: plain input
	// must be priced; cache rates count when the model has them.
	cost := decimal.Zero
	for i, set := range []func(){
		func() { ev.InputTokens = b.inputTokens },
		func() { ev.CacheWriteInputTokens = b.inputTokens },
		func() { ev.CacheReadInputTokens = b.inputTokens },
	} {
		ev.InputTokens, ev.CacheReadInputTokens, ev.CacheWriteInputTokens = 0, 0, 0
		set()
		costs, err := s.cfg.Prices.Cost(ev)
		if err != nil {
			if i == 0 {
				return u, err
			}
			continue
		}
		cost = decimal.Max(cost, costs.Total())
	}
	u.Cost = cost
	return u, nil
}
