package testkit

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// GoTool runs a tool pinned in go.mod (`go tool NAME ARGS…`, such as
// promtool) from the module root with stdin, at most 5 minutes (a cold
// build included), and returns its combined output. Without the go
// command the test is skipped.
func GoTool(t testing.TB, stdin io.Reader, name string, args ...string) (string, error) {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not available to run the pinned %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, append([]string{"tool", name}, args...)...)
	cmd.Dir = ModuleRoot(t)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ModuleRoot is the directory of the go.mod above the working directory
// (a test's package directory).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
