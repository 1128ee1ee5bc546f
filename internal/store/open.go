package store

import (
	"context"
	"fmt"
	"strings"
)

// Open returns the store a location names: file://DIR or s3://BUCKET/PREFIX.
func Open(ctx context.Context, uri string) (Store, error) {
	switch {
	case strings.HasPrefix(uri, "file://"):
		dir := strings.TrimPrefix(uri, "file://")
		if dir == "" {
			return nil, fmt.Errorf("store %q: file:// needs a directory, as in file:///var/lib/meter or file://./data", uri)
		}
		return OpenFile(dir)
	case strings.HasPrefix(uri, "s3://"):
		bucket, prefix, _ := strings.Cut(strings.TrimPrefix(uri, "s3://"), "/")
		if bucket == "" {
			return nil, fmt.Errorf("store %q: s3:// needs a bucket, as in s3://BUCKET/PREFIX", uri)
		}
		return OpenS3(ctx, bucket, prefix, S3Options{})
	default:
		return nil, fmt.Errorf("store %q: unsupported location, want file://DIR or s3://BUCKET/PREFIX", uri)
	}
}
