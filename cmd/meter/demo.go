package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/meter-dev/meter/cmd/meter/internal/demo"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	dir := fs.String("dir", "", "folder for the stream, store, CloudTrail files and tenants (default: a new temporary folder, kept)")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "meter-demo-")
		if err != nil {
			return err
		}
		*dir = d
	} else if err := os.MkdirAll(*dir, 0o755); err != nil {
		return usagef("--dir: %v", errShort(err))
	}
	start := time.Now()
	fmt.Fprintf(stderr, "meter demo in %s\n", *dir)
	if _, err := demo.Run(ctx, demo.Config{Dir: *dir, Out: stdout, Log: stderr}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Demo finished in %.1fs; everything it wrote is under %s\n", time.Since(start).Seconds(), *dir)
	return nil
}
