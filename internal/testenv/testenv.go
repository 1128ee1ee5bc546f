package testenv

import (
	"os"
	"testing"
)

// RequireEnv names the variable that turns a missing server into a test
// failure instead of a skip. test.sh (and so CI) sets it, so CI never skips.
const RequireEnv = "METER_REQUIRE_SERVERS"

// skipOrFail skips the test with msg, or fails it when RequireEnv is set.
func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(RequireEnv) != "" || os.Getenv("METER_REQUIRE_VERSITYGW") != "" {
		t.Fatal(msg + "\n(" + RequireEnv + " is set: a missing server is a failure)")
	}
	t.Skip(msg)
}
