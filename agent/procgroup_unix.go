//go:build unix

package agent

import (
	"os/exec"
	"syscall"
)

// inOwnProcessGroup starts cmd in a new process group and makes
// cancellation kill the whole group, so a reload script's children die
// with it.
func inOwnProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
