package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Program returns the path of the installed program name (on PATH, or in
// the sbin and bin directories, which PATH may lack). When it is missing
// the test fails under CI (whose .ci/run installs the Debian package pkg)
// and is skipped elsewhere, saying what to install.
func Program(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"} {
		if p := filepath.Join(dir, name); isFile(p) {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (.ci/run installs %s)", name, pkg)
	}
	t.Skipf("%s is not installed (apt-get install %s): skipping the test that runs it", name, pkg)
	return ""
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}
