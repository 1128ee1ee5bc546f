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

// ParseObjectURI splits s3://BUCKET/KEY into the store location that holds the
// object (s3://BUCKET/DIR) and the object's key within it.
func ParseObjectURI(uri string) (storeURI, key string, err error) {
	rest, ok := strings.CutPrefix(uri, "s3://")
	i := strings.LastIndex(rest, "/")
	if !ok || i <= 0 || i == len(rest)-1 || strings.HasPrefix(rest, "/") {
		return "", "", fmt.Errorf("%q: want s3://BUCKET/KEY", uri)
	}
	return "s3://" + rest[:i], rest[i+1:], nil
}
