package bedrocklocal

// Integration tests: the server on 127.0.0.1 (httptest), the real
// bedrockruntime client; failures must reach the SDK as its typed errors.

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
)

const titanBody = `{"inputText":"how much did we spend"}`

func invokeErr(c *bedrockruntime.Client, model, body string) error {
	_, err := c.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(model), Body: []byte(body), ContentType: aws.String("application/json"),
	})
	return err
}

func status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func TestInjectedErrorsAreTyped(t *testing.T) {
	_, url := start(t, Config{})
	cases := []struct {
		kind   string
		status int
		is     func(error) bool
	}{
		{"ThrottlingException", 429, func(err error) bool { var e *types.ThrottlingException; return errors.As(err, &e) }},
		{"ValidationException", 400, func(err error) bool { var e *types.ValidationException; return errors.As(err, &e) }},
		{"AccessDeniedException", 403, func(err error) bool { var e *types.AccessDeniedException; return errors.As(err, &e) }},
		{"ModelNotReadyException", 429, func(err error) bool { var e *types.ModelNotReadyException; return errors.As(err, &e) }},
		{"ResourceNotFoundException", 404, func(err error) bool { var e *types.ResourceNotFoundException; return errors.As(err, &e) }},
		{"InternalServerException", 500, func(err error) bool { var e *types.InternalServerException; return errors.As(err, &e) }},
		{"ServiceUnavailableException", 503, func(err error) bool { var e *types.ServiceUnavailableException; return errors.As(err, &e) }},
		{"ModelTimeoutException", 408, func(err error) bool { var e *types.ModelTimeoutException; return errors.As(err, &e) }},
		{"ServiceQuotaExceededException", 400, func(err error) bool { var e *types.ServiceQuotaExceededException; return errors.As(err, &e) }},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			c := runtimeClient(url, withHeader(HeaderInjectError, tc.kind))
			err := invokeErr(c, "amazon.titan-text-express-v1", titanBody)
			if !tc.is(err) {
				t.Fatalf("InvokeModel: %v, want %s", err, tc.kind)
			}
			eq(t, "status", status(err), tc.status)

			_, err = c.Converse(context.Background(), converseInput("anthropic.claude-3-haiku-20240307-v1:0"))
			if !tc.is(err) {
				t.Errorf("Converse: %v, want %s", err, tc.kind)
			}
			_, err = c.ConverseStream(context.Background(), &bedrockruntime.ConverseStreamInput{
				ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"), Messages: converseInput("").Messages,
			})
			if !tc.is(err) {
				t.Errorf("ConverseStream: %v, want %s", err, tc.kind)
			}
		})
	}
}

func TestRealErrors(t *testing.T) {
	_, url := start(t, Config{})
	c := runtimeClient(url)
	var nf *types.ResourceNotFoundException
	if err := invokeErr(c, "anthropic.claude-nonexistent-v9", titanBody); !errors.As(err, &nf) || status(err) != 404 {
		t.Errorf("unknown model: %v, want ResourceNotFoundException 404", err)
	}
	var ve *types.ValidationException
	for name, body := range map[string]string{
		"not JSON":               `{"inputText":`,
		"wrong shape":            `{"prompt":"titan does not take prompt"}`,
		"empty prompt":           `{"inputText":"   "}`,
		"claude without version": `{"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`,
	} {
		model := "amazon.titan-text-express-v1"
		if name == "claude without version" {
			model = "anthropic.claude-3-haiku-20240307-v1:0"
		}
		if err := invokeErr(c, model, body); !errors.As(err, &ve) || status(err) != 400 {
			t.Errorf("%s: %v, want ValidationException 400", name, err)
		}
	}
}

