package meterstack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildAssets builds every function's main package (cmd/lambda/<name> under
// repoRoot) as a bootstrap for provided.al2023 on arm64 (GOOS=linux
// GOARCH=arm64 CGO_ENABLED=0, -tags lambda.norpc) into dir/<name>/bootstrap,
// the asset folders New packages.
func BuildAssets(repoRoot, dir string) error {
	for _, name := range Functions {
		out := filepath.Join(dir, name)
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w",
			"-o", filepath.Join(out, "bootstrap"), "./cmd/lambda/"+name)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building cmd/lambda/%s for linux/arm64: %v\n%s", name, err, b)
		}
	}
	return nil
}
