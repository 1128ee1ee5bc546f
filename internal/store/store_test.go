package store

// Tests of the file store (no servers) and the S3 store against versitygw,
// a real S3-API server started on 127.0.0.1 (see internal/testenv).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// chargebackCSV is the report storetest.Run writes, as it must read back.
const chargebackCSV = `day,team_id,cost_center,model_id,invocations,input_tokens,output_tokens,input_cost,output_cost,total_cost
2026-11-25,search,CC-1042,anthropic.claude-3-haiku-20240307-v1:0,1200,480000,96000,0.12,0.12,0.24
`

func put(t *testing.T, s Store, key, body string) {
	t.Helper()
	if err := s.Put(t.Context(), key, strings.NewReader(body)); err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
}

func get(t *testing.T, s Store, key string) string {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return string(b)
}

func keys(t *testing.T, s Store, prefix string) string {
	t.Helper()
	objs, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, fmt.Sprintf("%s:%d", o.Key, o.Size))
	}
	return strings.Join(out, " ")
}

// RunStoreContract is storetest.Run, the contract every Store keeps. This
// package's tests cannot import storetest (it imports store: an import
// cycle), so contract_test.go, in package store_test, sets it.
var RunStoreContract func(t *testing.T, s Store)

// testStoreContract checks what every Store promises, on an empty store; see
// storetest.Run for what it leaves there.
func testStoreContract(t *testing.T, s Store) {
	t.Helper()
	if RunStoreContract == nil {
		t.Fatal("RunStoreContract is unset: contract_test.go (package store_test) sets it to storetest.Run")
	}
	RunStoreContract(t, s)
}

var errBody = errors.New("body broke")

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errBody }

func TestOpenRejectsUnknownLocations(t *testing.T) {
	for _, uri := range []string{"gs://bucket/x", "/tmp/store", "file://", "s3://", "s3:///prefix", "kinesis://x", ""} {
		s, err := Open(context.Background(), uri)
		if err == nil {
			t.Errorf("Open(%q) = %T, want an error", uri, s)
			continue
		}
		if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), fmt.Sprintf("%q", uri)) {
			t.Errorf("Open(%q) error is not one line naming the location: %q", uri, err)
		}
	}
}

func readAllBytes(t *testing.T, s Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pseudoRandom(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
