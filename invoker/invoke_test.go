package invoker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/meter-dev/meter/invoker"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

const haiku = "anthropic.claude-3-haiku-20240307-v1:0"

var seedTeams = []tenants.TeamSpec{
	{ID: "search", CostCenter: "CC-100", AllowedModels: []string{"anthropic.*", "amazon.titan-embed-*", "us.anthropic.*"}},
	{ID: "ads", CostCenter: "CC-200", AllowedModels: []string{"meta.*"}},
	{ID: "platform", CostCenter: "CC-900", AllowedModels: []string{"*"}, ActFor: []string{"search"}},
	{ID: "burst", AllowedModels: []string{"anthropic.*"}, RateLimit: &tenants.RateLimit{RPS: 0.5, Burst: 2}},
}

// checkMetered asserts the event of a served call: the contract's fields, and
// tokens equal to what the model server reported for that request id.
func checkMetered(t *testing.T, e *env, r response, ev schemas.Event, team, costCenter, model, op string) {
	t.Helper()
	if ev.Status != schemas.StatusSuccess || ev.TeamID != team || ev.CostCenter != costCenter || ev.ModelID != model || ev.Operation != op {
		t.Fatalf("event %+v: want success for %s/%s/%s %s", ev, team, costCenter, model, op)
	}
	if ev.SchemaVersion != 1 || ev.EventID == "" || ev.APIKeyID == "" || strings.HasPrefix(ev.APIKeyID, "mk_") || ev.Region != "us-east-1" {
		t.Fatalf("event %+v: bad identity fields", ev)
	}
	if rid := r.header.Get("x-request-id"); rid != ev.RequestID {
		t.Fatalf("x-request-id %q, event request_id %q", rid, ev.RequestID)
	}
	answered := e.models.answer(ev.RequestID)
	if answered == nil {
		t.Fatalf("request id %q is not one the model server answered", ev.RequestID)
	}
	for _, c := range []struct {
		header string
		got    int64
	}{
		{"X-Amzn-Bedrock-Input-Token-Count", ev.InputTokens},
		{"X-Amzn-Bedrock-Output-Token-Count", ev.OutputTokens},
	} {
		want, _ := strconv.ParseInt(answered.Get(c.header), 10, 64)
		if c.got != want {
			t.Fatalf("%s: model server reported %d, metered %d", c.header, want, c.got)
		}
	}
	if r.header.Get("x-input-tokens") != strconv.FormatInt(ev.InputTokens, 10) || r.header.Get("x-output-tokens") != strconv.FormatInt(ev.OutputTokens, 10) {
		t.Fatalf("token headers %q/%q, event %d/%d", r.header.Get("x-input-tokens"), r.header.Get("x-output-tokens"), ev.InputTokens, ev.OutputTokens)
	}
}

func checkRefused(t *testing.T, ev schemas.Event, r response, team, model, status string) {
	t.Helper()
	if ev.Status != status || ev.TeamID != team || ev.ModelID != model || ev.InputTokens != 0 || ev.OutputTokens != 0 {
		t.Fatalf("event %+v: want %s for %s/%s with zero tokens", ev, status, team, model)
	}
	if ev.RequestID == "" || ev.RequestID != r.header.Get("x-request-id") {
		t.Fatalf("event request_id %q, x-request-id %q", ev.RequestID, r.header.Get("x-request-id"))
	}
}

