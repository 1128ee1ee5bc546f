package bedrocklocal

import (
	"encoding/json"
	"slices"
	"strings"
)

// Modality says what a model produces.
type Modality string

const (
	Text      Modality = "TEXT"
	Embedding Modality = "EMBEDDING"
	Image     Modality = "IMAGE"
)

// family is one provider's model line: the base model ids it serves and the
// request/response dialects its InvokeModel bodies speak. The table below is
// the only place that knows about providers.
type family struct {
	name      string
	modality  Modality
	prefixes  []string // base model id prefixes, for Config.ExtraModels
	models    []string // known base model ids
	dialects  []dialect
	caching   bool // honours cache points (prompt caching)
	maxTokens int  // default output limit when the request sets none
}

// dialect is one InvokeModel request/response shape. match picks it by the
// request body's top-level keys; stream is nil when the shape cannot stream.
type dialect struct {
	name   string
	match  func(f fields) bool
	decode func(body []byte) (prompt, error)
	encode func(m *model, p prompt, a answer) any
	stream func(m *model, p prompt, a answer) []map[string]any
}

// model is a resolved base model.
type model struct {
	id     string
	family *family
}

// short is the model name providers put in their own response bodies.
func (m *model) short() string {
	s := m.id
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.LastIndex(s, "-v"); i > 0 {
		s = s[:i]
	}
	return s
}

type fields map[string]json.RawMessage

func (f fields) has(keys ...string) bool {
	for _, k := range keys {
		if _, ok := f[k]; !ok {
			return false
		}
	}
	return true
}

func has(keys ...string) func(fields) bool {
	return func(f fields) bool { return f.has(keys...) }
}

var families = []*family{
	{
		name: "amazon-titan-text", modality: Text, maxTokens: 512,
		prefixes: []string{"amazon.titan-text-", "amazon.titan-tg1-"},
		models:   []string{"amazon.titan-text-express-v1", "amazon.titan-text-lite-v1", "amazon.titan-text-premier-v1:0", "amazon.titan-tg1-large"},
		dialects: []dialect{titanText},
	},
	{
		name: "amazon-nova", modality: Text, maxTokens: 512, caching: true,
		prefixes: []string{"amazon.nova-"},
		models:   []string{"amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0", "amazon.nova-premier-v1:0"},
		dialects: []dialect{novaMessages},
	},
	{
		name: "anthropic-claude", modality: Text, maxTokens: 4096, caching: true,
		prefixes: []string{"anthropic.claude-"},
		models: []string{
			"anthropic.claude-v2", "anthropic.claude-v2:1", "anthropic.claude-instant-v1",
			"anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-sonnet-20240229-v1:0",
			"anthropic.claude-3-opus-20240229-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0",
			"anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic.claude-3-5-haiku-20241022-v1:0",
			"anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0",
			"anthropic.claude-opus-4-20250514-v1:0", "anthropic.claude-opus-4-1-20250805-v1:0",
			"anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-haiku-4-5-20251001-v1:0",
		},
		dialects: []dialect{anthropicMessages, anthropicCompletion},
	},
	{
		name: "ai21", modality: Text, maxTokens: 4096,
		prefixes: []string{"ai21."},
		models:   []string{"ai21.jamba-1-5-mini-v1:0", "ai21.jamba-1-5-large-v1:0", "ai21.jamba-instruct-v1:0", "ai21.j2-mid-v1", "ai21.j2-ultra-v1"},
		dialects: []dialect{jambaChat, j2Completion},
	},
	{
		name: "cohere-command", modality: Text, maxTokens: 20,
		prefixes: []string{"cohere.command-"},
		models:   []string{"cohere.command-text-v14", "cohere.command-light-text-v14", "cohere.command-r-v1:0", "cohere.command-r-plus-v1:0"},
		dialects: []dialect{cohereGenerate, cohereChat},
	},
	{
		name: "meta-llama", modality: Text, maxTokens: 512,
		prefixes: []string{"meta.llama"},
		models: []string{
			"meta.llama2-13b-chat-v1", "meta.llama2-70b-chat-v1", "meta.llama3-8b-instruct-v1:0",
			"meta.llama3-70b-instruct-v1:0", "meta.llama3-1-8b-instruct-v1:0", "meta.llama3-1-70b-instruct-v1:0",
			"meta.llama3-1-405b-instruct-v1:0", "meta.llama3-2-1b-instruct-v1:0", "meta.llama3-2-3b-instruct-v1:0",
			"meta.llama3-2-11b-instruct-v1:0", "meta.llama3-2-90b-instruct-v1:0", "meta.llama3-3-70b-instruct-v1:0",
			"meta.llama4-scout-17b-instruct-v1:0", "meta.llama4-maverick-17b-instruct-v1:0",
		},
		dialects: []dialect{llamaGenerate},
	},
	{
		name: "mistral", modality: Text, maxTokens: 512,
		prefixes: []string{"mistral."},
		models: []string{
			"mistral.mistral-7b-instruct-v0:2", "mistral.mixtral-8x7b-instruct-v0:1", "mistral.mistral-small-2402-v1:0",
			"mistral.mistral-large-2402-v1:0", "mistral.mistral-large-2407-v1:0",
		},
		dialects: []dialect{mistralCompletion, mistralChat},
	},
	{
		name: "amazon-titan-embed", modality: Embedding,
		prefixes: []string{"amazon.titan-embed-"},
		models:   []string{"amazon.titan-embed-text-v1", "amazon.titan-embed-text-v2:0", "amazon.titan-embed-g1-text-02"},
		dialects: []dialect{titanEmbed},
	},
	{
		name: "cohere-embed", modality: Embedding,
		prefixes: []string{"cohere.embed-"},
		models:   []string{"cohere.embed-english-v3", "cohere.embed-multilingual-v3"},
		dialects: []dialect{cohereEmbed},
	},
	{
		name: "amazon-titan-image", modality: Image,
		prefixes: []string{"amazon.titan-image-generator-"},
		models:   []string{"amazon.titan-image-generator-v1", "amazon.titan-image-generator-v2:0"},
		dialects: []dialect{titanImage},
	},
	{
		name: "stability", modality: Image,
		prefixes: []string{"stability."},
		models: []string{
			"stability.stable-diffusion-xl-v1", "stability.sd3-large-v1:0", "stability.sd3-5-large-v1:0",
			"stability.stable-image-core-v1:0", "stability.stable-image-core-v1:1", "stability.stable-image-ultra-v1:0",
			"stability.stable-image-ultra-v1:1",
		},
		dialects: []dialect{stabilitySDXL, stabilityImage},
	},
}

