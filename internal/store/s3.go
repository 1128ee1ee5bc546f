package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Options tunes an S3Store; the zero value is the SDK's defaults.
type S3Options struct {
	// PartSize is the multipart upload part size; bodies larger than it go
	// up in parts. Zero means the SDK's 5 MiB, S3's minimum.
	PartSize int64
	// PageSize is how many keys one ListObjectsV2 call asks for (at most 1000).
	PageSize int32
}

// S3Store keeps objects in an S3 bucket under a key prefix. A PUT, single or
// multipart, is atomic per object in S3, which is what Store.Put promises.
type S3Store struct {
	client   *s3.Client
	uploader *manager.Uploader
	bucket   string
	prefix   string // "" or ending in "/"
	opts     S3Options
}

// OpenS3 returns the store at s3://bucket/prefix with the SDK's default
// configuration: AWS_REGION, credentials, and AWS_ENDPOINT_URL_S3 or
// AWS_ENDPOINT_URL for a local server (then with path-style addressing).
func OpenS3(ctx context.Context, bucket, prefix string, opts S3Options) (*S3Store, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("s3 store: loading AWS configuration: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		// Local S3 servers are reached by address, not by bucket subdomain.
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true
		}
	})
	return NewS3(client, bucket, prefix, opts), nil
}

// NewS3 returns the store at s3://bucket/prefix using client.
func NewS3(client *s3.Client, bucket, prefix string, opts S3Options) *S3Store {
	prefix = strings.TrimLeft(prefix, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	uploader := manager.NewUploader(client, func(u *manager.Uploader) {
		if opts.PartSize > 0 {
			u.PartSize = opts.PartSize
		}
	})
	return &S3Store{client: client, uploader: uploader, bucket: bucket, prefix: prefix, opts: opts}
}

// Bucket returns the store's bucket.
func (s *S3Store) Bucket() string { return s.bucket }

// Prefix returns the key prefix under which the store keeps its objects: empty or ending in "/".
func (s *S3Store) Prefix() string { return s.prefix }

func (s *S3Store) where(key string) string { return "s3://" + s.bucket + "/" + s.prefix + key }

// Put uploads body under key, in parts when it is larger than the part size.
// A failed multipart upload is aborted, so no part is left behind.
func (s *S3Store) Put(ctx context.Context, key string, body io.Reader) error {
	if key == "" {
		return errors.New("s3 store: putting: empty key")
	}
	_, err := s.uploader.Upload(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
		Body:   body,
	})
	if err != nil {
		return fmt.Errorf("s3 store: putting %s: %w", s.where(key), err)
	}
	return nil
}

// Get opens key; the error wraps ErrNotFound when there is no such object.
func (s *S3Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("s3 store: getting %s: %w", s.where(key), ErrNotFound)
		}
		return nil, fmt.Errorf("s3 store: getting %s: %w", s.where(key), err)
	}
	return out.Body, nil
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return true
	}
	var nf *types.NotFound
	if errors.As(err, &nf) {
		return true
	}
	var api smithy.APIError
	return errors.As(err, &api) && (api.ErrorCode() == "NoSuchKey" || api.ErrorCode() == "NotFound")
}

// List returns the objects whose keys start with prefix, sorted by key,
// reading every page of ListObjectsV2.
func (s *S3Store) List(ctx context.Context, prefix string) ([]Object, error) {
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + prefix),
	}
	if s.opts.PageSize > 0 {
		in.MaxKeys = aws.Int32(s.opts.PageSize)
	}
	var out []Object
	pages := s3.NewListObjectsV2Paginator(s.client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3 store: listing %s: %w", s.where(prefix), err)
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			out = append(out, Object{Key: key, Size: aws.ToInt64(o.Size)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes key; S3 answers a missing key like a deleted one.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("s3 store: deleting %s: %w", s.where(key), err)
	}
	return nil
}

var _ Store = (*S3Store)(nil)
