package localpg

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Tool locates a PostgreSQL client program such as pg_dump or pg_restore the
// way Start locates the server binaries: in $CERTOPS_PG_BIN, then PATH, then
// the highest-versioned standard install location.
func Tool(name string) (string, error) {
	if dir := os.Getenv(BinEnv); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("localpg: %s not found in %s (from %s): %w", name, dir, BinEnv, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range installDirs() {
		if p := filepath.Join(d, name); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("localpg: %s not found: install the PostgreSQL client package or set %s "+
		"to the directory holding it", name, BinEnv)
}