func TestPromptMarkerInjects(t *testing.T) {
	_, url := start(t, Config{})
	c := runtimeClient(url)
	var te *types.ThrottlingException
	err := invokeErr(c, "meta.llama3-8b-instruct-v1:0", `{"prompt":"please [[meter-inject:ThrottlingException]] fail"}`)
	if !errors.As(err, &te) {
		t.Errorf("marker: %v, want ThrottlingException", err)
	}
	if err := invokeErr(c, "meta.llama3-8b-instruct-v1:0", `{"prompt":"please do not fail"}`); err != nil {
		t.Errorf("no marker: %v", err)
	}
}

func TestFailEvery(t *testing.T) {
	_, url := start(t, Config{FailEvery: 3, FailWith: "ModelNotReadyException"})
	c := runtimeClient(url)
	var got []bool
	for range 7 {
		err := invokeErr(c, "amazon.titan-text-express-v1", titanBody)
		var e *types.ModelNotReadyException
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("unexpected error %v", err)
		}
		got = append(got, err != nil)
	}
	eq(t, "failures", fmt.Sprint(got), fmt.Sprint([]bool{false, false, true, false, false, true, false}))
}

func TestErrorRatesRepeatWithSeed(t *testing.T) {
	run := func() string {
		_, url := start(t, Config{Seed: 7, ErrorRates: map[string]float64{"ThrottlingException": 0.3, "InternalServerException": 0.1}})
		c := runtimeClient(url)
		var out []byte
		for range 40 {
			err := invokeErr(c, "amazon.titan-text-express-v1", titanBody)
			var te *types.ThrottlingException
			var ie *types.InternalServerException
			switch {
			case err == nil:
				out = append(out, '.')
			case errors.As(err, &te):
				out = append(out, 'T')
			case errors.As(err, &ie):
				out = append(out, 'I')
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		return string(out)
	}
	a, b := run(), run()
	eq(t, "sequence of a second server with the same seed", b, a)
	var th, is int
	for _, c := range a {
		switch c {
		case 'T':
			th++
		case 'I':
			is++
		}
	}
	if th == 0 || is == 0 || th+is > 30 {
		t.Errorf("sequence %s does not look like 30%% throttling and 10%% internal errors", a)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"unknown FailWith":    {FailEvery: 2, FailWith: "NoSuchException"},
		"unknown rate kind":   {ErrorRates: map[string]float64{"Oops": 0.1}},
		"rates over 1":        {ErrorRates: map[string]float64{"ThrottlingException": 0.7, "InternalServerException": 0.4}},
		"extra model outside": {ExtraModels: []string{"acme.rocket-v1"}},
		"profile to no model": {ApplicationProfiles: map[string]string{"p": "anthropic.claude-99"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestModelStreamErrorMidStream(t *testing.T) {
	_, url := start(t, Config{})
	c := runtimeClient(url, withHeader(HeaderInjectError, "ModelStreamErrorException"))

	out, err := c.ConverseStream(context.Background(), &bedrockruntime.ConverseStreamInput{
		ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"), Messages: converseInput("").Messages,
	})
	if err != nil {
		t.Fatalf("ConverseStream: %v (the failure belongs inside the stream)", err)
	}
	stream := out.GetStream()
	deltas := 0
	for ev := range stream.Events() {
		if _, ok := ev.(*types.ConverseStreamOutputMemberContentBlockDelta); ok {
			deltas++
		}
		if _, ok := ev.(*types.ConverseStreamOutputMemberMetadata); ok {
			t.Error("metadata after a stream error")
		}
	}
	stream.Close()
	var mse *types.ModelStreamErrorException
	if !errors.As(stream.Err(), &mse) {
		t.Errorf("stream error %v, want ModelStreamErrorException", stream.Err())
	}
	if deltas == 0 {
		t.Error("no deltas before the stream error")
	}

	chunks, err := streamChunks(t, c, "meta.llama3-8b-instruct-v1:0", `{"prompt":"Explain rate limits"}`)
	if !errors.As(err, &mse) {
		t.Errorf("response stream error %v, want ModelStreamErrorException", err)
	}
	if len(chunks) == 0 {
		t.Error("no chunks before the stream error")
	}
}
