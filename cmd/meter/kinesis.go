package main

import (
	"context"

	"github.com/meter-dev/meter/internal/stream"
)

// openKinesis opens kinesis://NAME with the SDK's standard configuration
// (AWS_REGION, AWS_ENDPOINT_URL_KINESIS, credentials).
func openKinesis(ctx context.Context, name string) (*streamHandle, error) {
	if name == "" {
		return nil, usagef("stream kinesis://: want kinesis://STREAM_NAME")
	}
	client, err := stream.NewKinesisClient(ctx)
	if err != nil {
		return nil, err
	}
	src, err := stream.OpenKinesis(ctx, client, name)
	if err != nil {
		return nil, err
	}
	prod := stream.NewKinesisProducer(client, name, stream.KinesisProducerOptions{})
	return &streamHandle{Producer: prod, Source: src, close: func() error { return nil }}, nil
}
