// Command faults runs every fault scenario of the test suite in one go, on
// 127.0.0.1 against the real servers ./test.sh installs, and prints one
// table: events sent, charged, lost and double-counted per scenario.
//
//	go run ./bench/faults            # from the repository root, after ./test.sh once
//
// It exits non-zero when a scenario fails, or loses or double-counts anything.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// scenarios are the tests that inject faults; each logs its counts on a
// FAULT-SCENARIO line (internal/testenv.ReportScenario).
const scenarios = "^(TestAggregateSurvivesSIGKILL|TestS3FailingWritesLoseNothing|TestNetworkFaultsLoseNothing|TestNoUsageLostWhileKinesisIsDown|TestNoUsageLostOnAFullDisk|TestKillMidRunLeavesLastRevision|TestMetricsHealthAndReadiness)$"

const marker = "FAULT-SCENARIO "

type counts struct {
	Scenario      string `json:"scenario"`
	Sent          int    `json:"sent"`
	Charged       int    `json:"charged"`
	Lost          int    `json:"lost"`
	DoubleCounted int    `json:"double_counted"`
	Faults        string `json:"faults"`
}

type testEvent struct {
	Action, Package, Test, Output string
	Elapsed                       float64
}

func main() {
	timeout := flag.Duration("timeout", 20*time.Minute, "bound on the whole run")
	flag.Parse()
	root, _ := os.Getwd()
	tools := filepath.Join(root, ".tools")
	if _, err := os.Stat(tools); err != nil {
		fmt.Fprintln(os.Stderr, "faults: run from the repository root after ./test.sh has installed .tools/ once")
		os.Exit(2)
	}
	cmd := exec.Command("go", "test", "-count=1", "-json", "-timeout", timeout.String(), "-run", scenarios,
		"./collector", "./invoker", "./compaction")
	cmd.Env = append(os.Environ(),
		"PATH="+filepath.Join(tools, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
		"METER_NODE_MODULES="+filepath.Join(tools, "node", "node_modules"),
		"METER_REQUIRE_SERVERS=1",
		// The long forms: ./test.sh runs the same scenarios shorter.
		"METER_FAULTS_FULL=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(2)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(2)
	}
	var rows []counts
	results := map[string]string{} // test -> pass/fail
	elapsed := map[string]float64{}
	var failedOutput []string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev testEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		switch {
		case ev.Test == "":
		case ev.Action == "output":
			if i := strings.Index(ev.Output, marker); i >= 0 {
				var c counts
				if json.Unmarshal([]byte(strings.TrimSpace(ev.Output[i+len(marker):])), &c) == nil {
					rows = append(rows, c)
				}
			} else if strings.Contains(ev.Output, "_test.go:") {
				failedOutput = append(failedOutput, ev.Test+": "+strings.TrimSpace(ev.Output))
			}
		case ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip":
			results[ev.Test], elapsed[ev.Test] = ev.Action, ev.Elapsed
			fmt.Fprintf(os.Stderr, "faults: %s %s (%.0f s)\n", ev.Action, ev.Test, ev.Elapsed)
		}
	}
	werr := cmd.Wait()

	fmt.Println("| scenario | sent | charged | lost | double-counted | faults |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	bad := werr != nil
	for _, c := range rows {
		fmt.Printf("| %s | %d | %d | %d | %d | %s |\n", c.Scenario, c.Sent, c.Charged, c.Lost, c.DoubleCounted, c.Faults)
		bad = bad || c.Lost != 0 || c.DoubleCounted != 0
	}
	var names []string
	for name := range results {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Println()
	for _, name := range names {
		fmt.Printf("- %s: %s in %.0f s\n", name, results[name], elapsed[name])
		bad = bad || results[name] != "pass"
	}
	fmt.Printf("\n%d scenario tests in %s\n", len(names), time.Since(start).Round(time.Second))
	if bad {
		for _, l := range failedOutput {
			fmt.Fprintln(os.Stderr, l)
		}
		os.Exit(1)
	}
}
