package invoker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"

	"github.com/meter-dev/meter/invoker"
)

// TestBedrockClientMakesOneAttempt: a Bedrock attempt is a call with its own
// request id and CloudTrail record, so the client never retries one itself,
// even when the configuration asks for retries (the Lambda takes the
// environment's). A throttled or failed call goes back to the caller.
func TestBedrockClientMakesOneAttempt(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("x-amzn-ErrorType", "ThrottlingException")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"message":"Too many requests, please wait before trying again."}`))
	}))
	defer srv.Close()
	t.Setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", srv.URL)
	br, err := invoker.NewBedrockClient(context.Background(), config.WithRegion("us-east-1"), config.WithRetryMaxAttempts(5),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDLOCAL", "local", "")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = br.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"),
		Body: []byte(`{"messages":[]}`), ContentType: aws.String("application/json")})
	if err == nil {
		t.Fatal("a throttled call succeeded")
	}
	if n := requests.Load(); n != 1 {
		t.Fatalf("the client sent %d requests for one call, want 1", n)
	}
}