// Model is one model the server answers for.
type Model struct {
	ID       string   // base foundation model id, e.g. anthropic.claude-3-haiku-20240307-v1:0
	Family   string   // the server's family name, e.g. anthropic-claude
	Modality Modality // TEXT, EMBEDDING or IMAGE
}

// Models lists the base model ids a server built with default settings
// answers for, in a stable order. Inference profiles (us.…, eu.…, global.…)
// and ARNs of these ids are answered too.
func Models() []Model {
	var out []Model
	for _, f := range families {
		for _, id := range f.models {
			out = append(out, Model{ID: id, Family: f.name, Modality: f.modality})
		}
	}
	return out
}

// familyByPrefix finds the family whose prefix the base model id starts with.
func familyByPrefix(id string) *family {
	for _, f := range families {
		for _, p := range f.prefixes {
			if strings.HasPrefix(id, p) {
				return f
			}
		}
	}
	return nil
}

// catalog builds the base id -> model map, with extra ids placed in their
// family by prefix.
func catalog(extra []string) (map[string]*model, []string) {
	m := make(map[string]*model)
	for _, f := range families {
		for _, id := range f.models {
			m[id] = &model{id: id, family: f}
		}
	}
	var unplaced []string
	for _, id := range extra {
		f := familyByPrefix(id)
		if f == nil {
			unplaced = append(unplaced, id)
			continue
		}
		m[id] = &model{id: id, family: f}
	}
	return m, unplaced
}

// geoRegions are the regions a cross-region inference profile routes to; the
// first segment of the profile id names the geography.
var geoRegions = map[string][]string{
	"us":     {"us-east-1", "us-east-2", "us-west-2"},
	"us-gov": {"us-gov-west-1", "us-gov-east-1"},
	"eu":     {"eu-central-1", "eu-west-1", "eu-west-3", "eu-north-1"},
	"apac":   {"ap-northeast-1", "ap-southeast-1", "ap-southeast-2", "ap-south-1"},
	"jp":     {"ap-northeast-1", "ap-northeast-3"},
	"au":     {"ap-southeast-2", "ap-southeast-4"},
	"ca":     {"ca-central-1", "ca-west-1"},
	"global": {"us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1"},
}

// splitProfile returns the geography and base id of a cross-region inference
// profile id ("us.anthropic.claude-…"), or "" and the id unchanged.
func splitProfile(id string) (geo, base string) {
	if i := strings.IndexByte(id, '.'); i > 0 {
		if _, ok := geoRegions[id[:i]]; ok {
			return id[:i], id[i+1:]
		}
	}
	return "", id
}

// pickDialect chooses the dialect whose keys the body has.
func (f *family) pickDialect(body []byte) (*dialect, error) {
	var fs fields
	if err := json.Unmarshal(body, &fs); err != nil || fs == nil {
		return nil, validation("Malformed input request: the body is not a JSON object, please reformat your input and try again.")
	}
	for i := range f.dialects {
		if f.dialects[i].match(fs) {
			return &f.dialects[i], nil
		}
	}
	var want []string
	for _, d := range f.dialects {
		want = append(want, d.name)
	}
	slices.Sort(want)
	return nil, validation("Malformed input request: the body matches none of this model's request formats (%s), please reformat your input and try again.", strings.Join(want, ", "))
}
