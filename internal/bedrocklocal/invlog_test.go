package bedrocklocal

// Integration test: the server on 127.0.0.1 (httptest) called with the real
// bedrockruntime client carrying request metadata; its invocation logs read
// back from disk as gzipped JSON lines.

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"

	"github.com/meter-dev/meter/schemas"
)

func TestRequestMetadataInInvocationLogs(t *testing.T) {
	dir := t.TempDir()
	srv, url := start(t, Config{InvocationLogDir: dir})
	c := runtimeClient(url)
	md := `{"team_id":"team-a","cost_center":"cc-1","event_id":"ev-1"}`
	body := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":100,
		"system":[{"type":"text","text":"You are the finance assistant of the platform team","cache_control":{"type":"ephemeral"}}],
		"messages":[{"role":"user","content":[{"type":"text","text":"How much did we spend"}]}]}`
	out, err := c.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
		ModelId: aws.String("us.anthropic.claude-3-5-haiku-20241022-v1:0"), Body: []byte(body), RequestMetadata: aws.String(md),
	})
	if err != nil {
		t.Fatal(err)
	}
	invokeID, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	cv, err := c.Converse(context.Background(), &bedrockruntime.ConverseInput{
		ModelId:         aws.String("amazon.titan-text-express-v1"),
		Messages:        []types.Message{{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "hello there"}}}},
		RequestMetadata: map[string]string{"team_id": "team-b", "event_id": "ev-2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	converseID, _ := awsmiddleware.GetRequestIDMetadata(cv.ResultMetadata)

	// Bedrock's rules: a JSON object of strings, at most 16 pairs, a limited alphabet.
	for name, bad := range map[string]string{"not JSON": "{", "not strings": `{"a":1}`, "bad characters": `{"a":"<script>"}`} {
		_, err := c.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
			ModelId: aws.String("amazon.titan-text-express-v1"), Body: []byte(titanBody), RequestMetadata: aws.String(bad),
		})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationException" {
			t.Errorf("%s metadata: %v, want ValidationException", name, err)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	recs := map[string]schemas.InvocationLog{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !strings.Contains(path, "/AWSLogs/123456789012/BedrockModelInvocationLogs/us-east-1/") || !strings.HasSuffix(path, ".json.gz") {
			t.Errorf("log object at %s", path)
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(zr)
		for sc.Scan() {
			var r schemas.InvocationLog
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				return err
			}
			recs[r.RequestID] = r
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Errorf("%d log records, want 5 (2 served, 3 refused)", len(recs))
	}
	inv := recs[invokeID]
	if inv.SchemaType != "ModelInvocationLog" || inv.Operation != "InvokeModel" || inv.ModelID != "us.anthropic.claude-3-5-haiku-20241022-v1:0" {
		t.Errorf("InvokeModel record %+v", inv)
	}
	if inv.RequestMetadata["event_id"] != "ev-1" || inv.RequestMetadata["team_id"] != "team-a" || inv.RequestMetadata["cost_center"] != "cc-1" {
		t.Errorf("InvokeModel metadata %v", inv.RequestMetadata)
	}
	if inv.Input.InputTokenCount == nil || *inv.Input.InputTokenCount != 5 || inv.Input.CacheWriteInputTokenCount == nil || *inv.Input.CacheWriteInputTokenCount != 9 || inv.Output.OutputTokenCount == nil {
		t.Errorf("InvokeModel token counts %+v %+v", inv.Input, inv.Output)
	}
	cr := recs[converseID]
	if cr.RequestMetadata["team_id"] != "team-b" || cr.Output.OutputTokenCount == nil || int32(*cr.Output.OutputTokenCount) != aws.ToInt32(cv.Usage.OutputTokens) {
		t.Errorf("Converse record %+v", cr)
	}
}
