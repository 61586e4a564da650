//go:build unix && !linux

package agent

import "syscall"

// childAttr puts a child in its own process group. Outside Linux there is
// no Pdeathsig: a SIGKILLed agent leaves a running reload command behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
