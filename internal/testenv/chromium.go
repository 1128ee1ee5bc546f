package testenv

import (
	"os/exec"
	"testing"
)

// Chromium returns the path of Debian's headless-capable Chromium
// (/usr/bin/chromium; test.sh installs the package), or skips the test (fails
// it under METER_REQUIRE_SERVERS) when there is none.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	skipOrFail(t, "no chromium on PATH (Debian: apt-get install chromium)")
	return ""
}

// ChromiumFlags are the flags a test starts Chromium with on this kind of
// machine: headless, as root, and with no background connections (the
// network is closed, and the page under test must need none).
var ChromiumFlags = []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
	"--disable-extensions", "--hide-scrollbars", "--mute-audio"}
