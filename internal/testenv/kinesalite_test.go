// Servers: kinesalite (local Kinesis, Node.js) on 127.0.0.1.
package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

func TestKinesaliteRestartKeepsPort(t *testing.T) {
	k := StartKinesalite(t)
	port := k.Port()
	k.CreateStream(t, "usage", 2)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := k.Client().PutRecord(ctx, &kinesis.PutRecordInput{
		StreamName: aws.String("usage"), PartitionKey: aws.String("req-1"), Data: []byte("x"),
	}); err != nil {
		t.Fatalf("put: %v", err)
	}

	k.Stop()
	callCtx, c := context.WithTimeout(ctx, 2*time.Second)
	_, err := k.Client().ListStreams(callCtx, &kinesis.ListStreamsInput{})
	c()
	if err == nil {
		t.Fatal("stopped server still answers")
	}

	k.Restart()
	if k.Port() != port {
		t.Fatalf("port after restart = %d, want %d", k.Port(), port)
	}
	out, err := k.Client().ListStreams(ctx, &kinesis.ListStreamsInput{})
	if err != nil {
		t.Fatalf("list after restart: %v", err)
	}
	if len(out.StreamNames) != 0 {
		t.Fatalf("streams after restart = %v, want none (in-memory server)", out.StreamNames)
	}
	k.CreateStream(t, "usage", 2)
}

func TestFindNodeModulesFromEnv(t *testing.T) {
	t.Setenv("METER_NODE_MODULES", t.TempDir())
	if _, err := findNodeModules("kinesalite"); err == nil {
		t.Fatal("found kinesalite in an empty directory")
	}
}
