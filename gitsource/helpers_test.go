package gitsource_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/gitsource"
	"github.com/certops/certops/state"
)

// gitEnv makes the git CLI hermetic: no user or system config, fixed identity.
func gitEnv() []string {
	return append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Alice",
		"GIT_AUTHOR_EMAIL=alice@example.com",
		"GIT_COMMITTER_NAME=Alice",
		"GIT_COMMITTER_EMAIL=alice@example.com",
		"GIT_TERMINAL_PROMPT=0",
	)
}

// git runs the git CLI in dir and returns its trimmed stdout.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// upstream is a non-bare repository standing in for the remote.
type upstream struct {
	t   testing.TB
	dir string
}

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "upstream")
	git(t, "", "init", "-q", "-b", "main", dir)
	return &upstream{t: t, dir: dir}
}

// write creates or replaces files; an empty content removes the file.
func (u *upstream) write(files map[string]string) {
	u.t.Helper()
	for name, content := range files {
		p := filepath.Join(u.dir, filepath.FromSlash(name))
		if content == "" {
			if err := os.RemoveAll(p); err != nil {
				u.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			u.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			u.t.Fatal(err)
		}
	}
}

func (u *upstream) symlink(name, target string) {
	u.t.Helper()
	p := filepath.Join(u.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		u.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		u.t.Fatal(err)
	}
}

// commit stages everything and commits, returning the new commit hash.
func (u *upstream) commit(msg string) string {
	u.t.Helper()
	git(u.t, u.dir, "add", "-A")
	git(u.t, u.dir, "commit", "-q", "--allow-empty", "-m", msg)
	return git(u.t, u.dir, "rev-parse", "HEAD")
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func open(t testing.TB, cfg gitsource.Config) *gitsource.Repo {
	t.Helper()
	r, err := gitsource.Open(testContext(t), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func head(t testing.TB, r *gitsource.Repo) (state.Revision, bool) {
	t.Helper()
	rev, changed, err := r.Head(testContext(t))
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return rev, changed
}
