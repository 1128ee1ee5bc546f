// Command report times `meter report` on a year of daily chargebacks: 365
// days, 50 teams, 20 models (365,000 chargeback rows), generated once into a
// file store under -dir. It builds the meter binary, runs the command -runs
// times, and prints wall time, CPU time, peak RSS and the page's size.
//
//	go run ./bench/report -dir /tmp/meter-bench-report
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meter-dev/meter/internal/daygen"
	"github.com/meter-dev/meter/internal/store"
)

func main() {
	dir := flag.String("dir", "", "working directory (the store, the binary and the page); the store is reused when it exists")
	runs := flag.Int("runs", 3, "runs of the command")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-dir is required")
	}
	storeDir := filepath.Join(*dir, "store")
	if _, err := os.Stat(filepath.Join(storeDir, "chargeback")); err != nil {
		st, err := store.OpenFile(storeDir)
		if err != nil {
			log.Fatal(err)
		}
		start := time.Now()
		truth, err := daygen.Period(context.Background(), st, daygen.PeriodConfig{From: "2026-01-01", Days: 365, Teams: 50, Models: 20,
			Revised: map[int]string{40: "3.25"}, Unmetered: map[int]int{100: 4}})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("generated 365 days x 50 teams x 20 models in %s (total %s USD)\n", time.Since(start).Round(time.Millisecond), truth.Total)
	}
	bin := filepath.Join(*dir, "meter")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/meter").CombinedOutput(); err != nil {
		log.Fatalf("building meter: %v\n%s", err, out)
	}
	page := filepath.Join(*dir, "report-2026.html")
	fmt.Println("| run | wall s | CPU s | peak RSS MiB | page MB |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for i := 1; i <= *runs; i++ {
		cmd := exec.Command(bin, "report", "--store", "file://"+storeDir, "--from", "2026-01-01", "--to", "2026-12-31", "--out", page)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		wall := time.Since(start)
		if err != nil {
			log.Fatalf("meter report: %v\n%s", err, out)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		fi, err := os.Stat(page)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("| %d | %.2f | %.2f | %.0f | %.2f |\n", i, wall.Seconds(), cpu.Seconds(), float64(ru.Maxrss)/1024, float64(fi.Size())/1e6)
	}
}
