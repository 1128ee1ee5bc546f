package bedrocklocal

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
	"sync"
)

// countTokens is the server's token rule: the number of whitespace-separated
// words. It is deliberately not bytes/4, so a client that estimates tokens
// from text length instead of reading what the server reports is caught.
func countTokens(texts ...string) int {
	n := 0
	for _, t := range texts {
		n += len(strings.Fields(t))
	}
	return n
}

// prompt is a request reduced to what the server's rules need; every family's
// request shape decodes into it.
type prompt struct {
	texts     []string // all prompt text in order (system first); input tokens are their words
	cacheUpTo int      // texts[:cacheUpTo] are the cacheable prefix; 0: no cache point
	maxTokens int      // 0: the family's default

	inputs    []string // embeddings: one vector per input
	dims      int
	normalize bool

	images  int // images: count, size, steps, quality, seed
	width   int
	height  int
	steps   int
	quality string
	seed    int64
}

// usage is what the server reports for one call.
type usage struct {
	input      int // uncached prompt tokens
	output     int
	cacheRead  int
	cacheWrite int
	caching    bool // the request had a cache point the model honours
}

func (u usage) total() int { return u.input + u.output + u.cacheRead + u.cacheWrite }

// answer is the generated result of one call.
type answer struct {
	id        string // deterministic id derived from the request
	words     []string
	text      string
	truncated bool // stopped by the max-tokens limit
	usage     usage

	embeddings [][]float64
	images     []string // base64 PNGs
	seeds      []int64
}

// vocabulary is what answers are made of.
var vocabulary = strings.Fields(`the a local model answer metered call token usage team cost
center bill stream window event request response region account quota budget price
invoice ledger record audit trail replay compact daily report finance chargeback rate
limit cache prompt reply context value result summary detail note signal measure count
total share unit batch store shard partition query table column row sample check`)

// seedOf hashes the parts into a stable 64-bit seed.
func seedOf(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// splitmix64 is a small deterministic generator.
type splitmix64 uint64

func (s *splitmix64) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// generateText writes the deterministic answer for a text prompt: 12 to 40
// words chosen by a hash of the model and the prompt, cut at maxTokens.
func generateText(baseModel string, p prompt, maxTokens int) answer {
	seed := seedOf(append([]string{baseModel}, p.texts...)...)
	rng := splitmix64(seed)
	n := 12 + int(seed%29)
	truncated := false
	if maxTokens > 0 && maxTokens < n {
		n, truncated = maxTokens, true
	}
	words := make([]string, n)
	for i := range words {
		words[i] = vocabulary[rng.next()%uint64(len(vocabulary))]
	}
	if n > 0 {
		words[0] = strings.ToUpper(words[0][:1]) + words[0][1:]
		if !truncated {
			words[n-1] += "."
		}
	}
	return answer{
		id:        fmt.Sprintf("%016x", seed),
		words:     words,
		text:      strings.Join(words, " "),
		truncated: truncated,
	}
}

// pieces splits an answer into stream deltas of a few words each; their
// concatenation is the answer's text.
func pieces(words []string) []string {
	const per = 4
	var out []string
	for i := 0; i < len(words); i += per {
		j := min(i+per, len(words))
		s := strings.Join(words[i:j], " ")
		if i > 0 {
			s = " " + s
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}

// embed returns a deterministic unit-length (when normalize) vector for text.
func embed(baseModel, text string, dims int, normalize bool) []float64 {
	rng := splitmix64(seedOf(baseModel, text))
	v := make([]float64, dims)
	var norm float64
	for i := range v {
		x := float64(rng.next()>>11)/float64(1<<53)*2 - 1
		v[i] = x
		norm += x * x
	}
	norm = math.Sqrt(norm)
	for i := range v {
		if normalize && norm > 0 {
			v[i] /= norm
		}
		v[i] = math.Round(v[i]*1e6) / 1e6
	}
	return v
}

// pngCache keeps recently drawn images: image requests repeat sizes, and
// encoding a megapixel PNG costs more than the rest of a call.
type pngCache struct {
	mu sync.Mutex
	m  map[pngKey]string
}

type pngKey struct {
	w, h int
	c    uint32
}

// image returns a base64 PNG of w x h pixels in a colour chosen by seed.
func (pc *pngCache) image(w, h int, seed uint64) (string, error) {
	c := uint32(seed & 0xffffff)
	key := pngKey{w, h, c}
	pc.mu.Lock()
	if s, ok := pc.m[key]; ok {
		pc.mu.Unlock()
		return s, nil
	}
	pc.mu.Unlock()

	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	col := color.NRGBA{R: uint8(c >> 16), G: uint8(c >> 8), B: uint8(c), A: 255}
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = col.R, col.G, col.B, col.A
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return "", fmt.Errorf("encoding image: %w", err)
	}
	s := base64.StdEncoding.EncodeToString(buf.Bytes())

	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.m == nil || len(pc.m) >= 32 {
		pc.m = make(map[pngKey]string)
	}
	pc.m[key] = s
	return s, nil
}
