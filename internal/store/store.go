// Package store is the object store the pipeline writes: the embedded store on
// disk (file://DIR) and Amazon S3 (s3://BUCKET/PREFIX), with one key layout.
// Every Put is atomic: a reader sees the whole old object or the whole new one,
// never a part, so a crash mid-write leaves no half file.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrNotFound reports a key that does not exist.
var ErrNotFound = errors.New("object not found")

// Object describes a stored object.
type Object struct {
	Key  string
	Size int64
}

// Store is the object store.
type Store interface {
	// Put writes body under key atomically, replacing any previous object.
	Put(ctx context.Context, key string, body io.Reader) error
	// Get opens key; the error wraps ErrNotFound when it does not exist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Getter is the read side of a Store: what a reader of whole objects needs.
type Getter interface {
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// ReadAll reads the object at key whole. The error names the key and wraps
// ErrNotFound when the object does not exist.
func ReadAll(ctx context.Context, st Getter, key string) ([]byte, error) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	return data, nil
}
