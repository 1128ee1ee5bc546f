package invoker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/meter-dev/meter/internal/awshttp"
)

// converseRequest is the JSON body of POST /model/{model_id}/converse(-stream):
// Bedrock's own Converse request shape, for the members this API supports.
// Unsupported members are refused rather than silently dropped.
type converseRequest struct {
	Messages                          []converseMessage `json:"messages"`
	System                            []converseBlock   `json:"system"`
	InferenceConfig                   *inferenceConfig  `json:"inferenceConfig"`
	AdditionalModelRequestFields      map[string]any    `json:"additionalModelRequestFields"`
	AdditionalModelResponseFieldPaths []string          `json:"additionalModelResponseFieldPaths"`
	// RequestMetadata is the app's own; meter adds its keys (metadata.go).
	RequestMetadata map[string]string `json:"requestMetadata"`
}

type inferenceConfig struct {
	MaxTokens     *int32   `json:"maxTokens"`
	Temperature   *float32 `json:"temperature"`
	TopP          *float32 `json:"topP"`
	StopSequences []string `json:"stopSequences"`
}

type converseMessage struct {
	Role    string          `json:"role"`
	Content []converseBlock `json:"content"`
}

type converseBlock struct {
	Text       *string       `json:"text,omitempty"`
	Image      *binaryBlock  `json:"image,omitempty"`
	Document   *binaryBlock  `json:"document,omitempty"`
	CachePoint *cachePointJS `json:"cachePoint,omitempty"`
}

type binaryBlock struct {
	Format string `json:"format"`
	Name   string `json:"name,omitempty"`
	Source struct {
		Bytes []byte `json:"bytes"` // base64 in JSON, as in Bedrock's REST API
	} `json:"source"`
}

type cachePointJS struct {
	Type string `json:"type"`
}

// parseConverse decodes a Converse body into the SDK's input members.
func parseConverse(body []byte) (*converseRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req converseRequest
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("converse body: %w", err)
	}
	if len(req.Messages) == 0 {
		return nil, errors.New("converse body: messages must not be empty")
	}
	if err := checkCallerMetadata(req.RequestMetadata); err != nil {
		return nil, fmt.Errorf("converse body: %w", err)
	}
	return &req, nil
}

func (req *converseRequest) blocks(in []converseBlock, where string) ([]types.ContentBlock, error) {
	var out []types.ContentBlock
	for i, b := range in {
		switch {
		case b.Text != nil:
			out = append(out, &types.ContentBlockMemberText{Value: *b.Text})
		case b.Image != nil:
			out = append(out, &types.ContentBlockMemberImage{Value: types.ImageBlock{
				Format: types.ImageFormat(b.Image.Format), Source: &types.ImageSourceMemberBytes{Value: b.Image.Source.Bytes}}})
		case b.Document != nil:
			out = append(out, &types.ContentBlockMemberDocument{Value: types.DocumentBlock{
				Format: types.DocumentFormat(b.Document.Format), Name: aws.String(b.Document.Name),
				Source: &types.DocumentSourceMemberBytes{Value: b.Document.Source.Bytes}}})
		case b.CachePoint != nil:
			out = append(out, &types.ContentBlockMemberCachePoint{Value: types.CachePointBlock{Type: types.CachePointType(b.CachePoint.Type)}})
		default:
			return nil, fmt.Errorf("%s content block %d: want one of text, image, document, cachePoint", where, i)
		}
	}
	return out, nil
}

func (req *converseRequest) sdkParts() ([]types.Message, []types.SystemContentBlock, *types.InferenceConfiguration, document.Interface, error) {
	var msgs []types.Message
	for i, m := range req.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return nil, nil, nil, nil, fmt.Errorf("message %d: role must be user or assistant", i)
		}
		cs, err := req.blocks(m.Content, fmt.Sprintf("message %d", i))
		if err != nil {
			return nil, nil, nil, nil, err
		}
		msgs = append(msgs, types.Message{Role: types.ConversationRole(m.Role), Content: cs})
	}
	var sys []types.SystemContentBlock
	for i, b := range req.System {
		switch {
		case b.Text != nil:
			sys = append(sys, &types.SystemContentBlockMemberText{Value: *b.Text})
		case b.CachePoint != nil:
			sys = append(sys, &types.SystemContentBlockMemberCachePoint{Value: types.CachePointBlock{Type: types.CachePointType(b.CachePoint.Type)}})
		default:
			return nil, nil, nil, nil, fmt.Errorf("system block %d: want text or cachePoint", i)
		}
	}
	var ic *types.InferenceConfiguration
	if c := req.InferenceConfig; c != nil {
		ic = &types.InferenceConfiguration{MaxTokens: c.MaxTokens, Temperature: c.Temperature, TopP: c.TopP, StopSequences: c.StopSequences}
	}
	var extra document.Interface
	if req.AdditionalModelRequestFields != nil {
		extra = document.NewLazyDocument(req.AdditionalModelRequestFields)
	}
	return msgs, sys, ic, extra, nil
}

func (req *converseRequest) input(modelID string) (*bedrockruntime.ConverseInput, error) {
	msgs, sys, ic, extra, err := req.sdkParts()
	if err != nil {
		return nil, err
	}
	return &bedrockruntime.ConverseInput{ModelId: aws.String(modelID), Messages: msgs, System: sys, InferenceConfig: ic,
		AdditionalModelRequestFields: extra, AdditionalModelResponseFieldPaths: req.AdditionalModelResponseFieldPaths}, nil
}

