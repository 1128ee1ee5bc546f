// Package archtest holds the layout to its rules: imports run one way through
// the layers schemas -> aggregator (the pure core) -> internal/ plumbing ->
// stages -> commands, and the pure core touches no I/O. ARCHITECTURE.md
// describes the layers; this test is what keeps them true.
package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/meter-dev/meter"

type pkg struct {
	ImportPath string
	Imports    []string
}

// listPackages runs go list over the module (tests' imports left out: a test
// may start real servers and reach across layers to check a whole).
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	return pkgs
}

// layer returns the rank of a package of this module: an import may only
// go to the same or a lower rank. Stages may build on each other (replay
// re-runs the collector's batch writer and the compaction).
func layer(path string) (int, string) {
	rel := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
	switch {
	case rel == "infra/athena":
		return 0, "data (embedded SQL)"
	case rel == "schemas":
		return 1, "schemas"
	case rel == "aggregator" || strings.HasPrefix(rel, "aggregator/"):
		return 2, "pure core"
	case strings.HasPrefix(rel, "internal/"):
		return 3, "plumbing"
	case strings.HasPrefix(rel, "cmd/"), strings.HasPrefix(rel, "bench/"):
		return 5, "command"
	default:
		return 4, "stage"
	}
}

func TestImportsRunOneWay(t *testing.T) {
	for _, p := range listPackages(t) {
		from, fromName := layer(p.ImportPath)
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			if to, toName := layer(imp); to > from {
				t.Errorf("%s (%s) imports %s (%s): imports run schemas -> pure core -> plumbing -> stages -> commands",
					p.ImportPath, fromName, imp, toName)
			}
		}
	}
}

// TestPureCoreTouchesNoIO: the formats and the pure core import no AWS
// service, no HTTP and no os: they take values and return values.
func TestPureCoreTouchesNoIO(t *testing.T) {
	forbidden := func(imp string) bool {
		return imp == "os" || imp == "net/http" || strings.HasPrefix(imp, "github.com/aws/aws-sdk-go-v2/service/") ||
			strings.HasPrefix(imp, "github.com/aws/aws-lambda-go")
	}
	checked := 0
	for _, p := range listPackages(t) {
		if _, name := layer(p.ImportPath); name != "schemas" && name != "pure core" {
			continue
		}
		checked++
		for _, imp := range p.Imports {
			if forbidden(imp) {
				t.Errorf("%s imports %s: the pure core and the formats do no I/O", p.ImportPath, imp)
			}
		}
	}
	if checked < 3 {
		t.Fatalf("checked %d packages of the pure core, want schemas, aggregator and aggregator/pricing", checked)
	}
}
