package testenv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// MeterCLI builds the meter command (cmd/meter) into a temporary directory
// and returns its path, so a test can compare what a Lambda writes with what
// the CLI writes for the same input.
func MeterCLI(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "meter")
	if b, err := exec.Command("go", "build", "-o", out, "github.com/meter-dev/meter/cmd/meter").CombinedOutput(); err != nil {
		t.Fatalf("building meter: %v\n%s", err, b)
	}
	return out
}

// RunMeter runs the meter binary with args and returns its stdout and exit
// code; a failure to start it fails the test.
func RunMeter(t testing.TB, bin string, stdin io.Reader, args ...string) (stdout string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("meter %v: %v", args, err)
	}
	if code != 0 {
		t.Logf("meter %v exited %d: %s", args, code, errb.String())
	}
	return out.String(), code
}

// CopyDir copies the regular files under src to dst (created), keeping their
// relative paths: two stores that start equal.
func CopyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
