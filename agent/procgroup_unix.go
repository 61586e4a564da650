//go:build unix

package agent

import (
	"os/exec"
	"syscall"
)

// inOwnProcessGroup starts cmd in a new process group and makes
// cancellation kill the whole group, so a reload script's children die
// with it. On Linux the kernel also kills cmd when the agent dies, even by
// SIGKILL (see childAttr).
func inOwnProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
