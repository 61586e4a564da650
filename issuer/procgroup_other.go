//go:build !unix

package issuer

import "os/exec"

// inOwnProcessGroup is a no-op where process groups do not exist: the
// command alone is killed on timeout.
func inOwnProcessGroup(cmd *exec.Cmd) {}
