package bedrocklocal

// Integration tests: each starts the server on 127.0.0.1 with httptest and
// calls it with the real aws-sdk-go-v2 clients (bedrockruntime, cloudtrail).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/meter-dev/meter/internal/awshttp"
)

const testAccessKey = "AKIDLOCALTEST0000001"

func start(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, hs.URL
}

func awsConfig() aws.Config {
	return aws.Config{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider(testAccessKey, "secret", ""),
		RetryMaxAttempts: 1,
	}
}

func runtimeClient(url string, optFns ...func(*bedrockruntime.Options)) *bedrockruntime.Client {
	return bedrockruntime.NewFromConfig(awsConfig(), append([]func(*bedrockruntime.Options){
		func(o *bedrockruntime.Options) {
			o.BaseEndpoint = aws.String(url)
			o.HTTPClient = awshttp.BufferedBody{Next: o.HTTPClient}
		},
	}, optFns...)...)
}

// withHeader adds a request header to every call of a client.
func withHeader(name, value string) func(*bedrockruntime.Options) {
	return bedrockruntime.WithAPIOptions(smithyhttp.AddHeaderValue(name, value))
}

// invoked is an InvokeModel answer with the headers the SDK does not surface.
type invoked struct {
	requestID string
	in, out   int
	header    http.Header
	body      map[string]any
}

func invoke(t *testing.T, c *bedrockruntime.Client, modelID, body string) invoked {
	t.Helper()
	out, err := c.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(modelID), Body: []byte(body), ContentType: aws.String("application/json"),
	})
	if err != nil {
		t.Fatalf("InvokeModel %s: %v", modelID, err)
	}
	raw := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response)
	reqID, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	inv := invoked{requestID: reqID, header: raw.Header}
	inv.in, err = strconv.Atoi(raw.Header.Get("X-Amzn-Bedrock-Input-Token-Count"))
	if err != nil {
		t.Fatalf("input token header: %v", err)
	}
	inv.out, err = strconv.Atoi(raw.Header.Get("X-Amzn-Bedrock-Output-Token-Count"))
	if err != nil {
		t.Fatalf("output token header: %v", err)
	}
	if err := json.Unmarshal(out.Body, &inv.body); err != nil {
		t.Fatalf("body: %v: %s", err, out.Body)
	}
	return inv
}

// dig walks a decoded JSON value by object keys and array indexes.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %q: not an object: %v", k, v)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("at [%d]: not an array that long: %v", k, v)
			}
			v = a[k]
		}
	}
	return v
}

func digInt(t *testing.T, v any, path ...any) int {
	t.Helper()
	f, ok := dig(t, v, path...).(float64)
	if !ok {
		t.Fatalf("%v: not a number", path)
	}
	return int(f)
}

func digWords(t *testing.T, v any, path ...any) int {
	t.Helper()
	s, ok := dig(t, v, path...).(string)
	if !ok {
		t.Fatalf("%v: not a string", path)
	}
	return len(strings.Fields(s))
}

func digLen(t *testing.T, v any, path ...any) int {
	t.Helper()
	a, ok := dig(t, v, path...).([]any)
	if !ok {
		t.Fatalf("%v: not an array", path)
	}
	return len(a)
}

func pngSize(t *testing.T, b64 any) (int, int) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(b64.(string))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return img.Bounds().Dx(), img.Bounds().Dy()
}

// familyCase is one family's InvokeModel request and what its answer must show.
type familyCase struct {
	name   string
	model  string
	body   string
	wantIn int                                  // words of the prompt text
	check  func(t *testing.T, inv invoked) bool // body agrees with the headers; true when text
}

