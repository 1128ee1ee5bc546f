package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/meter-dev/meter/invoker/limits"
)

// openLimits opens --limits: memory (this process only) or
// dynamodb://TABLE[?lease=15m&unavailable=closed|open], shared by every
// instance that names the same table. The DynamoDB client takes region,
// credentials and endpoint (AWS_ENDPOINT_URL_DYNAMODB) the standard SDK way.
func openLimits(ctx context.Context, uri string, log *slog.Logger) (limits.Limits, func(), error) {
	if uri == "" || uri == "memory" {
		return limits.NewMemory(), func() {}, nil
	}
	table, lease, failOpen, err := limits.ParseURI(uri)
	if err != nil {
		return nil, nil, usagef("--limits: %v", err)
	}
	cfg, err := config.LoadDefaultConfig(ctx, localDefaults()...)
	if err != nil {
		return nil, nil, fmt.Errorf("loading AWS config: %w", err)
	}
	l, err := limits.NewDynamoDB(limits.DynamoDBConfig{Client: dynamodb.NewFromConfig(cfg), Table: table, Lease: lease, FailOpen: failOpen, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	switch err := l.Check(ctx); {
	case errors.Is(err, limits.ErrNoTable):
		return nil, nil, fmt.Errorf("--limits: %v", err)
	case err != nil:
		log.Warn("the limits table cannot be reached yet; calls of teams with quotas or budgets are refused until it can", "err", err)
	}
	return l, func() { l.Close() }, nil
}
