package fleet

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// InitRepo turns dir into a git repository on branch main and commits
// everything in it. It returns the commit id.
func InitRepo(ctx context.Context, dir string) (string, error) {
	if _, err := Git(ctx, dir, "init", "-q", "-b", "main"); err != nil {
		return "", err
	}
	return Commit(ctx, dir, "fleet: generated config")
}

// Commit stages every change in dir (additions, edits, deletions) and commits
// it with message msg. It returns the new commit id; committing with nothing
// changed is an error.
func Commit(ctx context.Context, dir, msg string) (string, error) {
	if _, err := Git(ctx, dir, "add", "-A"); err != nil {
		return "", err
	}
	if _, err := Git(ctx, dir, "commit", "-q", "-m", msg); err != nil {
		return "", err
	}
	return Git(ctx, dir, "rev-parse", "HEAD")
}

// Git runs the git CLI in dir, isolated from the user's and the system's
// configuration, and returns its trimmed standard output.
func Git(ctx context.Context, dir string, args ...string) (string, error) {
	base := []string{
		"-c", "user.name=certops fleet",
		"-c", "user.email=fleet@certops.invalid",
		"-c", "commit.gpgsign=false",
		"-c", "gc.auto=0",
	}
	cmd := exec.CommandContext(ctx, "git", append(base, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("fleet: git %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}
