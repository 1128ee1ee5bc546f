package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/meter-dev/meter/internal/atomicfile"
)

// tempPrefix starts the names of files being written; List never shows them
// and keys may not use it.
const tempPrefix = atomicfile.TempPrefix

// FileStore is the embedded store: each key is a file under a directory,
// "events/dt=2026-11-25/a.parquet" at DIR/events/dt=2026-11-25/a.parquet.
type FileStore struct {
	dir string
}

// OpenFile opens the store rooted at dir, creating the directory if needed.
func OpenFile(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("file store: empty directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("file store: %w", err)
	}
	return &FileStore{dir: dir}, nil
}

// Dir returns the store's root directory.
func (s *FileStore) Dir() string { return s.dir }

// checkKey refuses keys that do not name a file strictly inside the root.
func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") ||
		strings.ContainsAny(key, "\x00\\") {
		return fmt.Errorf("invalid key %q", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, tempPrefix) {
			return fmt.Errorf("invalid key %q", key)
		}
	}
	return nil
}

func (s *FileStore) path(key string) string {
	return filepath.Join(s.dir, filepath.FromSlash(key))
}

// Put writes body to a temporary file beside the key's file, fsyncs it,
// renames it over the key and fsyncs the directory, so a reader or a crash
// sees the old object or the new one, never a part.
func (s *FileStore) Put(ctx context.Context, key string, body io.Reader) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("file store: putting: %w", err)
	}
	if err := atomicfile.Write(s.path(key), ctxReader{ctx, body}, 0o644); err != nil {
		return fmt.Errorf("file store: putting %s: %w", key, err)
	}
	return nil
}

// ctxReader stops a copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Get opens key; the error wraps ErrNotFound when there is no such object.
func (s *FileStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("file store: getting: %w: %w", ErrNotFound, err)
	}
	f, err := os.Open(s.path(key))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, fmt.Errorf("file store: getting %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("file store: getting %s: %w", key, err)
	}
	if st, err := f.Stat(); err != nil || st.IsDir() {
		f.Close()
		if err == nil {
			err = ErrNotFound
		}
		return nil, fmt.Errorf("file store: getting %s: %w", key, err)
	}
	return f, nil
}

// List returns the objects whose keys start with prefix, sorted by key,
// leaving out files still being written.
func (s *FileStore) List(ctx context.Context, prefix string) ([]Object, error) {
	// Walk only the deepest folder the prefix names.
	root := s.dir
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		root = s.path(prefix[:i])
	}
	var out []Object
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil // no such folder, or a folder removed during the walk
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.dir, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted during the walk
		}
		if err != nil {
			return err
		}
		out = append(out, Object{Key: key, Size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("file store: listing %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes key; a missing key is not an error.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("file store: deleting: %w", err)
	}
	if st, err := os.Lstat(s.path(key)); err == nil && st.IsDir() {
		return nil // a folder of other keys, not an object
	}
	err := os.Remove(s.path(key))
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("file store: deleting %s: %w", key, err)
	}
	if err == nil {
		if err := atomicfile.SyncDir(filepath.Dir(s.path(key))); err != nil {
			return fmt.Errorf("file store: deleting %s: %w", key, err)
		}
	}
	return nil
}

var _ Store = (*FileStore)(nil)
