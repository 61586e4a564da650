package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/certops/certops/examples"
	"github.com/certops/certops/localpg"
)

// demoCmd runs the whole system on one machine: a throwaway PostgreSQL
// cluster, the bundled example config committed to a local git repository,
// and the reconciler with its API, until Ctrl-C (or --duration).
func demoCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "demo")
	var listen, dir string
	var duration time.Duration
	var keep bool
	f.stringVar(&listen, "listen", "127.0.0.1:8080", "HTTP listen address of the demo reconciler")
	f.stringVar(&dir, "dir", "", "working directory (default: a new temporary directory)")
	f.durationVar(&duration, "duration", 0, "stop after this long (default: run until interrupted)")
	f.boolVar(&keep, "keep", false, "keep the working directory on exit")
	newLogger := f.logFlags()
	if err := f.parse(args); err != nil {
		return parseExit(err)
	}
	logger, err := newLogger()
	if err != nil {
		fmt.Fprintln(env.stderr, "certops demo:", err)
		return 1
	}
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "certops-demo-"); err != nil {
			fmt.Fprintln(env.stderr, "certops demo:", err)
			return 1
		}
		// Run as root, PostgreSQL runs as the postgres user and must be able
		// to reach its data directory inside this one.
		if err := os.Chmod(dir, 0o711); err != nil {
			fmt.Fprintln(env.stderr, "certops demo:", err)
			return 1
		}
		if !keep {
			defer os.RemoveAll(dir)
		}
	}

	fmt.Fprintln(env.stdout, "certops demo: starting a throwaway PostgreSQL cluster ...")
	cluster, err := localpg.Start(ctx, localpg.Options{Dir: filepath.Join(dir, "postgres"), Fast: true, Logger: logger})
	if err != nil {
		fmt.Fprintln(env.stderr, "certops demo:", err)
		return 1
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cluster.Stop(stopCtx); err != nil {
			logger.Warn("stop postgres", "err", err)
		}
	}()
	if err := cluster.CreateDatabase(ctx, "certops"); err != nil {
		fmt.Fprintln(env.stderr, "certops demo:", err)
		return 1
	}
	repoDir := filepath.Join(dir, "config-repo")
	if err := initExampleRepo(repoDir); err != nil {
		fmt.Fprintln(env.stderr, "certops demo:", err)
		return 1
	}

	cfg := serveConfig{DatabaseURL: cluster.URL("certops"), Repo: repoDir, Ref: "main", Path: ".",
		Interval: 5 * time.Second, FullCompare: 10 * time.Minute, Listen: listen}
	err = serve(ctx, cfg, logger, func(addr string) {
		base := "http://" + addr
		fmt.Fprintf(env.stdout, `certops demo is running.

  status        %[1]s/api/v1/status
  certificates  %[1]s/api/v1/certificates
  agents        %[1]s/api/v1/agents
  revisions     %[1]s/api/v1/revisions
  metrics       %[1]s/metrics

  config repo   %[2]s   (edit, git commit: applied within seconds)
  database      %[3]s

Press Ctrl-C to stop.
`, base, repoDir, cfg.DatabaseURL)
	})
	if err != nil {
		fmt.Fprintln(env.stderr, "certops demo:", err)
		return 1
	}
	return 0
}

// initExampleRepo writes the bundled example config into dir and commits it
// on branch main.
func initExampleRepo(dir string) error {
	src := examples.Config()
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		return fmt.Errorf("write example config: %w", err)
	}
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"}})
	if err != nil {
		return fmt.Errorf("init example repo: %w", err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return fmt.Errorf("add example config: %w", err)
	}
	sig := &object.Signature{Name: "certops demo", Email: "demo@certops.invalid", When: time.Now()}
	if _, err := wt.Commit("Example config", &git.CommitOptions{Author: sig}); err != nil {
		return fmt.Errorf("commit example config: %w", err)
	}
	return nil
}
