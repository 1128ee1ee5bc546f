// Command meter meters Amazon Bedrock usage and turns it into chargeback.
// It is flags, wiring and Run; the work lives in the packages it wires.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// usageError is bad input on the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// exitError carries a specific exit status with its one-line message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"demo", "run the whole pipeline embedded: model server, API, stream, store, traffic, chargeback", runDemo},
		{"serve", "the invoke API", runServe},
		{"bedrock-local", "the Bedrock-compatible local model server", runBedrockLocal},
		{"team", "onboard teams and manage keys: add | rotate-key | revoke-key | list", runTeam},
		{"admin", "admin keys for the admin API (/admin/, GET /report): add-key | rotate-key | revoke-key | list", runAdmin},
		{"put", "append usage events (JSON lines) to a stream", runPut},
		{"aggregate", "consume the stream into raw events and windows in the store", runAggregate},
		{"compact", "deduplicate, price and write a day's chargeback CSV", runCompact},
		{"replay", "rebuild a day from the stream", runReplay},
		{"reconcile", "prove a day's usage against CloudTrail, Bedrock's invocation logs and the bill", runReconcile},
		{"report", "the finance page of a month or period (self-contained HTML)", runReport},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		if err == nil || errors.Is(err, flag.ErrHelp) {
			return 0
		}
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		fmt.Fprintf(stderr, "meter %s: %s\n", c.name, msg)
		var ue *usageError
		var ee *exitError
		switch {
		case errors.As(err, &ue):
			return 2
		case errors.As(err, &ee):
			return ee.code
		}
		return 1
	}
	fmt.Fprintf(stderr, "meter: unknown command %q (run meter --help)\n", args[0])
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "meter: meter Amazon Bedrock usage and turn it into chargeback")
	fmt.Fprintln(w, "\nUsage: meter <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun meter <command> -h for a command's flags.")
}

// newFlags returns a flag set that reports errors as one line and never exits.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("meter "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses flags; -h prints the flags and is not an error.
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "Usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		return err
	}
	if err != nil {
		return usagef("%v", err)
	}
	return nil
}

// need returns a usage error naming the first empty required flag.
func need(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return usagef("flag --%s is required", pairs[i])
		}
	}
	return nil
}
