package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/testkit"
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
	testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("reload command %d to end after the agent was SIGKILLed", pid), func() bool {
		return !processAlive(pid)
	})
}

// waitForPID waits (bounded) until the reload command wrote its pid.
func waitForPID(t *testing.T, pidFile string, agent *exec.Cmd) int {
	t.Helper()
	var b []byte
	testkit.WaitFor(t, 30*time.Second, "the agent to start the reload command", func() bool {
		if agent.ProcessState != nil {
			t.Fatal("the agent exited before it started the reload command")
		}
		var err error
		b, err = os.ReadFile(pidFile)
		return err == nil
	})
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
