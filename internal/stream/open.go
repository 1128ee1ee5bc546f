package stream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A location names a stream: kinesis://NAME or the embedded file://DIR.

// OpenProducer opens a location for appending. For Kinesis it only builds the
// client (standard SDK configuration: AWS_REGION, AWS_ENDPOINT_URL_KINESIS,
// credentials), so opening does not fail while Kinesis is unreachable; a file
// stream is created if missing. close releases what the producer holds.
func OpenProducer(ctx context.Context, uri string) (p Producer, close func() error, err error) {
	kind, rest, err := parseLocation(uri)
	if err != nil {
		return nil, nil, err
	}
	if kind == "kinesis" {
		client, err := NewKinesisClient(ctx)
		if err != nil {
			return nil, nil, err
		}
		return NewKinesisProducer(client, rest, KinesisProducerOptions{}), func() error { return nil }, nil
	}
	fs, err := OpenFile(rest, FileOptions{})
	if err != nil {
		return nil, nil, err
	}
	return fs, fs.Close, nil
}

// OpenSource opens a location for reading. A file stream must exist already
// (nothing is created or repaired by a reader).
func OpenSource(ctx context.Context, uri string) (s Source, close func() error, err error) {
	kind, rest, err := parseLocation(uri)
	if err != nil {
		return nil, nil, err
	}
	if kind == "kinesis" {
		client, err := NewKinesisClient(ctx)
		if err != nil {
			return nil, nil, err
		}
		src, err := OpenKinesis(ctx, client, rest)
		if err != nil {
			return nil, nil, err
		}
		return src, func() error { return nil }, nil
	}
	if _, err := os.Stat(filepath.Join(rest, metaName)); errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("stream %q: no stream there (nothing was put yet?)", uri)
	}
	fs, err := OpenFile(rest, FileOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, err
	}
	return fs, fs.Close, nil
}

// ErrBadLocation reports a location that is neither kinesis://NAME nor file://DIR.
var ErrBadLocation = errors.New("want file://DIR or kinesis://STREAM_NAME")

func parseLocation(uri string) (kind, rest string, err error) {
	switch {
	case strings.HasPrefix(uri, "kinesis://") && len(uri) > len("kinesis://"):
		return "kinesis", strings.TrimPrefix(uri, "kinesis://"), nil
	case strings.HasPrefix(uri, "file://") && len(uri) > len("file://"):
		return "file", strings.TrimPrefix(uri, "file://"), nil
	}
	return "", "", fmt.Errorf("stream %q: %w", uri, ErrBadLocation)
}
