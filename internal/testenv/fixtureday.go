package testenv

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// FixtureDay is the shared fixture day of testdata/ (usage events, CloudTrail
// records and prices of 2026-11-25).
const FixtureDay = "2026-11-25"

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Testdata is a path under the repository's testdata/.
func Testdata(elem ...string) string {
	return filepath.Join(append([]string{RepoRoot(), "testdata"}, elem...)...)
}

// AggregatedFixtureStore runs the fixture day's usage events through the CLI
// (meter put to an embedded stream, meter aggregate into a file store) and
// returns the store's directory.
func AggregatedFixtureStore(t testing.TB, meter string) string {
	t.Helper()
	stream, st := t.TempDir(), t.TempDir()
	if _, code := RunMeter(t, meter, nil, "put", "--stream", "file://"+stream, Testdata("events", FixtureDay+".jsonl")); code != 0 {
		t.Fatalf("meter put exited %d", code)
	}
	if _, code := RunMeter(t, meter, nil, "aggregate", "--stream", "file://"+stream, "--store", "file://"+st, "--until-idle", "--quiet"); code != 0 {
		t.Fatalf("meter aggregate exited %d", code)
	}
	return st
}

// FixtureTrail lays the fixture day's CloudTrail records out as a trail
// delivers them (gzip JSON under AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/)
// and returns the folder, for --cloudtrail file://DIR.
func FixtureTrail(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(Testdata("cloudtrail", FixtureDay+".json"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	dir := filepath.Join(root, "AWSLogs", "123456789012", "CloudTrail", "us-east-1", "2026", "11", "25")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(filepath.Join(dir, "123456789012_CloudTrail_us-east-1_20261125T1305Z_fixture.json.gz"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}
