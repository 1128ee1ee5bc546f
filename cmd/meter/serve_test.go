package main

// TestServeHTTPSForTheAWSSDK starts `meter serve` in-process with
// --tls-cert/--tls-key on 127.0.0.1, in front of the local Bedrock server,
// and calls it with the official bedrockruntime client configured only by an
// app's environment: AWS_ENDPOINT_URL_BEDROCK_RUNTIME, AWS_BEARER_TOKEN_BEDROCK
// and AWS_CA_BUNDLE. meter's own Bedrock client keeps the endpoint it started
// with, whatever the app's variables say.

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/meter-dev/meter/internal/bedrocklocal"
	"github.com/meter-dev/meter/internal/stream"
	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/invoker/tenants"
	"github.com/meter-dev/meter/schemas"
)

func TestServeHTTPSForTheAWSSDK(t *testing.T) {
	dir := t.TempDir()
	model, err := bedrocklocal.New(bedrocklocal.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	ms := httptest.NewServer(model)
	defer ms.Close()
	tenantsFile := filepath.Join(dir, "tenants.yaml")
	key, err := tenants.AddTeam(tenantsFile, tenants.TeamSpec{ID: "search", CostCenter: "CC-1", AllowedModels: []string{"anthropic.*"}})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := testenv.SelfSignedCert(t, dir, "meter")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	// meter serve's own environment: Bedrock is the local server.
	t.Setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", ms.URL)
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", "")
	t.Setenv("AWS_REGION", "us-east-1")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--tenants", tenantsFile, "--stream", "file://" + filepath.Join(dir, "stream"),
			"--listen", addr, "--tls-cert", certFile, "--tls-key", keyFile, "--quiet"}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("meter serve exited %d: %s", code, stderr.String())
		}
	}()
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("meter serve did not start: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The app's environment.
	t.Setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "https://"+addr+"/bedrock")
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", key)
	t.Setenv("AWS_CA_BUNDLE", certFile)
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	br := bedrockruntime.NewFromConfig(cfg)
	out, err := br.Converse(context.Background(), &bedrockruntime.ConverseInput{ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"),
		Messages: []types.Message{{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "Hello there"}}}}})
	if err != nil {
		t.Fatalf("Converse through meter serve: %v\n%s", err, stderr.String())
	}
	if out.Usage == nil || aws.ToInt32(out.Usage.InputTokens) == 0 {
		t.Fatalf("no usage in the answer: %+v", out)
	}

	src, closeSrc, err := stream.OpenSource(context.Background(), "file://"+filepath.Join(dir, "stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer closeSrc()
	shards, err := src.Shards(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var events []schemas.Event
	for _, sh := range shards {
		it, err := src.Open(context.Background(), sh.ID, stream.Start{Kind: stream.TrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		recs, _ := it.Next(context.Background(), 100)
		it.Close()
		for _, r := range recs {
			e, err := schemas.ParseEvent(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, e)
		}
	}
	if len(events) != 1 || events[0].Operation != "Converse" || events[0].Status != schemas.StatusSuccess ||
		events[0].InputTokens != int64(aws.ToInt32(out.Usage.InputTokens)) || events[0].OutputTokens != int64(aws.ToInt32(out.Usage.OutputTokens)) {
		t.Fatalf("events %+v, want one Converse with the answer's tokens %d/%d", events, aws.ToInt32(out.Usage.InputTokens), aws.ToInt32(out.Usage.OutputTokens))
	}
}
