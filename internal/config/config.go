// Package config reads the files an operator configures meter with (price
// files, tenant registries) from wherever they are named: a local path,
// file://PATH or s3://BUCKET/KEY. The CLI and every Lambda read them here, so
// a location that works for one works for all.
package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/meter-dev/meter/aggregator/pricing"
	"github.com/meter-dev/meter/internal/store"
)

// Read reads one whole file that configuration names: a local path,
// file://PATH or s3://BUCKET/KEY. Price files and tenant registries are read
// this way wherever they are configured, on the command line or in Lambda.
func Read(ctx context.Context, loc string) ([]byte, error) {
	if !strings.HasPrefix(loc, "s3://") {
		data, err := os.ReadFile(strings.TrimPrefix(loc, "file://"))
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is in the message already
			}
			return nil, fmt.Errorf("reading %s: %w", loc, err)
		}
		return data, nil
	}
	storeURI, key, err := store.ParseObjectURI(loc)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, storeURI)
	if err != nil {
		return nil, err
	}
	data, err := store.ReadAll(ctx, st, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	return data, nil
}

// Prices loads the price book a location names; an empty location is the
// shipped price file.
func Prices(ctx context.Context, loc string) (*pricing.Book, error) {
	if loc == "" {
		return pricing.Default(), nil
	}
	data, err := Read(ctx, loc)
	if err != nil {
		return nil, fmt.Errorf("price file: %w", err)
	}
	b, err := pricing.Parse(bytes.NewReader(data), loc)
	if err != nil {
		return nil, fmt.Errorf("price file %s: %w", loc, err)
	}
	return b, nil
}
