//go:build !unix

package agent

import "os/exec"

// inOwnProcessGroup is a no-op where process groups do not exist: the
// reload command alone is killed on timeout.
func inOwnProcessGroup(cmd *exec.Cmd) {}
