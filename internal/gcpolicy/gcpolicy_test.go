package gcpolicy

import (
	"runtime/debug"
	"testing"
)

func TestMemoryOf(t *testing.T) {
	meminfo := "MemTotal:       24576000 kB\nMemFree:         1000 kB\n"
	for _, c := range []struct {
		cgroup, meminfo string
		want            int64
	}{
		{"max\n", meminfo, 24576000 << 10},
		{"1073741824\n", meminfo, 1 << 30},
		{"99999999999999\n", meminfo, 24576000 << 10}, // a cgroup limit above the machine's memory
		{"", meminfo, 24576000 << 10},
		{"536870912", "", 512 << 20},
		{"", "garbage", 0},
	} {
		if got := memoryOf(c.cgroup, c.meminfo); got != c.want {
			t.Errorf("memoryOf(%q, %q) = %d, want %d", c.cgroup, c.meminfo, got, c.want)
		}
	}
}

func TestApplyKeepsWhatTheOperatorSet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
	if p, l := Apply(); p != Percent || l != 768<<20 {
		t.Fatalf("Apply() = %d, %d", p, l)
	}
	if got := debug.SetGCPercent(100); got != Percent {
		t.Fatalf("GOGC is %d", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 768<<20 {
		t.Fatalf("memory limit %d", got)
	}
	t.Setenv("GOGC", "50")
	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetGCPercent(50)
	if p, l := Apply(); p != 0 || l != 0 || debug.SetGCPercent(50) != 50 {
		t.Fatalf("Apply() overrode the operator's settings: %d, %d", p, l)
	}
}
