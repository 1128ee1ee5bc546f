package bedrocklocal

// Integration test: the server on 127.0.0.1 (httptest), the SDK clients
// configured only by environment variables, as meter serve configures them.

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
)

func TestEndpointFromEnvironment(t *testing.T) {
	_, url := start(t, Config{})
	empty := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url,
		"AWS_ENDPOINT_URL_CLOUDTRAIL":      url,
		"AWS_REGION":                       "us-west-2",
		"AWS_ACCESS_KEY_ID":                "AKIDFROMENVIRONMENT1",
		"AWS_SECRET_ACCESS_KEY":            "secret",
		"AWS_CONFIG_FILE":                  empty,
		"AWS_SHARED_CREDENTIALS_FILE":      empty,
		"AWS_PROFILE":                      "",
	} {
		t.Setenv(k, v)
	}
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, err := bedrockruntime.NewFromConfig(cfg).Converse(context.Background(), converseInput("anthropic.claude-3-haiku-20240307-v1:0"))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "inputTokens", aws.ToInt32(out.Usage.InputTokens), 8)

	ev, err := cloudtrail.NewFromConfig(cfg).LookupEvents(context.Background(), &cloudtrail.LookupEventsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Events) != 1 {
		t.Fatalf("%d events", len(ev.Events))
	}
	eq(t, "AccessKeyId", aws.ToString(ev.Events[0].AccessKeyId), "AKIDFROMENVIRONMENT1")
	eq(t, "request id", requestID(out.ResultMetadata) != "", true)
}
