package store

// Runs against versitygw, a real S3-API server started on 127.0.0.1 by
// testenv.StartVersityGW (skipped, loudly, when it is not installed).

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/meter-dev/meter/internal/testenv"
	"github.com/meter-dev/meter/schemas"
)

func TestS3StoreContract(t *testing.T) {
	gw := testenv.StartVersityGW(t)
	gw.SetEnv(t)
	// Through Open, as the CLI does: endpoint, region and keys from the environment.
	s, err := Open(t.Context(), gw.URI("meter/prod"))
	if err != nil {
		t.Fatal(err)
	}
	if p := s.(*S3Store).Prefix(); p != "meter/prod/" {
		t.Errorf("prefix %q", p)
	}
	testStoreContract(t, s)

	// Keys live under the prefix in the bucket, and nothing else is there.
	out, err := gw.Client().ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(gw.Bucket())})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out.Contents {
		if !strings.HasPrefix(aws.ToString(o.Key), "meter/prod/") {
			t.Errorf("object %s outside the store's prefix", aws.ToString(o.Key))
		}
	}
	if len(out.Contents) != 7 {
		t.Errorf("%d objects in the bucket, want 7", len(out.Contents))
	}
}

// countingTransport counts the HTTP requests an S3 client sends, by kind.
type countingTransport struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	kind := r.Method
	q := r.URL.Query()
	switch {
	case q.Has("list-type"):
		kind = "list"
	case q.Has("uploads"):
		kind = "create-multipart"
	case q.Has("partNumber"):
		kind = "upload-part"
	case q.Has("uploadId") && r.Method == http.MethodPost:
		kind = "complete-multipart"
	}
	c.mu.Lock()
	c.counts[kind]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) get(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[kind]
}

func countingClient(gw *testenv.VersityGW) (*s3.Client, *countingTransport) {
	ct := &countingTransport{counts: map[string]int{}}
	return s3.New(s3.Options{
		Region:       testenv.LocalRegion,
		BaseEndpoint: aws.String(gw.Endpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider(testenv.LocalAccessKey, testenv.LocalSecretKey, ""),
		UsePathStyle: true,
		HTTPClient:   &http.Client{Transport: ct},
	}), ct
}

func TestS3StoreLargeBodyGoesMultipart(t *testing.T) {
	gw := testenv.StartVersityGW(t)
	client, ct := countingClient(gw)
	s := NewS3(client, gw.Bucket(), "", S3Options{})
	const key = "daily/dt=2026-11-25/part-0.parquet"
	body := pseudoRandom(11<<20 + 12345) // 11 MiB and a bit: three 5 MiB parts

	// A non-seekable body, as a Parquet writer's pipe would be.
	if err := s.Put(t.Context(), key, struct{ io.Reader }{bytes.NewReader(body)}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if ct.get("create-multipart") != 1 || ct.get("upload-part") != 3 || ct.get("complete-multipart") != 1 {
		t.Errorf("requests: %v; want one multipart upload of 3 parts", ct.counts)
	}
	got := readAllBytes(t, s, key)
	if sha256.Sum256(got) != sha256.Sum256(body) {
		t.Fatalf("read back %d bytes that differ from the %d written", len(got), len(body))
	}
	head, err := client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(gw.Bucket()), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	if etag := aws.ToString(head.ETag); !strings.HasSuffix(strings.Trim(etag, `"`), "-3") {
		t.Errorf("ETag %s is not a 3-part multipart ETag", etag)
	}
	if objs, _ := s.List(t.Context(), "daily/"); len(objs) != 1 || objs[0].Size != int64(len(body)) {
		t.Errorf("List: %+v", objs)
	}

	// A small body is one PUT.
	before := ct.get(http.MethodPut)
	put(t, s, "chargeback/dt=2026-11-25/chargeback-2026-11-25.csv", chargebackCSV)
	if ct.get(http.MethodPut) != before+1 || ct.get("create-multipart") != 1 {
		t.Errorf("small body: requests %v", ct.counts)
	}

	// A multipart upload whose body fails part way leaves no object and no parts.
	failing := struct{ io.Reader }{io.MultiReader(bytes.NewReader(body[:7<<20]), failingReader{})}
	if err := s.Put(t.Context(), "daily/dt=2026-11-26/part-0.parquet", failing); !errors.Is(err, errBody) {
		t.Errorf("Put with a failing body = %v", err)
	}
	if _, err := s.Get(t.Context(), "daily/dt=2026-11-26/part-0.parquet"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after a failed upload = %v", err)
	}
	ups, err := client.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(gw.Bucket())})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Errorf("%d multipart uploads left open", len(ups.Uploads))
	}
}

func TestS3StoreListPaginates(t *testing.T) {
	gw := testenv.StartVersityGW(t)
	client, ct := countingClient(gw)
	s := NewS3(client, gw.Bucket(), "team-a", S3Options{PageSize: 2})
	other := NewS3(client, gw.Bucket(), "team-b/", S3Options{PageSize: 2})
	var want []string
	for _, day := range []string{"2026-11-24", "2026-11-25", "2026-11-26"} {
		for _, part := range []string{"part-1.parquet", "part-0.parquet"} {
			k := schemas.Partition(schemas.EventsPrefix, day) + part
			put(t, s, k, day)
			want = append(want, k+":10")
		}
	}
	put(t, s, "usage_windows/dt=2026-11-25/w.parquet", "w")
	put(t, other, "events/dt=2026-11-25/part-9.parquet", "other team")
	// Sorted: part-0 before part-1 within each day.
	for i := 0; i < len(want); i += 2 {
		want[i], want[i+1] = want[i+1], want[i]
	}

	before := ct.get("list")
	if got := keys(t, s, "events/"); got != strings.Join(want, " ") {
		t.Errorf("List(events/)\n got %s\nwant %s", got, strings.Join(want, " "))
	}
	if n := ct.get("list") - before; n != 3 {
		t.Errorf("6 keys at 2 a page took %d list calls, want 3", n)
	}
	if got := keys(t, s, ""); strings.Count(got, " ")+1 != 7 || strings.Contains(got, "part-9") {
		t.Errorf("List of the whole store: %s", got)
	}
	if got := keys(t, other, ""); got != "events/dt=2026-11-25/part-9.parquet:10" {
		t.Errorf("the other prefix lists %s", got)
	}
	if got := keys(t, s, "events/dt=2026-11-25/"); got != "events/dt=2026-11-25/part-0.parquet:10 events/dt=2026-11-25/part-1.parquet:10" {
		t.Errorf("List of one day: %s", got)
	}
}
