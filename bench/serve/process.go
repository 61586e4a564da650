package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ): 100 on
// every Linux architecture Go supports, as prometheus/procfs also assumes.
const userHZ = 100

// serveProc is one running `certops serve` process, its output going to a
// log file, its resident set sampled every 100 ms while it runs.
type serveProc struct {
	cmd     *exec.Cmd
	log     string    // the file holding its stdout and stderr
	started time.Time // just before the process was started
	done    chan struct{}
	waitErr error // valid once done is closed

	maxRSSkB atomic.Int64 // the highest VmRSS sampled
}

// startServe starts bin with args, in the environment of this process, with
// its output in logFile. It is put in a process group of its own, so that a
// ^C on the terminal reaches the harness only, which stops it in order; it
// is killed if the harness dies.
func startServe(bin string, args []string, dir, logFile string) (*serveProc, error) {
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &serveProc{cmd: cmd, log: logFile, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	go p.sampleRSS()
	return p, nil
}

func (p *serveProc) pid() int { return p.cmd.Process.Pid }

// exited reports, without blocking, whether the process has ended, and how.
func (p *serveProc) exited() (bool, error) {
	select {
	case <-p.done:
		if p.waitErr == nil {
			return true, errors.New("certops serve exited")
		}
		return true, fmt.Errorf("certops serve exited: %w", p.waitErr)
	default:
		return false, nil
	}
}

// sampleRSS records the highest VmRSS every 100 ms until the process ends.
func (p *serveProc) sampleRSS() {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
			if kb, err := p.statusKB("VmRSS"); err == nil && kb > p.maxRSSkB.Load() {
				p.maxRSSkB.Store(kb)
			}
		}
	}
}

// sampledMaxMiB is the highest VmRSS sampled so far, in MiB.
func (p *serveProc) sampledMaxMiB() float64 { return float64(p.maxRSSkB.Load()) / 1024 }

// statusKB reads a "Vm...: N kB" field of /proc/PID/status.
func (p *serveProc) statusKB(field string) (int64, error) {
	path := "/proc/" + strconv.Itoa(p.pid()) + "/status"
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if ok && name == field {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}

// statusMiB is statusKB in MiB.
func (p *serveProc) statusMiB(field string) (float64, error) {
	kb, err := p.statusKB(field)
	return float64(kb) / 1024, err
}

// cpuTimes are the CPU seconds the process has used, from /proc/PID/stat:
// its own threads (utime+stime) and its waited-for children (cutime+cstime,
// such as git-upload-pack run by go-git's file:// transport).
type cpuTimes struct {
	self, children float64
}

func (p *serveProc) cpu() (cpuTimes, error) {
	path := "/proc/" + strconv.Itoa(p.pid()) + "/stat"
	data, err := os.ReadFile(path)
	if err != nil {
		return cpuTimes{}, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return cpuTimes{}, fmt.Errorf("%s: unexpected format", path)
	}
	fields := strings.Fields(string(data[i+1:])) // fields[0] is field 3, state
	if len(fields) < 15 {
		return cpuTimes{}, fmt.Errorf("%s: too few fields", path)
	}
	var ticks [4]float64 // utime, stime, cutime, cstime: fields 14 to 17
	for j := range ticks {
		n, err := strconv.ParseInt(fields[11+j], 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("%s: field %d: %w", path, 14+j, err)
		}
		ticks[j] = float64(n) / userHZ
	}
	return cpuTimes{self: ticks[0] + ticks[1], children: ticks[2] + ticks[3]}, nil
}

// addr waits until the process logs the address it serves on (it is started
// with --listen 127.0.0.1:0 --log-format json) and returns it.
func (p *serveProc) addr(ctx context.Context) (string, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if a := servingAddr(p.log); a != "" {
			return a, nil
		}
		if done, err := p.exited(); done {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for certops serve to listen: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// servingAddr finds serve's "serving" log record in logFile and returns its
// addr, or "" while there is none.
func servingAddr(logFile string) string {
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "serving" && rec.Addr != "" {
			return rec.Addr
		}
	}
	return ""
}

// stop sends SIGTERM and waits for the process to exit, killing it after
// grace. It returns how long the exit took, and an error if the process had
// to be killed or exited with an error.
func (p *serveProc) stop(grace time.Duration) (time.Duration, error) {
	start := time.Now()
	if done, _ := p.exited(); done {
		return 0, nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, fmt.Errorf("signal certops serve: %w", err)
	}
	select {
	case <-p.done:
		took := time.Since(start)
		if p.waitErr != nil {
			return took, fmt.Errorf("certops serve exited after SIGTERM: %w", p.waitErr)
		}
		return took, nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return time.Since(start), fmt.Errorf("certops serve did not exit within %s of SIGTERM: killed", grace)
	}
}

// logTail is the last n lines of the process's log.
func (p *serveProc) logTail(n int) string {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
