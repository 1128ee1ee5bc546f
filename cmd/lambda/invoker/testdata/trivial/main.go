// Command trivial is the floor the invoker Lambda is measured against under
// the runtime interface emulator: the same API Gateway event in and answer
// out, one plain HTTP call to the model, a key hash, and one usage line
// appended to a file. It is built only by the Lambda-path benchmark.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"sync"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

var (
	model  = os.Getenv("MODEL_URL")
	mu     sync.Mutex
	usage  *os.File
	client = &http.Client{}
)

func handler(ctx context.Context, ev events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	sum := sha256.Sum256([]byte(ev.Headers["x-api-key"]))
	var in struct {
		Inputs string `json:"inputs"`
	}
	if err := json.Unmarshal([]byte(ev.Body), &in); err != nil {
		return events.APIGatewayProxyResponse{StatusCode: 400, Body: err.Error()}, nil
	}
	body, _ := json.Marshal(map[string]any{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
		"messages": []any{map[string]any{"role": "user", "content": in.Inputs}}})
	resp, err := client.Post(model+"/model/"+ev.QueryStringParameters["model_id"]+"/invoke", "application/json", bytes.NewReader(body))
	if err != nil {
		return events.APIGatewayProxyResponse{StatusCode: 502, Body: err.Error()}, nil
	}
	var out struct {
		Content []struct{ Text string } `json:"content"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	line, _ := json.Marshal(map[string]any{"request_id": resp.Header.Get("X-Amzn-RequestId"), "key": hex.EncodeToString(sum[:8]),
		"input_tokens": resp.Header.Get("X-Amzn-Bedrock-Input-Token-Count")})
	mu.Lock()
	usage.Write(append(line, '\n'))
	mu.Unlock()
	text := ""
	if len(out.Content) > 0 {
		text = out.Content[0].Text
	}
	answer, _ := json.Marshal([]map[string]string{{"generated_text": text}})
	return events.APIGatewayProxyResponse{StatusCode: 200, Body: string(answer), Headers: map[string]string{"Content-Type": "application/json"}}, nil
}

func main() {
	var err error
	if usage, err = os.Create(os.Getenv("USAGE_FILE")); err != nil {
		panic(err)
	}
	lambda.Start(handler)
}