func TestSeedRequestFlow(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	body := `{"inputs": "Name three rivers in Europe.", "parameters": {"max_new_tokens": 64, "temperature": 0.2}}`

	t.Run("text", func(t *testing.T) {
		r := e.invoke("search", haiku, nil, body)
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		var out []map[string]string
		r.json(t, &out)
		if len(out) != 1 || out[0]["generated_text"] == "" {
			t.Fatalf("body %s", r.body)
		}
		ev := e.oneEvent(t)
		checkMetered(t, e, r, ev, "search", "CC-100", haiku, "InvokeModel")
		if ev.InputTokens != 5 { // the model server counts words of the prompt
			t.Fatalf("input tokens %d, want 5", ev.InputTokens)
		}
	})
	t.Run("embeddings", func(t *testing.T) {
		r := e.invoke("search", "amazon.titan-embed-text-v2:0", map[string]string{"embeddings": "true"}, `{"inputs": "a b c d", "parameters": {"dimensions": 256}}`)
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		var out []struct{ Embedding []float64 }
		r.json(t, &out)
		if len(out) != 1 || len(out[0].Embedding) != 256 {
			t.Fatalf("body %.200s", r.body)
		}
		ev := e.oneEvent(t)
		checkMetered(t, e, r, ev, "search", "CC-100", "amazon.titan-embed-text-v2:0", "InvokeModel")
		if ev.InputTokens != 4 || ev.OutputTokens != 0 {
			t.Fatalf("tokens %d/%d", ev.InputTokens, ev.OutputTokens)
		}
	})
	t.Run("model outside allow-list", func(t *testing.T) {
		r := e.invoke("search", "meta.llama3-8b-instruct-v1:0", nil, body)
		if r.status != 403 || r.errorCode(t) != "model_not_allowed" {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		checkRefused(t, e.oneEvent(t), r, "search", "meta.llama3-8b-instruct-v1:0", schemas.StatusDenied)
	})
	t.Run("wrong key", func(t *testing.T) {
		r := e.do("POST", "/invoke_model?model_id="+haiku, map[string]string{"x-api-key": e.keys["search"] + "x"}, body)
		if r.status != 401 || r.errorCode(t) != "unauthorized" {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		r = e.do("POST", "/invoke_model?model_id="+haiku, nil, body)
		if r.status != 401 {
			t.Fatalf("no key: status %d", r.status)
		}
		if evs := e.newEvents(t); len(evs) != 0 {
			t.Fatalf("unauthenticated calls have no tenant to meter: %+v", evs)
		}
	})
	t.Run("spoofed team_id", func(t *testing.T) {
		r := e.invoke("search", haiku, map[string]string{"team_id": "ads"}, body)
		if r.status != 403 || r.errorCode(t) != "team_not_allowed" {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		ev := e.oneEvent(t)
		checkRefused(t, ev, r, "search", haiku, schemas.StatusDenied) // metered to the key's own team, not the spoofed one
	})
	t.Run("act for another team", func(t *testing.T) {
		r := e.invoke("platform", haiku, map[string]string{"team_id": "search"}, body)
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		ev := e.oneEvent(t)
		checkMetered(t, e, r, ev, "search", "CC-100", haiku, "InvokeModel")
		var platformKey string
		teams, _ := tenants.ListTeams(e.tenants)
		for _, tm := range teams {
			if tm.ID == "platform" {
				platformKey = tm.Keys[0].ID
			}
		}
		if ev.APIKeyID != platformKey {
			t.Fatalf("api_key_id %q, want the acting key %q", ev.APIKeyID, platformKey)
		}
	})
	t.Run("malformed body", func(t *testing.T) {
		for _, b := range []string{`{"inputs": `, `{"parameters": {}}`, `[1,2]`} {
			r := e.invoke("search", haiku, nil, b)
			if r.status != 400 || r.errorCode(t) != "bad_request" {
				t.Fatalf("%s: status %d: %s", b, r.status, r.body)
			}
			checkRefused(t, e.oneEvent(t), r, "search", haiku, schemas.StatusClientError)
		}
	})
	t.Run("body too large", func(t *testing.T) {
		r := e.invoke("search", haiku, nil, `{"inputs": "`+strings.Repeat("word ", 20000)+`"}`)
		if r.status != 413 || r.errorCode(t) != "payload_too_large" {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		checkRefused(t, e.oneEvent(t), r, "search", haiku, schemas.StatusClientError)
	})
	t.Run("burst over rate limit", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if r := e.invoke("burst", haiku, nil, body); r.status != 200 {
				t.Fatalf("call %d within burst: status %d: %s", i, r.status, r.body)
			}
		}
		r := e.invoke("burst", haiku, nil, body)
		if r.status != 429 || r.errorCode(t) != "rate_limited" {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
		evs := e.newEvents(t)
		if len(evs) != 3 || evs[0].Status != "success" || evs[1].Status != "success" {
			t.Fatalf("events %+v", evs)
		}
		checkRefused(t, evs[2], r, "burst", haiku, schemas.StatusThrottled)
	})
	t.Run("Bedrock throttling", func(t *testing.T) {
		r := e.invoke("search", haiku, nil, `{"inputs": "hello [[meter-inject:ThrottlingException]]"}`)
		if r.status != 429 || r.errorCode(t) != "upstream_throttled" || r.header.Get("Retry-After") == "" {
			t.Fatalf("status %d %v: %s", r.status, r.header, r.body)
		}
		ev := e.oneEvent(t)
		checkRefused(t, ev, r, "search", haiku, schemas.StatusThrottled)
		if e.models.answer(ev.RequestID) == nil {
			t.Fatalf("request_id %q is not Bedrock's", ev.RequestID)
		}
	})
	t.Run("Bedrock validation and access errors", func(t *testing.T) {
		for exc, want := range map[string]int{"ValidationException": 400, "AccessDeniedException": 403, "ServiceUnavailableException": 503, "InternalServerException": 502} {
			r := e.invoke("search", haiku, nil, `{"inputs": "hello [[meter-inject:`+exc+`]]"}`)
			if r.status != want {
				t.Fatalf("%s: status %d, want %d: %s", exc, r.status, want, r.body)
			}
			r.errorCode(t)
			ev := e.oneEvent(t)
			if e.models.answer(ev.RequestID) == nil || ev.InputTokens != 0 {
				t.Fatalf("%s: event %+v", exc, ev)
			}
		}
	})
	t.Run("list_foundation_models", func(t *testing.T) {
		r := e.do("GET", "/list_foundation_models", map[string]string{"x-api-key": e.keys["ads"]}, "")
		var out struct {
			TeamID         string `json:"teamId"`
			ModelSummaries []struct {
				ModelID string `json:"modelId"`
			} `json:"modelSummaries"`
		}
		r.json(t, &out)
		if r.status != 200 || out.TeamID != "ads" || len(out.ModelSummaries) == 0 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		for _, m := range out.ModelSummaries {
			if !strings.HasPrefix(m.ModelID, "meta.") {
				t.Fatalf("team ads may not invoke %s", m.ModelID)
			}
		}
	})
	t.Run("openapi", func(t *testing.T) {
		r := e.do("GET", "/openapi.json", nil, "")
		var doc struct {
			OpenAPI string                    `json:"openapi"`
			Paths   map[string]map[string]any `json:"paths"`
		}
		r.json(t, &doc)
		for _, p := range []string{"/invoke_model", "/list_foundation_models", "/model/{model_id}/converse", "/model/{model_id}/converse-stream", "/openapi.json", "/usage",
			"/bedrock/model/{modelId}/invoke", "/bedrock/model/{modelId}/invoke-with-response-stream", "/bedrock/model/{modelId}/converse", "/bedrock/model/{modelId}/converse-stream"} {
			if doc.Paths[p] == nil {
				t.Fatalf("openapi.json lacks %s", p)
			}
		}
		if !strings.HasPrefix(doc.OpenAPI, "3.0") {
			t.Fatalf("openapi %q", doc.OpenAPI)
		}
	})
	t.Run("unknown route and method", func(t *testing.T) {
		if r := e.do("GET", "/nope", nil, ""); r.status != 404 || r.errorCode(t) != "not_found" {
			t.Fatalf("status %d", r.status)
		}
		if r := e.do("GET", "/invoke_model", nil, ""); r.status != 405 || r.errorCode(t) != "method_not_allowed" {
			t.Fatalf("status %d", r.status)
		}
	})
	if evs := e.newEvents(t); len(evs) != 0 {
		t.Fatalf("stray events %+v", evs)
	}
}

// TestFamilies invokes one model of every family through /invoke_model and
// checks the metered tokens (and image settings) against the model server.
func TestFamilies(t *testing.T) {
	e := newEnv(t, envOpts{teams: []tenants.TeamSpec{{ID: "lab", CostCenter: "RnD-1", AllowedModels: []string{"*"}}}})
	cases := []struct {
		model, params string
		in            int64 // the model server counts every word sent, wrappers included
		embedding     bool
		images        int64
		h, w, steps   int64
		quality       string
	}{
		{model: "amazon.titan-text-express-v1", params: `{"max_new_tokens": 30}`},
		{model: "amazon.nova-lite-v1:0", params: `{"max_new_tokens": 30}`},
		{model: "anthropic.claude-v2:1", params: `{"max_new_tokens": 30}`, in: 9},
		{model: "anthropic.claude-3-haiku-20240307-v1:0", params: `{"max_tokens": 30, "system": "be brief"}`, in: 9},
		{model: "us.anthropic.claude-3-5-haiku-20241022-v1:0", params: `{}`},
		{model: "ai21.j2-mid-v1", params: `{"max_tokens": 20}`},
		{model: "ai21.jamba-1-5-mini-v1:0", params: `{"max_new_tokens": 20}`},
		{model: "cohere.command-text-v14", params: `{"max_tokens": 20}`},
		{model: "cohere.command-r-v1:0", params: `{}`},
		{model: "meta.llama3-8b-instruct-v1:0", params: `{"max_new_tokens": 25, "temperature": 0.5}`},
		{model: "mistral.mistral-7b-instruct-v0:2", params: `{"max_tokens": 25}`, in: 9},
		{model: "amazon.titan-embed-text-v1", params: `{}`, embedding: true},
		{model: "cohere.embed-english-v3", params: `{}`, embedding: true},
		{model: "amazon.titan-image-generator-v1", params: `{"num_images": 2, "height": 512, "width": 512, "quality": "premium"}`, images: 2, h: 512, w: 512, quality: "premium"},
		{model: "stability.stable-diffusion-xl-v1", params: `{"num_inference_steps": 40, "height": 512, "width": 512}`, images: 1, h: 512, w: 512, steps: 40, quality: "standard"},
		{model: "stability.stable-image-core-v1:1", params: `{}`, images: 1},
	}
	for _, c := range cases {
		t.Run(c.model, func(t *testing.T) {
			hdr := map[string]string{}
			if c.embedding {
				hdr["embeddings"] = "true"
			}
			r := e.invoke("lab", c.model, hdr, `{"inputs": "draw a quiet harbour at dawn please", "parameters": `+c.params+`}`)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			var out []map[string]json.RawMessage
			r.json(t, &out)
			switch {
			case c.embedding:
				if len(out) != 1 || len(out[0]["embedding"]) < 3 {
					t.Fatalf("body %.200s", r.body)
				}
			case c.images > 0:
				if int64(len(out)) != c.images || len(out[0]["image"]) < 10 {
					t.Fatalf("want %d images, body %.200s", c.images, r.body)
				}
			default:
				var text string
				if len(out) != 1 || json.Unmarshal(out[0]["generated_text"], &text) != nil || text == "" {
					t.Fatalf("body %.300s", r.body)
				}
			}
			ev := e.oneEvent(t)
			checkMetered(t, e, r, ev, "lab", "RnD-1", c.model, "InvokeModel")
			if c.in == 0 {
				c.in = 7
			}
			if ev.InputTokens != c.in {
				t.Fatalf("input tokens %d, want the %d words sent", ev.InputTokens, c.in)
			}
			if c.images > 0 && (ev.ImageCount != c.images || ev.ImageHeight != c.h || ev.ImageWidth != c.w || ev.ImageSteps != c.steps || ev.ImageQuality != c.quality) {
				t.Fatalf("image fields %+v", ev)
			}
			if c.images == 0 && !c.embedding && ev.OutputTokens == 0 {
				t.Fatalf("no output tokens metered: %+v", ev)
			}
		})
	}
}

var converseBody = mustJSON(map[string]any{
	"system":          []any{map[string]any{"text": "You answer in one paragraph."}},
	"messages":        []any{map[string]any{"role": "user", "content": []any{map[string]any{"text": "Explain tides to a child"}}}},
	"inferenceConfig": map[string]any{"maxTokens": 200},
})

// directUsage asks the model server the same question through the SDK, bypassing the invoker.
func directUsage(t *testing.T, e *env, model string) *types.TokenUsage {
	t.Helper()
	out, err := e.bedrock.Converse(context.Background(), &bedrockruntime.ConverseInput{
		ModelId:         aws.String(model),
		System:          []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: "You answer in one paragraph."}},
		Messages:        []types.Message{{Role: "user", Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "Explain tides to a child"}}}},
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(200)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Usage
}

func TestConverse(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	want := directUsage(t, e, haiku)
	r := e.do("POST", "/model/"+haiku+"/converse", map[string]string{"x-api-key": e.keys["search"]}, converseBody)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var out struct {
		Output struct {
			Message struct {
				Role    string
				Content []struct{ Text string }
			}
		}
		StopReason string
		Usage      struct{ InputTokens, OutputTokens int64 }
	}
	r.json(t, &out)
	if out.Output.Message.Role != "assistant" || out.Output.Message.Content[0].Text == "" || out.StopReason == "" {
		t.Fatalf("body %s", r.body)
	}
	ev := e.oneEvent(t)
	if ev.Operation != "Converse" || ev.Status != "success" || ev.InputTokens != int64(*want.InputTokens) || ev.OutputTokens != int64(*want.OutputTokens) ||
		out.Usage.InputTokens != ev.InputTokens || ev.RequestID != r.header.Get("x-request-id") {
		t.Fatalf("event %+v, model server usage %d/%d", ev, *want.InputTokens, *want.OutputTokens)
	}
	// Unsupported request members are refused, not dropped.
	r = e.do("POST", "/model/"+haiku+"/converse", map[string]string{"x-api-key": e.keys["search"]}, `{"messages":[{"role":"user","content":[{"text":"x"}]}],"toolConfig":{}}`)
	if r.status != 400 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	checkRefused(t, e.oneEvent(t), r, "search", haiku, schemas.StatusClientError)
}

func TestConverseStream(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams, model: bedrocklocalStreaming})
	want := directUsage(t, e, haiku)

	t.Run("read to the end", func(t *testing.T) {
		resp := e.stream(haiku)
		defer resp.Body.Close()
		events, err := readSSE(resp.Body, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) < 5 || events[0].name != "messageStart" || events[len(events)-1].name != "metadata" {
			t.Fatalf("events %+v", events)
		}
		var meta struct {
			Usage struct{ InputTokens, OutputTokens int64 }
		}
		json.Unmarshal([]byte(events[len(events)-1].data), &meta)
		ev := e.oneEvent(t)
		if ev.Operation != "ConverseStream" || ev.Status != "success" || ev.InputTokens != int64(*want.InputTokens) ||
			ev.OutputTokens != int64(*want.OutputTokens) || meta.Usage.OutputTokens != ev.OutputTokens || ev.RequestID != resp.Header.Get("x-request-id") {
			t.Fatalf("event %+v, metadata %+v, model server %d/%d", ev, meta, *want.InputTokens, *want.OutputTokens)
		}
	})
	t.Run("client disconnects early", func(t *testing.T) {
		resp := e.stream(haiku)
		events, err := readSSE(resp.Body, 2)
		if err != nil || len(events) != 2 {
			t.Fatalf("events %+v: %v", events, err)
		}
		resp.Body.Close() // gone after the first delta
		var evs []schemas.Event
		deadline := time.Now().Add(10 * time.Second)
		for len(evs) == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			evs = e.newEvents(t)
		}
		if len(evs) != 1 {
			t.Fatalf("want 1 usage event after the disconnect, got %+v", evs)
		}
		ev := evs[0]
		if ev.Status != "success" || ev.InputTokens != int64(*want.InputTokens) || ev.OutputTokens != int64(*want.OutputTokens) || ev.OutputTokens == 0 {
			t.Fatalf("event %+v, model server %d/%d", ev, *want.InputTokens, *want.OutputTokens)
		}
	})
}

