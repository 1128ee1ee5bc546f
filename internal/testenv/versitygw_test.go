package testenv

// Starts versitygw (the local S3 server) on 127.0.0.1.

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestVersityGWServesS3(t *testing.T) {
	g := StartVersityGW(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := g.Client()
	body := []byte(`{"request_id":"req-1"}`)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(g.Bucket()), Key: aws.String("events/a.json"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(g.Bucket()), Key: aws.String("events/a.json")})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("read back %q, want %q", got, body)
	}
	// The posix backend keeps the object as a plain file.
	if b, err := os.ReadFile(filepath.Join(g.Dir(), g.Bucket(), "events", "a.json")); err != nil || !bytes.Equal(b, body) {
		t.Errorf("backend file: %q, %v", b, err)
	}
	g.stop()
	if _, err := c.ListBuckets(ctx, &s3.ListBucketsInput{}); err == nil {
		t.Errorf("server still answers after stop")
	}
}
