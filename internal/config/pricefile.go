package config

import (
	"bytes"
	"context"
	"fmt"

	"github.com/meter-dev/meter/aggregator/pricing"
)

// PriceFile loads the price book a location names, as Prices does, and also
// returns the file's bytes (the shipped file's for an empty location), for
// an engine that reads the prices itself, such as Athena.
func PriceFile(ctx context.Context, loc string) (*pricing.Book, []byte, error) {
	if loc == "" {
		return pricing.Default(), pricing.DefaultCSV(), nil
	}
	data, err := Read(ctx, loc)
	if err != nil {
		return nil, nil, fmt.Errorf("price file: %w", err)
	}
	b, err := pricing.Parse(bytes.NewReader(data), loc)
	if err != nil {
		return nil, nil, fmt.Errorf("price file %s: %w", loc, err)
	}
	return b, data, nil
}