var familyCases = []familyCase{
	{"titan text", "amazon.titan-text-express-v1",
		`{"inputText":"Explain the monthly invoice in two lines","textGenerationConfig":{"maxTokenCount":100,"temperature":0}}`, 7,
		func(t *testing.T, inv invoked) bool {
			eq(t, "inputTextTokenCount", digInt(t, inv.body, "inputTextTokenCount"), inv.in)
			eq(t, "results[0].tokenCount", digInt(t, inv.body, "results", 0, "tokenCount"), inv.out)
			eq(t, "words of outputText", digWords(t, inv.body, "results", 0, "outputText"), inv.out)
			return true
		}},
	{"claude messages via us. profile", "us.anthropic.claude-3-haiku-20240307-v1:0",
		`{"anthropic_version":"bedrock-2023-05-31","max_tokens":200,"system":"You are terse.","messages":[{"role":"user","content":"Summarise the chargeback for team alpha"}]}`, 9,
		func(t *testing.T, inv invoked) bool {
			eq(t, "usage.input_tokens", digInt(t, inv.body, "usage", "input_tokens"), inv.in)
			eq(t, "usage.output_tokens", digInt(t, inv.body, "usage", "output_tokens"), inv.out)
			eq(t, "words of content[0].text", digWords(t, inv.body, "content", 0, "text"), inv.out)
			eq(t, "stop_reason", dig(t, inv.body, "stop_reason"), any("end_turn"))
			return true
		}},
	{"claude text completion", "anthropic.claude-v2",
		`{"prompt":"\n\nHuman: Summarise the bill\n\nAssistant:","max_tokens_to_sample":300}`, 5,
		func(t *testing.T, inv invoked) bool {
			eq(t, "words of completion", digWords(t, inv.body, "completion"), inv.out)
			return true
		}},
	{"ai21 jamba chat", "ai21.jamba-1-5-mini-v1:0",
		`{"messages":[{"role":"user","content":"Which team spent most"}],"max_tokens":100}`, 4,
		func(t *testing.T, inv invoked) bool {
			eq(t, "usage.prompt_tokens", digInt(t, inv.body, "usage", "prompt_tokens"), inv.in)
			eq(t, "usage.completion_tokens", digInt(t, inv.body, "usage", "completion_tokens"), inv.out)
			eq(t, "words of message", digWords(t, inv.body, "choices", 0, "message", "content"), inv.out)
			return true
		}},
	{"ai21 j2 completion", "ai21.j2-mid-v1",
		`{"prompt":"Write a haiku about tokens","maxTokens":50}`, 5,
		func(t *testing.T, inv invoked) bool {
			eq(t, "prompt tokens listed", digLen(t, inv.body, "prompt", "tokens"), inv.in)
			eq(t, "completion tokens listed", digLen(t, inv.body, "completions", 0, "data", "tokens"), inv.out)
			return true
		}},
	{"cohere command", "cohere.command-text-v14",
		`{"prompt":"List three cost centers","max_tokens":100}`, 4,
		func(t *testing.T, inv invoked) bool {
			eq(t, "words of generation", digWords(t, inv.body, "generations", 0, "text"), inv.out)
			return true
		}},
	{"cohere command r chat", "cohere.command-r-v1:0",
		`{"message":"What is a quota","chat_history":[{"role":"USER","message":"Hi there"}],"preamble":"Be brief"}`, 8,
		func(t *testing.T, inv invoked) bool {
			eq(t, "words of text", digWords(t, inv.body, "text"), inv.out)
			if inv.out > 20 {
				t.Errorf("output %d words, over Cohere's default max_tokens 20", inv.out)
			}
			return true
		}},
	{"meta llama", "meta.llama3-8b-instruct-v1:0",
		`{"prompt":"<|begin_of_text|>Explain rate limits","max_gen_len":64}`, 3,
		func(t *testing.T, inv invoked) bool {
			eq(t, "prompt_token_count", digInt(t, inv.body, "prompt_token_count"), inv.in)
			eq(t, "generation_token_count", digInt(t, inv.body, "generation_token_count"), inv.out)
			eq(t, "words of generation", digWords(t, inv.body, "generation"), inv.out)
			return true
		}},
	{"mistral completion", "mistral.mistral-7b-instruct-v0:2",
		`{"prompt":"<s>[INST] Explain budgets [/INST]","max_tokens":64}`, 4,
		func(t *testing.T, inv invoked) bool {
			eq(t, "words of outputs[0].text", digWords(t, inv.body, "outputs", 0, "text"), inv.out)
			return true
		}},
	{"mistral chat", "mistral.mistral-large-2407-v1:0",
		`{"messages":[{"role":"user","content":"Explain budgets please"}],"max_tokens":64}`, 3,
		func(t *testing.T, inv invoked) bool {
			eq(t, "usage.prompt_tokens", digInt(t, inv.body, "usage", "prompt_tokens"), inv.in)
			eq(t, "usage.completion_tokens", digInt(t, inv.body, "usage", "completion_tokens"), inv.out)
			return true
		}},
	{"amazon nova", "amazon.nova-lite-v1:0",
		`{"schemaVersion":"messages-v1","messages":[{"role":"user","content":[{"text":"Describe the ledger"}]}],"inferenceConfig":{"max_new_tokens":64}}`, 3,
		func(t *testing.T, inv invoked) bool {
			eq(t, "usage.inputTokens", digInt(t, inv.body, "usage", "inputTokens"), inv.in)
			eq(t, "usage.outputTokens", digInt(t, inv.body, "usage", "outputTokens"), inv.out)
			eq(t, "words of text", digWords(t, inv.body, "output", "message", "content", 0, "text"), inv.out)
			return true
		}},
	{"titan embeddings v2", "amazon.titan-embed-text-v2:0",
		`{"inputText":"embed these five words now","dimensions":256}`, 5,
		func(t *testing.T, inv invoked) bool {
			eq(t, "inputTextTokenCount", digInt(t, inv.body, "inputTextTokenCount"), inv.in)
			eq(t, "dimensions", digLen(t, inv.body, "embedding"), 256)
			return false
		}},
	{"titan embeddings v1", "amazon.titan-embed-text-v1",
		`{"inputText":"older model"}`, 2,
		func(t *testing.T, inv invoked) bool {
			eq(t, "inputTextTokenCount", digInt(t, inv.body, "inputTextTokenCount"), inv.in)
			eq(t, "dimensions", digLen(t, inv.body, "embedding"), 1536)
			return false
		}},
	{"cohere embed", "cohere.embed-english-v3",
		`{"texts":["first text here","second one"],"input_type":"search_document"}`, 5,
		func(t *testing.T, inv invoked) bool {
			eq(t, "vectors", digLen(t, inv.body, "embeddings"), 2)
			eq(t, "dimensions", digLen(t, inv.body, "embeddings", 1), 1024)
			return false
		}},
	{"titan image", "amazon.titan-image-generator-v1",
		`{"taskType":"TEXT_IMAGE","textToImageParams":{"text":"a red ledger on a desk"},"imageGenerationConfig":{"numberOfImages":2,"height":512,"width":512,"quality":"premium","cfgScale":8}}`, 6,
		func(t *testing.T, inv invoked) bool {
			eq(t, "images", digLen(t, inv.body, "images"), 2)
			w, h := pngSize(t, dig(t, inv.body, "images", 1))
			eq(t, "size", [2]int{w, h}, [2]int{512, 512})
			return false
		}},
	{"stability sdxl", "stability.stable-diffusion-xl-v1",
		`{"text_prompts":[{"text":"a blue invoice","weight":1}],"height":512,"width":768,"steps":20,"cfg_scale":7}`, 3,
		func(t *testing.T, inv invoked) bool {
			eq(t, "result", dig(t, inv.body, "result"), any("success"))
			w, h := pngSize(t, dig(t, inv.body, "artifacts", 0, "base64"))
			eq(t, "size", [2]int{w, h}, [2]int{768, 512})
			return false
		}},
	{"stable image core", "stability.stable-image-core-v1:0",
		`{"prompt":"a green chart","aspect_ratio":"16:9"}`, 3,
		func(t *testing.T, inv invoked) bool {
			w, h := pngSize(t, dig(t, inv.body, "images", 0))
			eq(t, "size", [2]int{w, h}, [2]int{1344, 768})
			return false
		}},
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestInvokeModelFamilies(t *testing.T) {
	_, url := start(t, Config{})
	c := runtimeClient(url)
	for _, tc := range familyCases {
		t.Run(tc.name, func(t *testing.T) {
			inv := invoke(t, c, tc.model, tc.body)
			if len(inv.requestID) != 36 {
				t.Errorf("request id %q is not a UUID", inv.requestID)
			}
			eq(t, "input token header", inv.in, tc.wantIn)
			if inv.header.Get("X-Amzn-Bedrock-Invocation-Latency") == "" {
				t.Error("no X-Amzn-Bedrock-Invocation-Latency header")
			}
			if text := tc.check(t, inv); text {
				if inv.out < 1 || inv.out > 40 {
					t.Errorf("output tokens %d outside 1..40", inv.out)
				}
			} else {
				eq(t, "output token header", inv.out, 0)
			}
		})
	}
}

func TestInvokeModelMaxTokensTruncates(t *testing.T) {
	_, url := start(t, Config{})
	inv := invoke(t, runtimeClient(url), "anthropic.claude-3-haiku-20240307-v1:0",
		`{"anthropic_version":"bedrock-2023-05-31","max_tokens":3,"messages":[{"role":"user","content":"Tell me everything"}]}`)
	eq(t, "output tokens", inv.out, 3)
	eq(t, "stop_reason", dig(t, inv.body, "stop_reason"), any("max_tokens"))
}

func TestDeterministicAnswers(t *testing.T) {
	_, url := start(t, Config{})
	c := runtimeClient(url)
	body := `{"inputText":"same question every time"}`
	a := invoke(t, c, "amazon.titan-text-lite-v1", body)
	b := invoke(t, c, "amazon.titan-text-lite-v1", body)
	other := invoke(t, c, "amazon.titan-text-lite-v1", `{"inputText":"a different question"}`)
	if a.requestID == b.requestID {
		t.Error("two calls share a request id")
	}
	eq(t, "input tokens", a.in, b.in)
	eq(t, "output tokens", a.out, b.out)
	eq(t, "text", dig(t, a.body, "results", 0, "outputText"), dig(t, b.body, "results", 0, "outputText"))
	if dig(t, a.body, "results", 0, "outputText") == dig(t, other.body, "results", 0, "outputText") {
		t.Error("a different prompt got the same answer")
	}

	// A second server answers the same.
	_, url2 := start(t, Config{})
	c2 := invoke(t, runtimeClient(url2), "amazon.titan-text-lite-v1", body)
	eq(t, "text on another server", dig(t, c2.body, "results", 0, "outputText"), dig(t, a.body, "results", 0, "outputText"))
}

func TestPromptCaching(t *testing.T) {
	_, url := start(t, Config{})
	c := runtimeClient(url)
	body := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":100,
		"system":[{"type":"text","text":"You are the finance assistant of the platform team","cache_control":{"type":"ephemeral"}}],
		"messages":[{"role":"user","content":[{"type":"text","text":"How much did we spend"}]}]}`
	const model = "anthropic.claude-3-5-haiku-20241022-v1:0"
	first := invoke(t, c, model, body)
	second := invoke(t, c, model, body)
	eq(t, "input (uncached part)", first.in, 5)
	eq(t, "first call cache write header", first.header.Get("X-Amzn-Bedrock-Cache-Write-Input-Token-Count"), "9")
	eq(t, "first call cache read header", first.header.Get("X-Amzn-Bedrock-Cache-Read-Input-Token-Count"), "0")
	eq(t, "first call usage.cache_creation_input_tokens", digInt(t, first.body, "usage", "cache_creation_input_tokens"), 9)
	eq(t, "second call cache read header", second.header.Get("X-Amzn-Bedrock-Cache-Read-Input-Token-Count"), "9")
	eq(t, "second call cache write header", second.header.Get("X-Amzn-Bedrock-Cache-Write-Input-Token-Count"), "0")
	eq(t, "second call usage.cache_read_input_tokens", digInt(t, second.body, "usage", "cache_read_input_tokens"), 9)
	eq(t, "second call input", second.in, 5)

	// Without a cache marker there are no cache headers.
	plain := invoke(t, c, model, `{"anthropic_version":"bedrock-2023-05-31","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`)
	if _, ok := plain.header["X-Amzn-Bedrock-Cache-Read-Input-Token-Count"]; ok {
		t.Error("cache header on a call without a cache marker")
	}

	// Converse with a cachePoint block: the prefix is now cached for this model.
	text := "You are the finance assistant of the platform team"
	out, err := c.Converse(context.Background(), &bedrockruntime.ConverseInput{
		ModelId: aws.String(model),
		System: []types.SystemContentBlock{
			&types.SystemContentBlockMemberText{Value: text},
			&types.SystemContentBlockMemberCachePoint{Value: types.CachePointBlock{Type: types.CachePointTypeDefault}},
		},
		Messages: []types.Message{{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "How much did we spend"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "converse cacheReadInputTokens", aws.ToInt32(out.Usage.CacheReadInputTokens), 9)
	eq(t, "converse cacheWriteInputTokens", aws.ToInt32(out.Usage.CacheWriteInputTokens), 0)
	eq(t, "converse inputTokens", aws.ToInt32(out.Usage.InputTokens), 5)
	eq(t, "converse totalTokens", aws.ToInt32(out.Usage.TotalTokens), 5+9+aws.ToInt32(out.Usage.OutputTokens))
}

func TestModelIdentifiers(t *testing.T) {
	const profileARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/team-alpha"
	_, url := start(t, Config{ApplicationProfiles: map[string]string{profileARN: "amazon.titan-text-express-v1"}})
	c := runtimeClient(url)
	body := `{"inputText":"one two three"}`
	for _, id := range []string{
		"amazon.titan-text-express-v1",
		"us.amazon.titan-text-express-v1",
		"global.amazon.titan-text-express-v1",
		"arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1",
		"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.titan-text-express-v1",
		profileARN,
	} {
		inv := invoke(t, c, id, body)
		eq(t, id+" input tokens", inv.in, 3)
	}
	_, err := c.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
		ModelId: aws.String("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/unknown"), Body: []byte(body),
	})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("unknown application profile: %v, want ResourceNotFoundException", err)
	}
}

func TestConverse(t *testing.T) {
	_, url := start(t, Config{})
	c := runtimeClient(url)
	for _, model := range []string{"anthropic.claude-3-haiku-20240307-v1:0", "meta.llama3-1-8b-instruct-v1:0", "amazon.nova-micro-v1:0", "mistral.mistral-large-2407-v1:0"} {
		out, err := c.Converse(context.Background(), converseInput(model))
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		msg := out.Output.(*types.ConverseOutputMemberMessage).Value
		text := msg.Content[0].(*types.ContentBlockMemberText).Value
		u := out.Usage
		eq(t, model+" inputTokens", aws.ToInt32(u.InputTokens), 8)
		eq(t, model+" outputTokens", int(aws.ToInt32(u.OutputTokens)), len(strings.Fields(text)))
		eq(t, model+" totalTokens", aws.ToInt32(u.TotalTokens), aws.ToInt32(u.InputTokens)+aws.ToInt32(u.OutputTokens))
		eq(t, model+" stopReason", out.StopReason, types.StopReasonEndTurn)
		eq(t, model+" role", msg.Role, types.ConversationRoleAssistant)
		if out.Metrics == nil || out.Metrics.LatencyMs == nil {
			t.Errorf("%s: no metrics.latencyMs", model)
		}
		if id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata); len(id) != 36 {
			t.Errorf("%s: request id %q", model, id)
		}
	}

	_, err := c.Converse(context.Background(), converseInput("amazon.titan-embed-text-v2:0"))
	var ve *types.ValidationException
	if !errors.As(err, &ve) {
		t.Errorf("Converse on an embedding model: %v, want ValidationException", err)
	}
}

