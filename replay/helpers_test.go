package replay_test

import (
	"context"
	"testing"
	"time"

	"github.com/meter-dev/meter/collector"
	"github.com/meter-dev/meter/internal/store"
)

func runConsumer(t testing.TB, cfg collector.Config) collector.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := collector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := c.Run(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

func getObject(t testing.TB, st store.Store, key string) []byte {
	t.Helper()
	data, err := store.ReadAll(context.Background(), st, key)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustConsumer(t testing.TB, cfg collector.Config) *collector.Consumer {
	t.Helper()
	c, err := collector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
