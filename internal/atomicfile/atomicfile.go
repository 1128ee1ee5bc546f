// Package atomicfile replaces files on local disk so that a reader, or the
// machine after a crash, sees the whole old content or the whole new one,
// never a part: write a temporary file beside the target, fsync it, rename it
// over the target and fsync the directory. The embedded store and the tenant
// registry write this way; the embedded stream syncs its directory with
// SyncDir.
package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// TempPrefix starts the name of a file being written. Readers that list a
// directory skip such names: they are never a finished file.
const TempPrefix = ".tmp-"

// Write replaces path with what body holds, with permissions perm, creating
// the file's directory if needed. On error the target is untouched and no
// temporary file is left.
func Write(path string, body io.Reader, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, body); err != nil {
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, so that the names created, renamed or removed
// in it survive a crash. File systems that cannot sync a directory (EINVAL)
// are taken as having nothing to sync.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
