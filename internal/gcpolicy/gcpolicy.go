// Package gcpolicy sets the Go garbage collector for the processes that serve
// model calls (meter serve, the invoker Lambda). Their live heap is small
// (tenants, prices, the calls in flight) while every call allocates tens of
// kilobytes, so with Go's default (GOGC=100) the collector runs every hundred
// calls or so, and on a one-CPU process its mark phase competes with the
// calls themselves: that is most of the invoker's tail latency at one client
// (BENCHMARKS.md, "Invoker speed"). Serving processes collect four times less
// often instead, under a soft memory limit, so a large heap of calls in
// flight is still held to the memory the process has.
package gcpolicy

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Percent is the GOGC the serving processes run with.
const Percent = 400

// Apply sets GOGC to Percent and the soft memory limit to three quarters of
// the memory the process may use, each unless the operator set it (GOGC,
// GOMEMLIMIT). It returns what it set, for the start-up log.
func Apply() (percent int, limit int64) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(Percent)
		percent = Percent
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if mem := available(); mem > 0 {
			limit = mem / 4 * 3
			debug.SetMemoryLimit(limit)
		}
	}
	return percent, limit
}

// available is the memory this process may use: the Lambda function's
// configured size, else the cgroup's limit, else physical memory; 0 when
// none can be read.
func available() int64 {
	if mb, err := strconv.ParseInt(os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), 10, 64); err == nil && mb > 0 {
		return mb << 20
	}
	cgroup, _ := os.ReadFile("/sys/fs/cgroup/memory.max")
	meminfo, _ := os.ReadFile("/proc/meminfo")
	return memoryOf(string(cgroup), string(meminfo))
}

// memoryOf reads a cgroup v2 memory.max ("max" or bytes) and /proc/meminfo
// (MemTotal in kB), the smaller known one winning.
func memoryOf(cgroupMax, meminfo string) int64 {
	var total int64
	for _, line := range strings.Split(meminfo, "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil && kb > 0 {
				total = kb << 10
			}
		}
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(cgroupMax), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
		return n
	}
	return total
}
