package agent

import "syscall"

// childAttr puts a child in its own process group and has the kernel send
// it SIGKILL when the agent dies (Pdeathsig), so a SIGKILLed or crashed
// agent does not leave a reload command running. Pdeathsig fires when the
// OS thread that started the child exits; the Go runtime does not end its
// threads (no goroutine of the agent locks one), so that is the agent's
// death. It reaches the command itself: what the command started in the
// background and left behind is not the kernel's to kill.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