// converseInput has 8 prompt words: 2 of system, 6 of messages.
func converseInput(model string) *bedrockruntime.ConverseInput {
	return &bedrockruntime.ConverseInput{
		ModelId: aws.String(model),
		System:  []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: "Be brief."}},
		Messages: []types.Message{
			{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "Hello"}}},
			{Role: types.ConversationRoleAssistant, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "Hi."}}},
			{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "What did we spend?"}}},
		},
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(200)},
	}
}

func TestConverseStream(t *testing.T) {
	_, url := start(t, Config{StreamInterval: time.Millisecond})
	c := runtimeClient(url)
	const model = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
	whole, err := c.Converse(context.Background(), converseInput(model))
	if err != nil {
		t.Fatal(err)
	}
	in := converseInput(model)
	out, err := c.ConverseStream(context.Background(), &bedrockruntime.ConverseStreamInput{
		ModelId: in.ModelId, System: in.System, Messages: in.Messages, InferenceConfig: in.InferenceConfig,
	})
	if err != nil {
		t.Fatal(err)
	}
	stream := out.GetStream()
	defer stream.Close()
	var kinds []string
	var text strings.Builder
	var meta *types.ConverseStreamMetadataEvent
	var stop types.StopReason
	for ev := range stream.Events() {
		switch v := ev.(type) {
		case *types.ConverseStreamOutputMemberMessageStart:
			kinds = append(kinds, "messageStart")
			eq(t, "role", v.Value.Role, types.ConversationRoleAssistant)
		case *types.ConverseStreamOutputMemberContentBlockDelta:
			if len(kinds) == 0 || kinds[len(kinds)-1] != "contentBlockDelta" {
				kinds = append(kinds, "contentBlockDelta")
			}
			text.WriteString(v.Value.Delta.(*types.ContentBlockDeltaMemberText).Value)
		case *types.ConverseStreamOutputMemberContentBlockStop:
			kinds = append(kinds, "contentBlockStop")
		case *types.ConverseStreamOutputMemberMessageStop:
			kinds = append(kinds, "messageStop")
			stop = v.Value.StopReason
		case *types.ConverseStreamOutputMemberMetadata:
			kinds = append(kinds, "metadata")
			meta = &v.Value
		default:
			t.Errorf("unexpected event %T", ev)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	eq(t, "event order", strings.Join(kinds, ","), "messageStart,contentBlockDelta,contentBlockStop,messageStop,metadata")
	wholeText := whole.Output.(*types.ConverseOutputMemberMessage).Value.Content[0].(*types.ContentBlockMemberText).Value
	eq(t, "streamed text", text.String(), wholeText)
	eq(t, "stop reason", stop, types.StopReasonEndTurn)
	if meta == nil || meta.Usage == nil || meta.Metrics == nil {
		t.Fatalf("metadata event without usage or metrics: %+v", meta)
	}
	eq(t, "metadata inputTokens", aws.ToInt32(meta.Usage.InputTokens), aws.ToInt32(whole.Usage.InputTokens))
	eq(t, "metadata outputTokens", aws.ToInt32(meta.Usage.OutputTokens), aws.ToInt32(whole.Usage.OutputTokens))
	eq(t, "metadata totalTokens", aws.ToInt32(meta.Usage.TotalTokens), aws.ToInt32(whole.Usage.TotalTokens))
	eq(t, "metadata outputTokens vs streamed words", int(aws.ToInt32(meta.Usage.OutputTokens)), len(strings.Fields(text.String())))
}

// streamChunks reads an InvokeModelWithResponseStream answer to its end.
func streamChunks(t *testing.T, c *bedrockruntime.Client, model, body string) ([]map[string]any, error) {
	t.Helper()
	out, err := c.InvokeModelWithResponseStream(context.Background(), &bedrockruntime.InvokeModelWithResponseStreamInput{
		ModelId: aws.String(model), Body: []byte(body), ContentType: aws.String("application/json"),
	})
	if err != nil {
		return nil, err
	}
	stream := out.GetStream()
	defer stream.Close()
	var chunks []map[string]any
	for ev := range stream.Events() {
		chunk, ok := ev.(*types.ResponseStreamMemberChunk)
		if !ok {
			t.Fatalf("unexpected event %T", ev)
		}
		var m map[string]any
		if err := json.Unmarshal(chunk.Value.Bytes, &m); err != nil {
			t.Fatalf("chunk %s: %v", chunk.Value.Bytes, err)
		}
		chunks = append(chunks, m)
	}
	return chunks, stream.Err()
}

func TestInvokeModelWithResponseStream(t *testing.T) {
	_, url := start(t, Config{})
	c := runtimeClient(url)
	for _, tc := range familyCases {
		if byName(tc.model).modality != Text || tc.model == "ai21.j2-mid-v1" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			inv := invoke(t, c, tc.model, tc.body)
			chunks, err := streamChunks(t, c, tc.model, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if len(chunks) < 2 {
				t.Fatalf("%d chunks", len(chunks))
			}
			for _, ch := range chunks[:len(chunks)-1] {
				if _, ok := ch["amazon-bedrock-invocationMetrics"]; ok {
					t.Error("invocation metrics before the last chunk")
				}
			}
			last := chunks[len(chunks)-1]
			eq(t, "inputTokenCount", digInt(t, last, "amazon-bedrock-invocationMetrics", "inputTokenCount"), inv.in)
			eq(t, "outputTokenCount", digInt(t, last, "amazon-bedrock-invocationMetrics", "outputTokenCount"), inv.out)
			digInt(t, last, "amazon-bedrock-invocationMetrics", "invocationLatency")
			digInt(t, last, "amazon-bedrock-invocationMetrics", "firstByteLatency")
		})
	}

	// Claude's own events agree with the metrics and with InvokeModel's text.
	body := familyCases[1].body
	inv := invoke(t, c, familyCases[1].model, body)
	chunks, err := streamChunks(t, c, familyCases[1].model, body)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	var deltaOutput int
	for _, ch := range chunks {
		switch ch["type"] {
		case "content_block_delta":
			text.WriteString(dig(t, ch, "delta", "text").(string))
		case "message_start":
			eq(t, "message_start input_tokens", digInt(t, ch, "message", "usage", "input_tokens"), inv.in)
		case "message_delta":
			deltaOutput = digInt(t, ch, "usage", "output_tokens")
		}
	}
	eq(t, "first chunk type", chunks[0]["type"], any("message_start"))
	eq(t, "last chunk type", chunks[len(chunks)-1]["type"], any("message_stop"))
	eq(t, "streamed text", text.String(), dig(t, inv.body, "content", 0, "text").(string))
	eq(t, "message_delta output_tokens", deltaOutput, inv.out)

	// Embedding models do not stream.
	_, err = streamChunks(t, c, "amazon.titan-embed-text-v2:0", `{"inputText":"x"}`)
	var ve *types.ValidationException
	if !errors.As(err, &ve) {
		t.Errorf("streaming an embedding model: %v, want ValidationException", err)
	}
}

func byName(id string) *family {
	_, base := splitProfile(id)
	return familyByPrefix(base)
}

// Every catalogued model answers its family's request shape.
func TestEveryModelAnswers(t *testing.T) {
	_, url := start(t, Config{})
	c := runtimeClient(url)
	bodies := map[string]familyCase{}
	for _, tc := range familyCases {
		f := byName(tc.model)
		if _, ok := bodies[f.name]; !ok {
			bodies[f.name] = tc
		}
	}
	for _, m := range Models() {
		tc, ok := bodies[m.Family]
		if !ok {
			t.Errorf("no test body for family %s", m.Family)
			continue
		}
		if inv := invoke(t, c, m.ID, tc.body); inv.in != tc.wantIn {
			t.Errorf("%s: input tokens %d, want %d", m.ID, inv.in, tc.wantIn)
		}
	}
}
