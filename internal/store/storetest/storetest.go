// Package storetest is the contract every store.Store keeps, as a test
// suite: Run writes, overwrites, reads, lists, and deletes objects under the
// pipeline's key layout on an empty store. It checks atomic replacement
// (a Put whose body fails leaves the old object whole), ErrNotFound for
// missing keys, recursive sorted listing by plain string prefix, idempotent
// Delete and empty objects. The file store, S3 and prefixed views are held to
// it in package store's tests, and any other Store (a fake in another
// package's tests, a new backend) can be too.
package storetest

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// chargebackCSV is the chargeback report Run writes (package store's tests
// check it on disk under the same name).
const chargebackCSV = `day,team_id,cost_center,model_id,invocations,input_tokens,output_tokens,input_cost,output_cost,total_cost
2026-11-25,search,CC-1042,anthropic.claude-3-haiku-20240307-v1:0,1200,480000,96000,0.12,0.12,0.24
`

// Run checks what every Store promises. s must be empty; Run leaves these
// 7 objects in it, for callers that check where they landed:
//
//	_checkpoints/aggregator/shardId-000000000000
//	chargeback/dt=2026-11-25/chargeback-2026-11-25.csv
//	chargeback/dt=2026-11-25/manifest.json
//	events-old/x
//	events/dt=2026-11-25/part-b.parquet
//	events/dt=2026-11-26/part-a.parquet
//	quarantine/dt=2026-11-25/empty
func Run(t *testing.T, s store.Store) {
	ctx := t.Context()
	day := schemas.Partition(schemas.ChargebackPrefix, "2026-11-25")
	put(t, s, day+"chargeback-2026-11-25.csv", chargebackCSV)
	if got := get(t, s, day+"chargeback-2026-11-25.csv"); got != chargebackCSV {
		t.Fatalf("read back %q", got)
	}

	// Overwrite replaces the whole object.
	put(t, s, day+"manifest.json", `{"rows":1,"price_version":"2026-11-01","inputs":["daily/dt=2026-11-25/part-0.parquet"]}`)
	put(t, s, day+"manifest.json", `{"rows":2}`)
	if got := get(t, s, day+"manifest.json"); got != `{"rows":2}` {
		t.Fatalf("after overwrite: %q", got)
	}

	// Missing keys wrap ErrNotFound.
	for _, k := range []string{"chargeback/dt=2026-11-26/chargeback-2026-11-26.csv", "chargeback", "nope"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", k, err)
		}
	}

	// List: recursive, sorted by key, filtered by a plain string prefix.
	put(t, s, schemas.Partition(schemas.EventsPrefix, "2026-11-25")+"part-b.parquet", "bb")
	put(t, s, schemas.Partition(schemas.EventsPrefix, "2026-11-25")+"part-a.parquet", "a")
	put(t, s, schemas.Partition(schemas.EventsPrefix, "2026-11-26")+"part-a.parquet", "ccc")
	put(t, s, "events-old/x", "dddd")
	put(t, s, "_checkpoints/aggregator/shardId-000000000000", "00000000000000000042")
	for _, c := range []struct{ prefix, want string }{
		{"events/dt=2026-11-25/", "events/dt=2026-11-25/part-a.parquet:1 events/dt=2026-11-25/part-b.parquet:2"},
		{"events/dt=2026-11-2", "events/dt=2026-11-25/part-a.parquet:1 events/dt=2026-11-25/part-b.parquet:2 events/dt=2026-11-26/part-a.parquet:3"},
		{"events", "events-old/x:4 events/dt=2026-11-25/part-a.parquet:1 events/dt=2026-11-25/part-b.parquet:2 events/dt=2026-11-26/part-a.parquet:3"},
		{"events/dt=2026-11-25/part-b", "events/dt=2026-11-25/part-b.parquet:2"},
		{"daily/", ""},
		{"nothing/here/", ""},
		{"", "_checkpoints/aggregator/shardId-000000000000:20 chargeback/dt=2026-11-25/chargeback-2026-11-25.csv:" + fmt.Sprint(len(chargebackCSV)) +
			" chargeback/dt=2026-11-25/manifest.json:10 events-old/x:4 events/dt=2026-11-25/part-a.parquet:1 events/dt=2026-11-25/part-b.parquet:2 events/dt=2026-11-26/part-a.parquet:3"},
	} {
		if got := keys(t, s, c.prefix); got != c.want {
			t.Errorf("List(%q)\n got %s\nwant %s", c.prefix, got, c.want)
		}
	}

	// Delete: the object goes; a missing key is not an error.
	if err := s.Delete(ctx, "events/dt=2026-11-25/part-a.parquet"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(ctx, "events/dt=2026-11-25/part-a.parquet"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	if err := s.Delete(ctx, "events/dt=2026-11-24/never.parquet"); err != nil {
		t.Errorf("Delete of a never-written key: %v", err)
	}
	if _, err := s.Get(ctx, "events/dt=2026-11-25/part-a.parquet"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if got := keys(t, s, "events/dt=2026-11-25/"); got != "events/dt=2026-11-25/part-b.parquet:2" {
		t.Errorf("List after Delete: %s", got)
	}

	// Empty objects are objects.
	put(t, s, "quarantine/dt=2026-11-25/empty", "")
	if got := keys(t, s, "quarantine/"); got != "quarantine/dt=2026-11-25/empty:0" {
		t.Errorf("empty object listed as %q", got)
	}

	// A body that fails part way leaves the old object whole.
	err := s.Put(ctx, day+"manifest.json", io.MultiReader(strings.NewReader(`{"rows":3,`), failingReader{}))
	if err == nil {
		t.Fatalf("Put with a failing body: no error")
	}
	if got := get(t, s, day+"manifest.json"); got != `{"rows":2}` {
		t.Errorf("after a failed Put: %q", got)
	}
	if got := keys(t, s, day); !strings.Contains(got, "manifest.json:10") || strings.Count(got, " ") != 1 {
		t.Errorf("after a failed Put, List(%s) = %s", day, got)
	}
}

var errBody = errors.New("body broke")

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errBody }

func put(t *testing.T, s store.Store, key, body string) {
	t.Helper()
	if err := s.Put(t.Context(), key, strings.NewReader(body)); err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
}

func get(t *testing.T, s store.Store, key string) string {
	t.Helper()
	data, err := store.ReadAll(t.Context(), s, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// keys lists prefix as "key:size" pairs joined by spaces.
func keys(t *testing.T, s store.Store, prefix string) string {
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
