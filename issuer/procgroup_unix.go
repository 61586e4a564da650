//go:build unix

package issuer

import (
	"os/exec"
	"syscall"
)

// inOwnProcessGroup starts cmd in a new process group and makes
// cancellation kill the whole group, so an external issuer's children die
// with its command on timeout.
func inOwnProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
