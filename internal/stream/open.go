package stream

import (
	"context"
	"fmt"
	"strings"
)

// Stream is a stream opened by location: it appends, it reads, and Close
// releases what it holds.
type Stream interface {
	Producer
	Source
	Close() error
}

// OpenURI opens the stream a location names: file://DIR (created if missing)
// or kinesis://NAME.
func OpenURI(ctx context.Context, uri string) (Stream, error) {
	switch {
	case strings.HasPrefix(uri, "file://"):
		dir := strings.TrimPrefix(uri, "file://")
		if dir == "" {
			return nil, fmt.Errorf("stream %q: file:// needs a directory, as in file:///var/lib/meter/stream or file://./stream", uri)
		}
		return OpenFile(dir, FileOptions{})
	case strings.HasPrefix(uri, "kinesis://"):
		return nil, fmt.Errorf("stream %q: kinesis:// not yet supported", uri)
	default:
		return nil, fmt.Errorf("stream %q: unsupported location, want file://DIR or kinesis://NAME", uri)
	}
}
