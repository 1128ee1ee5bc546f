package store

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileStoreContract(t *testing.T) {
	s, err := Open(t.Context(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testStoreContract(t, s)
	fs := s.(*FileStore)
	if temps := tempFiles(t, fs.Dir()); len(temps) != 0 {
		t.Errorf("temporary files left behind: %q", temps)
	}
	// Keys are plain files under the root, readable by DuckDB or Athena tooling.
	b, err := os.ReadFile(filepath.Join(fs.Dir(), "chargeback", "dt=2026-11-25", "chargeback-2026-11-25.csv"))
	if err != nil || string(b) != chargebackCSV {
		t.Errorf("file on disk: %q, %v", b, err)
	}
}

func tempFiles(t *testing.T, dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestFileStorePutIsAtomic holds a Put open half way: readers and List see
// the old object only, never the temporary file, until the rename.
func TestFileStorePutIsAtomic(t *testing.T) {
	s, err := OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const key = "daily/dt=2026-11-25/part-0.parquet"
	put(t, s, key, "old contents")

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.Put(t.Context(), key, pr) }()
	if _, err := pw.Write([]byte("new contents, first half; ")); err != nil {
		t.Fatal(err)
	}
	// The half-written temporary file exists on disk...
	deadline := time.Now().Add(5 * time.Second)
	for len(tempFiles(t, s.Dir())) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := len(tempFiles(t, s.Dir())); n != 1 {
		t.Fatalf("%d temporary files during Put", n)
	}
	// ...but neither List nor Get shows it.
	if got := keys(t, s, ""); got != key+":12" {
		t.Errorf("List during Put: %s", got)
	}
	if got := get(t, s, key); got != "old contents" {
		t.Errorf("Get during Put: %q", got)
	}
	pw.Write([]byte("second half"))
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, key); got != "new contents, first half; second half" {
		t.Errorf("after Put: %q", got)
	}
	if temps := tempFiles(t, s.Dir()); len(temps) != 0 {
		t.Errorf("temporary files left behind: %q", temps)
	}

	// A reader that opened the old object keeps reading the old bytes.
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, key, "third version")
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "new contents, first half; second half" {
		t.Errorf("open reader saw %q", b)
	}
}

func TestFileStoreCancelledPut(t *testing.T) {
	s, err := OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Put(ctx, "events/dt=2026-11-25/a.parquet", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context = %v", err)
	}
	if got := keys(t, s, ""); got != "" {
		t.Errorf("after a cancelled Put: %s", got)
	}
	if temps := tempFiles(t, s.Dir()); len(temps) != 0 {
		t.Errorf("temporary files left behind: %q", temps)
	}
}

func TestFileStoreRejectsKeysOutsideItsRoot(t *testing.T) {
	parent := t.TempDir()
	s, err := OpenFile(filepath.Join(parent, "store"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"", "../escape", "events/../../escape", "/etc/passwd", "a//b", "a/./b", "a/", ".tmp-x", "events/.tmp-part", `a\b`, "a\x00b"} {
		if err := s.Put(t.Context(), k, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) accepted", k)
		}
		if _, err := s.Get(t.Context(), k); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", k, err)
		}
		if err := s.Delete(t.Context(), k); err == nil {
			t.Errorf("Delete(%q) accepted", k)
		}
	}
	if _, err := os.Stat(filepath.Join(parent, "escape")); err == nil {
		t.Errorf("a key wrote outside the store's root")
	}
}
