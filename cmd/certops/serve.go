package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/certops/certops/gitsource"
	"github.com/certops/certops/httpapi"
	"github.com/certops/certops/localdir"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/store"
	"github.com/certops/certops/webhook"
)

// serveConfig is everything `certops serve` needs; flags and CERTOPS_* variables fill it.
type serveConfig struct {
	DatabaseURL       string
	Repo              string
	Ref               string
	Path              string
	Interval          time.Duration
	FullCompare       time.Duration
	Listen            string
	CacheDir          string
	MigrationsViaHook bool
	Git               gitsource.Auth
	GitCAFile         string
	APITokenFile      string
	Hooks             webhook.Config
}

// serveCmd runs the reconciler, the status API and the webhook receivers
// until SIGTERM.
func serveCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "serve")
	cfg := declareServe(f)
	newLogger := f.logFlags()
	if f.parse(args) != nil {
		return 1
	}
	logger, err := newLogger()
	if err != nil {
		fmt.Fprintln(env.stderr, "certops serve:", err)
		return 1
	}
	if err := serve(ctx, *cfg, logger, nil); err != nil {
		logger.Error("serve failed", "err", err)
		return 1
	}
	return 0
}

// declareServe declares serve's flags on f, each with its CERTOPS_* variable.
func declareServe(f *flagSet) *serveConfig {
	c := &serveConfig{}
	f.stringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL connection URL")
	f.stringVar(&c.Repo, "repo", "", "config repository: URL (https://, ssh://, git@host:path, file://), a local git repository, or a plain directory (watched)")
	f.stringVar(&c.Ref, "ref", "", "branch, tag or commit to follow (default: the remote's default branch)")
	f.stringVar(&c.Path, "path", ".", "directory of the config inside the repository")
	f.stringVar(&c.Listen, "listen", ":8080", "HTTP listen address")
	f.stringVar(&c.CacheDir, "cache-dir", "", "where the git clone is kept (default: in memory)")
	f.stringVar(&c.Git.Username, "git-username", "", "HTTPS username")
	f.stringVar(&c.Git.PasswordFile, "git-password-file", "", "file holding the HTTPS password")
	f.stringVar(&c.Git.TokenFile, "git-token-file", "", "file holding an HTTPS access token")
	f.stringVar(&c.Git.SSHKeyFile, "git-ssh-key-file", "", "SSH private key file")
	f.stringVar(&c.Git.KnownHostsFile, "git-known-hosts-file", "", "SSH known_hosts file")
	f.stringVar(&c.GitCAFile, "git-ca-file", "", "CA bundle for an HTTPS git server")
	f.stringVar(&c.APITokenFile, "api-token-file", "", "file holding the bearer token required on /api/ and /metrics")
	f.stringVar(&c.Hooks.GitHubSecretFile, "github-webhook-secret-file", "", "GitHub webhook secret file (enables /hooks/github)")
	f.stringVar(&c.Hooks.GitLabTokenFile, "gitlab-webhook-token-file", "", "GitLab webhook token file (enables /hooks/gitlab)")
	f.stringVar(&c.Hooks.GenericSecretFile, "generic-webhook-secret-file", "", "HMAC secret file (enables /hooks/generic)")
	f.durationVar(&c.Interval, "interval", time.Minute, "poll interval")
	f.durationVar(&c.FullCompare, "full-compare-interval", 10*time.Minute, "how often the database is compared in full with Git (drift repair)")
	f.boolVar(&c.MigrationsViaHook, "migrations-via-hook", false, "skip migrating at boot (a Helm hook runs certops migrate)")
	return c
}

// serve wires the reconciler together and runs it until ctx ends. onListen,
// when set, is told the address the HTTP server listens on.
func serve(ctx context.Context, cfg serveConfig, logger *slog.Logger, onListen func(addr string)) error {
	if cfg.DatabaseURL == "" {
		return errors.New("--database-url (CERTOPS_DATABASE_URL) is required")
	}
	if cfg.Repo == "" {
		return errors.New("--repo (CERTOPS_REPO) is required")
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	if cfg.MigrationsViaHook {
		logger.Info("skipping boot-time migration: migrations run in a Helm hook")
	} else if err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := reconcile.NewMetrics(reg)

	src, changes, err := openSource(ctx, cfg, logger)
	if err != nil {
		return err
	}
	rec := reconcile.New(src, st, st.Elector(), metrics, logger, reconcile.Options{
		Interval: cfg.Interval, FullCompareInterval: cfg.FullCompare})
	hooks, err := webhook.NewHandler(cfg.Hooks, rec.Wake, logger, webhook.NewMetrics(reg))
	if err != nil {
		return err
	}
	token, err := readSecret(cfg.APITokenFile)
	if err != nil {
		return fmt.Errorf("--api-token-file: %w", err)
	}
	handler := httpapi.NewHandler(st, httpapi.Config{BearerToken: token, Hooks: hooks, Gatherer: reg}, logger)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("serving", "addr", ln.Addr().String(), "repo", cfg.Repo, "ref", cfg.Ref, "path", cfg.Path)
	if onListen != nil {
		onListen(ln.Addr().String())
	}
	if changes != nil {
		go func() {
			for range changes {
				rec.Wake()
			}
		}()
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	recDone := make(chan error, 1)
	go func() { recDone <- rec.Run(runCtx) }()
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
	}
	cancel()
	<-recDone
	logger.Info("shutting down")
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer shutCancel()
	if serr := srv.Shutdown(shutCtx); serr != nil && err == nil {
		err = serr
	}
	return err
}

// openSource picks the source for --repo: a plain local directory (no git
// repository in it) is watched; anything else is cloned with go-git. The
// channel, if any, signals file changes.
func openSource(ctx context.Context, cfg serveConfig, logger *slog.Logger) (reconcile.Source, <-chan struct{}, error) {
	if isPlainDir(cfg.Repo) {
		dir := filepath.Join(cfg.Repo, filepath.FromSlash(cfg.Path))
		src, err := localdir.New(dir)
		if err != nil {
			return nil, nil, err
		}
		changes, err := localdir.Watch(ctx, dir, 200*time.Millisecond, logger)
		if err != nil {
			return nil, nil, err
		}
		return src, changes, nil
	}
	repo, err := gitsource.Open(ctx, gitsource.Config{URL: cfg.Repo, Ref: cfg.Ref, Path: cfg.Path,
		Auth: cfg.Git, CABundleFile: cfg.GitCAFile, CacheDir: cfg.CacheDir}, logger)
	if err != nil {
		return nil, nil, err
	}
	return gitsource.Source{Repo: repo}, nil, nil
}

// isPlainDir reports whether p is a local directory that is not a git
// repository (neither a work tree with .git nor a bare repository).
func isPlainDir(p string) bool {
	if strings.Contains(p, "://") {
		return false
	}
	info, err := os.Stat(p)
	if err != nil || !info.IsDir() {
		return false
	}
	if _, err := os.Stat(filepath.Join(p, ".git")); err == nil {
		return false
	}
	if _, err := os.Stat(filepath.Join(p, "HEAD")); err == nil {
		if _, err := os.Stat(filepath.Join(p, "objects")); err == nil {
			return false
		}
	}
	return true
}

// readSecret reads a secret from a file, trimming the trailing newline; an
// empty path means no secret.
func readSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}
