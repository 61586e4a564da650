package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
)

// A SIGKILLed agent does not leave its reload command running: the real
// agent binary starts a reload that sleeps, is killed with SIGKILL, and the
// kernel ends the reload command with it.
func TestSIGKILLedAgentTakesItsReloadAlong(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the agent binary")
	}
	bin := filepath.Join(t.TempDir(), "certops-agent")
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/certops/certops/cmd/certops-agent").CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, out)
	}
	e := newEnv(t)
	pidFile := filepath.Join(t.TempDir(), "reload.pid")
	reload := e.script("slow-reload", "echo $$ > "+pidFile+".tmp && mv "+pidFile+".tmp "+pidFile+"\nexec sleep 60")
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Reload, as.Verify = []string{reload}, nil })

	cmd := exec.Command(bin, "--once", "--server", e.cfg.Server, "--name", e.cfg.Name,
		"--token-file", e.cfg.TokenFile, "--state-dir", e.cfg.StateDir, "--reload-timeout", "2m")
	cmd.Stderr = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	pid := waitForPID(t, pidFile, cmd)
	t.Cleanup(func() {
		if processAlive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("reload command %d still runs 10s after the agent was SIGKILLed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForPID waits (bounded) until the reload command wrote its pid.
func waitForPID(t *testing.T, pidFile string, agent *exec.Cmd) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if agent.ProcessState != nil || time.Now().After(deadline) {
			t.Fatal("the agent never started the reload command")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
