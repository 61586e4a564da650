package pgtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/localpg"
)

// The shared cluster: `go test ./...` runs each package's tests in its own
// process, in parallel. They coordinate through a directory under
// os.TempDir() (certops-pgtest-<uid>) holding
//
//   - lock: flock'ed around every read-modify-write of the state;
//   - state.json: the cluster's directory and port and the processes using it.
//
// The first process starts the cluster, the last one to leave stops it. A
// user that died without leaving (crash, test timeout) is dropped when its
// pid is gone; a cluster that is no longer answering is replaced.

// sharedState is the content of state.json.
type sharedState struct {
	Dir   string `json:"dir"`
	Port  int    `json:"port"`
	Users []user `json:"users"`
}

// user is a test process using the cluster. Start (the process start time
// from /proc) guards against pid reuse.
type user struct {
	PID   int    `json:"pid"`
	Start string `json:"start,omitempty"`
}

// joinSharedCluster registers this process as a user of the shared cluster,
// starting it if needed, and returns its admin URL and the function that
// unregisters (stopping the cluster when this was the last user).
func joinSharedCluster(ctx context.Context, logger *slog.Logger) (string, func(context.Context) error, error) {
	co, err := openCoordinator()
	if err != nil {
		return "", nil, err
	}
	var adminURL string
	err = co.locked(func(st *sharedState) error {
		st.Users = liveUsers(st.Users)
		if st.Port != 0 && clusterAnswers(ctx, st) {
			adminURL = clusterURL(st)
		} else {
			if st.Port != 0 {
				logger.Warn("pgtest: shared cluster not answering; replacing it", "dir", st.Dir)
				stopCluster(ctx, st)
			}
			c, err := localpg.Start(ctx, localpg.Options{
				Dir:    filepath.Join(co.dir, "cluster-"+randomSuffix()),
				Fast:   true,
				Logger: logger,
			})
			if err != nil {
				return err
			}
			st.Dir, st.Port = c.Dir(), c.Port()
			adminURL = c.URL("postgres")
		}
		st.Users = append(st.Users, self())
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("shared cluster: %w", err)
	}
	leave := func(ctx context.Context) error {
		err := co.locked(func(st *sharedState) error {
			me := self()
			var rest []user
			for _, u := range liveUsers(st.Users) {
				if u != me {
					rest = append(rest, u)
				}
			}
			st.Users = rest
			if len(rest) == 0 && st.Port != 0 {
				stopCluster(ctx, st)
				*st = sharedState{}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("leave shared cluster: %w", err)
		}
		return nil
	}
	return adminURL, leave, nil
}

// coordinator is the shared directory.
type coordinator struct {
	dir string
}

func openCoordinator() (*coordinator, error) {
	dir := filepath.Join(os.TempDir(), "certops-pgtest-"+strconv.Itoa(os.Getuid()))
	// 0755: when running as root the server runs as "postgres", which must
	// traverse into the cluster directory below.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", dir, err)
	}
	return &coordinator{dir: dir}, nil
}

// locked runs fn on the state under the exclusive lock and saves what fn
// left (an emptied state removes the state file).
func (co *coordinator) locked(fn func(*sharedState) error) error {
	f, err := os.OpenFile(filepath.Join(co.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("open lock file: %w", err)
	}
	defer f.Close() // closing releases the lock
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	statePath := filepath.Join(co.dir, "state.json")
	var st sharedState
	switch b, err := os.ReadFile(statePath); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read state: %w", err)
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			st = sharedState{} // a torn or foreign file: treat as no cluster
		}
	}
	if err := fn(&st); err != nil {
		return err
	}
	if st.Port == 0 && len(st.Users) == 0 {
		if err := os.Remove(statePath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove state: %w", err)
		}
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tmp := statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, statePath); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func clusterURL(st *sharedState) string {
	c, err := localpg.Attach(localpg.Options{Dir: st.Dir, Port: st.Port})
	if err != nil {
		return ""
	}
	return c.URL("postgres")
}

// clusterAnswers reports whether the recorded cluster accepts queries.
func clusterAnswers(ctx context.Context, st *sharedState) bool {
	u := clusterURL(st)
	if u == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx) == nil
}

// stopCluster stops the recorded cluster if it runs and removes its directory.
func stopCluster(ctx context.Context, st *sharedState) {
	if c, err := localpg.Attach(localpg.Options{Dir: st.Dir, Port: st.Port}); err == nil {
		_ = c.Stop(ctx) // best effort: the directory goes anyway
	}
	if st.Dir != "" {
		_ = os.RemoveAll(st.Dir)
	}
}

func self() user {
	pid := os.Getpid()
	return user{PID: pid, Start: processStart(pid)}
}

// liveUsers drops users whose process is gone (or whose pid was reused).
func liveUsers(users []user) []user {
	var live []user
	for _, u := range users {
		err := syscall.Kill(u.PID, 0)
		if err != nil && !errors.Is(err, syscall.EPERM) {
			continue
		}
		if u.Start != "" && processStart(u.PID) != u.Start {
			continue
		}
		live = append(live, u)
	}
	return live
}

// processStart is the start time of process pid (field 22 of
// /proc/PID/stat), or "" where /proc is unavailable.
func processStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may contain spaces
	if i < 0 {
		return ""
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}