func (e *env) stream(model string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.api.URL+"/model/"+model+"/converse-stream", strings.NewReader(converseBody))
	req.Header.Set("x-api-key", e.keys["search"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp
}

func TestRegistryReloadAndKeyLifecycle(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	body := `{"inputs": "hi"}`
	key, err := tenants.AddTeam(e.tenants, tenants.TeamSpec{ID: "late", CostCenter: "CC-7", AllowedModels: []string{haiku}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.AddTeam(e.tenants, tenants.TeamSpec{ID: "late"}); err == nil {
		t.Fatal("duplicate team accepted")
	}
	e.keys["late"] = key
	waitStatus(t, e, "late", 200, body)
	ev := e.newEvents(t)
	if ev[len(ev)-1].TeamID != "late" || ev[len(ev)-1].CostCenter != "CC-7" {
		t.Fatalf("event %+v", ev[len(ev)-1])
	}

	newKey, err := tenants.RotateKey(e.tenants, "late", false)
	if err != nil {
		t.Fatal(err)
	}
	oldKey := key
	e.keys["late"] = newKey
	waitStatus(t, e, "late", 200, body)
	e.keys["late"] = oldKey
	if r := e.invoke("late", haiku, nil, body); r.status != 200 {
		t.Fatalf("old key stops only when revoked: %d", r.status)
	}
	teams, _ := tenants.ListTeams(e.tenants)
	var oldID string
	for _, tm := range teams {
		if tm.ID == "late" {
			oldID = tm.Keys[0].ID
		}
	}
	if err := tenants.RevokeKey(e.tenants, "late", oldID); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e, "late", 401, body)
	e.keys["late"] = newKey
	if r := e.invoke("late", haiku, nil, body); r.status != 200 {
		t.Fatalf("new key after revoking the old: %d", r.status)
	}

	// An invalid edit keeps the last good registry.
	if err := os.WriteFile(e.tenants, []byte("teams: [ {id: "), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if r := e.invoke("late", haiku, nil, body); r.status != 200 {
		t.Fatalf("after an invalid edit: %d", r.status)
	}
}

func waitStatus(t *testing.T, e *env, team string, want int, body string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := e.invoke(team, haiku, nil, body)
		if r.status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %d, want %d after reload: %s", r.status, want, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUpstreamTimeout(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams, model: bedrocklocalSlow, callTimeout: 200 * time.Millisecond})
	r := e.invoke("search", haiku, nil, `{"inputs": "hi"}`)
	if r.status != 504 || r.errorCode(t) != "upstream_timeout" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	ev := e.oneEvent(t)
	if ev.Status != schemas.StatusUpstreamError || ev.InputTokens != 0 {
		t.Fatalf("event %+v", ev)
	}
}

func TestKeysStoredOnlyAsHashes(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	data, err := os.ReadFile(e.tenants)
	if err != nil {
		t.Fatal(err)
	}
	for team, key := range e.keys {
		sum := sha256.Sum256([]byte(key))
		if strings.Contains(string(data), key) || !strings.Contains(string(data), hex.EncodeToString(sum[:])) {
			t.Fatalf("team %s: the file must hold the key's SHA-256 and never the key", team)
		}
	}
	if st, _ := os.Stat(e.tenants); st.Mode().Perm() != 0o600 {
		t.Fatalf("tenants file mode %v", st.Mode())
	}
}

// panicky is a Bedrock client that fails in the worst way.
type panicky struct{ invoker.BedrockClient }

func (panicky) InvokeModel(context.Context, *bedrockruntime.InvokeModelInput, ...func(*bedrockruntime.Options)) (*bedrockruntime.InvokeModelOutput, error) {
	panic("boom")
}

func TestPanicBecomesJSON500(t *testing.T) {
	e := newEnv(t, envOpts{teams: seedTeams})
	reg, _ := tenants.OpenRegistry(e.tenants)
	srv, err := invoker.New(invoker.Config{Tenants: reg, Bedrock: panicky{}, Usage: e.emitter})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e.api.Config.Handler = srv
	r := e.invoke("search", haiku, nil, `{"inputs": "hi"}`)
	if r.status != 500 || r.errorCode(t) != "internal_error" || strings.Contains(string(r.body), "boom") {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}