func (req *converseRequest) streamInput(modelID string) (*bedrockruntime.ConverseStreamInput, error) {
	msgs, sys, ic, extra, err := req.sdkParts()
	if err != nil {
		return nil, err
	}
	return &bedrockruntime.ConverseStreamInput{ModelId: aws.String(modelID), Messages: msgs, System: sys, InferenceConfig: ic,
		AdditionalModelRequestFields: extra, AdditionalModelResponseFieldPaths: req.AdditionalModelResponseFieldPaths}, nil
}

// usageJSON is Bedrock's TokenUsage as JSON.
type usageJSON struct {
	InputTokens           int32 `json:"inputTokens"`
	OutputTokens          int32 `json:"outputTokens"`
	TotalTokens           int32 `json:"totalTokens"`
	CacheReadInputTokens  int32 `json:"cacheReadInputTokens,omitempty"`
	CacheWriteInputTokens int32 `json:"cacheWriteInputTokens,omitempty"`
}

func usageOf(u *types.TokenUsage) usageJSON {
	if u == nil {
		return usageJSON{}
	}
	return usageJSON{InputTokens: aws.ToInt32(u.InputTokens), OutputTokens: aws.ToInt32(u.OutputTokens), TotalTokens: aws.ToInt32(u.TotalTokens),
		CacheReadInputTokens: aws.ToInt32(u.CacheReadInputTokens), CacheWriteInputTokens: aws.ToInt32(u.CacheWriteInputTokens)}
}

func blocksJSON(cs []types.ContentBlock) []map[string]any {
	out := []map[string]any{}
	for _, c := range cs {
		switch v := c.(type) {
		case *types.ContentBlockMemberText:
			out = append(out, map[string]any{"text": v.Value})
		case *types.ContentBlockMemberReasoningContent:
			if t, ok := v.Value.(*types.ReasoningContentBlockMemberReasoningText); ok {
				out = append(out, map[string]any{"reasoningContent": map[string]any{"reasoningText": map[string]any{"text": aws.ToString(t.Value.Text)}}})
			}
		}
	}
	return out
}

// converseResponseJSON renders a ConverseOutput in Bedrock's REST response shape.
func converseResponseJSON(out *bedrockruntime.ConverseOutput) map[string]any {
	resp := map[string]any{"stopReason": string(out.StopReason), "usage": usageOf(out.Usage)}
	if msg, ok := out.Output.(*types.ConverseOutputMemberMessage); ok {
		resp["output"] = map[string]any{"message": map[string]any{"role": string(msg.Value.Role), "content": blocksJSON(msg.Value.Content)}}
	}
	if out.Metrics != nil {
		resp["metrics"] = map[string]any{"latencyMs": aws.ToInt64(out.Metrics.LatencyMs)}
	}
	return resp
}

// streamEventJSON renders one ConverseStream event as its SSE event name and
// JSON data, in Bedrock's event shapes.
func streamEventJSON(ev types.ConverseStreamOutput) (string, any) {
	switch v := ev.(type) {
	case *types.ConverseStreamOutputMemberMessageStart:
		return "messageStart", map[string]any{"role": string(v.Value.Role)}
	case *types.ConverseStreamOutputMemberContentBlockStart:
		start := map[string]any{}
		if tu, ok := v.Value.Start.(*types.ContentBlockStartMemberToolUse); ok {
			start["toolUse"] = map[string]any{"toolUseId": aws.ToString(tu.Value.ToolUseId), "name": aws.ToString(tu.Value.Name)}
		}
		return "contentBlockStart", map[string]any{"contentBlockIndex": aws.ToInt32(v.Value.ContentBlockIndex), "start": start}
	case *types.ConverseStreamOutputMemberContentBlockDelta:
		delta := map[string]any{}
		switch d := v.Value.Delta.(type) {
		case *types.ContentBlockDeltaMemberText:
			delta["text"] = d.Value
		case *types.ContentBlockDeltaMemberToolUse:
			delta["toolUse"] = map[string]any{"input": aws.ToString(d.Value.Input)}
		case *types.ContentBlockDeltaMemberReasoningContent:
			if t, ok := d.Value.(*types.ReasoningContentBlockDeltaMemberText); ok {
				delta["reasoningContent"] = map[string]any{"text": t.Value}
			}
		}
		return "contentBlockDelta", map[string]any{"contentBlockIndex": aws.ToInt32(v.Value.ContentBlockIndex), "delta": delta}
	case *types.ConverseStreamOutputMemberContentBlockStop:
		return "contentBlockStop", map[string]any{"contentBlockIndex": aws.ToInt32(v.Value.ContentBlockIndex)}
	case *types.ConverseStreamOutputMemberMessageStop:
		return "messageStop", map[string]any{"stopReason": string(v.Value.StopReason)}
	case *types.ConverseStreamOutputMemberMetadata:
		m := map[string]any{"usage": usageOf(v.Value.Usage)}
		if v.Value.Metrics != nil {
			m["metrics"] = map[string]any{"latencyMs": aws.ToInt64(v.Value.Metrics.LatencyMs)}
		}
		return "metadata", m
	}
	return "", nil
}

// withBufferedBody is the per-call option that gives the transport a request
// body of its own on streaming calls (see awshttp.BufferedBody).
func withBufferedBody(o *bedrockruntime.Options) {
	if o.HTTPClient != nil {
		o.HTTPClient = awshttp.BufferedBody{Next: o.HTTPClient}
	}
}
