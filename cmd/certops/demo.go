package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/certops/certops/agent"
	"github.com/certops/certops/examples"
	"github.com/certops/certops/localpg"
	"github.com/certops/certops/pki"
)

// demoCmd runs the whole system on one machine: a throwaway PostgreSQL
// cluster, a local CA, the bundled example config committed to a local git
// repository, the reconciler with its API, and one local agent (web-01)
// that installs its certificates under the demo directory, until Ctrl-C
// (or --duration).
func demoCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "demo")
	var listen, dir string
	var duration time.Duration
	var keep bool
	f.StringEnv(&listen, "listen", "127.0.0.1:8080", "HTTP listen address of the demo reconciler")
	f.StringEnv(&dir, "dir", "", "working directory (default: a new temporary directory)")
	f.DurationEnv(&duration, "duration", 0, "stop after this long (default: run until interrupted)")
	f.BoolEnv(&keep, "keep", false, "keep the working directory on exit")
	newLogger := f.logFlags()
	if err := f.parseNoArgs(args); err != nil {
		return parseExit(err)
	}
	logger, err := newLogger()
	if err != nil {
		return env.fail("certops demo", err)
	}
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	if dir != "" {
		// A new --dir is made as the temporary one is, reachable by the
		// postgres user.
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return env.fail("certops demo", err)
		}
	} else {
		if dir, err = os.MkdirTemp("", "certops-demo-"); err != nil {
			return env.fail("certops demo", err)
		}
		// Run as root, PostgreSQL runs as the postgres user and must be able
		// to reach its data directory inside this one.
		if err := os.Chmod(dir, 0o711); err != nil {
			return env.fail("certops demo", err)
		}
		if !keep {
			defer os.RemoveAll(dir)
		}
	}

	fmt.Fprintln(env.stdout, "certops demo: starting a throwaway PostgreSQL cluster ...")
	cluster, err := localpg.Start(ctx, localpg.Options{Dir: filepath.Join(dir, "postgres"), Fast: true, Logger: logger})
	if err != nil {
		return env.fail("certops demo", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cluster.Stop(stopCtx); err != nil {
			logger.Warn("stop postgres", "err", err)
		}
	}()
	if err := cluster.EnsureDatabase(ctx, "certops"); err != nil {
		return env.fail("certops demo", err)
	}
	ca, err := demoCA(filepath.Join(dir, "ca"))
	if err != nil {
		return env.fail("certops demo", err)
	}
	// Alerts go to a receiver of the demo's own that prints them here.
	console, err := startConsoleReceiver(ctx, env.stdout, filepath.Join(dir, "notify.key"))
	if err != nil {
		return env.fail("certops demo", err)
	}
	defer console.Close()
	hostRoot := filepath.Join(dir, "host")
	repoDir := filepath.Join(dir, "config-repo")
	rewrite := demoRewrite(ca, hostRoot, filepath.Join(dir, "backups"), console)
	switch _, err := os.Stat(filepath.Join(repoDir, ".git")); {
	case err == nil: // a second run on the same --dir: keep the repository and its edits
		fmt.Fprintf(env.stdout, "certops demo: reusing %s\n", repoDir)
		if err := console.refreshChannel(repoDir); err != nil {
			return env.fail("certops demo", err)
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := initExampleRepo(repoDir, rewrite); err != nil {
			return env.fail("certops demo", err)
		}
	default:
		return env.fail("certops demo", err)
	}
	// One backup now, as the BackupPolicy says, so the policy works from the
	// start and CertopsBackupTooOld does not fire at once.
	if err := demoBackup(ctx, cluster.URL("certops"), repoDir, env.getenv, logger); err != nil {
		logger.Warn("demo backup not taken; CertopsBackupTooOld will fire", "err", err)
	}
	tokenFile := filepath.Join(dir, "web-01.token")
	if err := os.WriteFile(tokenFile, []byte(demoAgentToken+"\n"), 0o600); err != nil {
		return env.fail("certops demo", err)
	}

	// The reconciler serves HTTPS with a certificate of the demo CA; the
	// agent trusts that CA.
	tlsDir := filepath.Join(dir, "tls")
	serving, err := writeServingPair(ca.ca, tlsDir, listen)
	if err != nil {
		return env.fail("certops demo", err)
	}
	hc, err := demoHTTPClient(ca.certFile)
	if err != nil {
		return env.fail("certops demo", err)
	}
	cfg := serveConfig{DatabaseURL: cluster.URL("certops"), Repo: repoDir, Ref: "main", Path: ".",
		Interval: 5 * time.Second, FullCompare: 10 * time.Minute, Listen: listen, PerCertificateMetrics: true,
		TLS: serving}
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	var agentDone chan error // set once the agent runs
	err = serve(ctx, cfg, logger, func(addr string) {
		base := "https://" + addr
		ag, err := agent.New(agent.Config{Server: base, Name: demoAgent, TokenFile: tokenFile,
			StateDir: filepath.Join(dir, "agent-state"), PollInterval: 5 * time.Second,
			CABundleFile: ca.certFile, Logger: logger, Version: version})
		if err != nil {
			logger.Error("demo agent not started", "err", err)
		} else {
			agentDone = make(chan error, 1)
			go func() {
				// Start once the reconciler knows the agent, rather than
				// have its first requests refused.
				waitForAgent(agentCtx, hc, base, demoAgent)
				agentDone <- ag.Run(agentCtx)
			}()
		}
		fmt.Fprintf(env.stdout, `certops demo is running.

  dashboard     %[1]s/ui/
  status        %[1]s/api/v1/status
  certificates  %[1]s/api/v1/certificates
  agents        %[1]s/api/v1/agents
  revisions     %[1]s/api/v1/revisions
  metrics       %[1]s/metrics

  config repo   %[2]s   (edit, git commit: applied within seconds)
  alerts        printed here (the demo's NotificationChannel posts to a receiver of its own)
  backups       %[8]s
  local CA      %[3]s   (trust it: curl --cacert %[3]s ...)
  serving cert  %[7]s
  agent         %[4]s installs its certificates under %[5]s
  database      %[6]s

Press Ctrl-C to stop.
`, base, repoDir, ca.certFile, demoAgent, filepath.Join(hostRoot, "etc", "ssl"), cfg.DatabaseURL, serving.CertFile,
			filepath.Join(dir, "backups"))
	})
	stopAgent()
	if agentDone != nil {
		if aerr := <-agentDone; aerr != nil && err == nil {
			err = fmt.Errorf("agent: %w", aerr)
		}
	}
	if err != nil {
		return env.fail("certops demo", err)
	}
	return 0
}

// waitForAgent waits (up to a minute) until the reconciler is ready and
// serves the named Agent object, plus a moment for the agent API to pick it up.
func waitForAgent(ctx context.Context, hc *http.Client, base, name string) {
	deadline := time.Now().Add(time.Minute)
	for _, path := range []string{"/readyz", "/api/v1/agents/" + name} {
		for time.Now().Before(deadline) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
			if err != nil {
				return
			}
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(1500 * time.Millisecond): // the agent API refreshes every second
	}
}

// writeServingPair issues the demo reconciler's serving certificate from
// ca, for 127.0.0.1, ::1, localhost and the host of listen when it names
// one, into dir/tls.crt and dir/tls.key.
func writeServingPair(ca *pki.CA, dir, listen string) (tlsFiles, error) {
	names := []string{"127.0.0.1", "localhost", "::1"}
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" && !slices.Contains(names, host) {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			names = append(names, host)
		}
	}
	chain, key, err := ca.IssueServing(names, 30*24*time.Hour, false, time.Now())
	if err != nil {
		return tlsFiles{}, fmt.Errorf("issue the serving certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tlsFiles{}, err
	}
	t := tlsFiles{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	if err := os.WriteFile(t.KeyFile, key, 0o600); err != nil {
		return tlsFiles{}, err
	}
	if err := os.WriteFile(t.CertFile, chain, 0o644); err != nil {
		return tlsFiles{}, err
	}
	return t, nil
}

// demoHTTPClient trusts the demo CA only.
func demoHTTPClient(caFile string) (*http.Client, error) {
	pool, err := pki.LoadCertPool(caFile)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}

// The demo's agent: the example's web-01 with its documented demo token.
const (
	demoAgent      = "web-01"
	demoAgentToken = "demo-token-web-01"
)

// demoRewrite adapts the example config to one machine: the CA paths (and
// the vault example's CA bundle) point at the demo CA, deploy paths move under hostRoot, reload commands become
// "true" and verify blocks and file owners go (nothing listens, and the demo
// may not run as root); backups go to backupDir, and the AlertPolicy
// notifies the console receiver alone (the example's Slack and webhook
// channels point at files and hosts the demo does not have). Everything
// else is the example as shipped.
func demoRewrite(ca *createdCA, hostRoot, backupDir string, console *consoleReceiver) func(name, content string) string {
	paths := strings.NewReplacer(
		"/etc/certops/ca/tls.crt", ca.certFile,
		"/etc/certops/ca/tls.key", ca.keyFile,
		"/etc/certops/vault/ca.pem", ca.certFile, // the vault example loads; no certificate uses it
		"/etc/ssl/", filepath.Join(hostRoot, "etc", "ssl")+"/",
		"/var/backups/certops", backupDir,
	)
	return func(name, content string) string {
		if name == "notifications.yaml" {
			return console.channelYAML()
		}
		var out []string
		dropping := -1 // indentation of a dropped block's key, or -1
		for _, line := range strings.Split(paths.Replace(content), "\n") {
			trimmed := strings.TrimLeft(line, " ")
			indent := len(line) - len(trimmed)
			if dropping >= 0 && indent > dropping && trimmed != "" {
				continue // inside the dropped block
			}
			dropping = -1
			switch key, _, _ := strings.Cut(trimmed, ":"); key {
			case "verify":
				dropping = indent
				continue
			case "owner", "group":
				continue
			case "reload":
				line = line[:indent] + `reload: ["true"]`
			case "notify":
				line = line[:indent] + "notify: [" + consoleChannel + "]"
			}
			out = append(out, line)
		}
		return strings.Join(out, "\n")
	}
}

// initExampleRepo writes the bundled example config, passed through
// rewrite, into dir and commits it on branch main.
func initExampleRepo(dir string, rewrite func(name, content string) string) error {
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
		return os.WriteFile(target, []byte(rewrite(p, string(data))), 0o644)
	})
	if err != nil {
		return fmt.Errorf("write example config: %w", err)
	}
	if _, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"}}); err != nil {
		return fmt.Errorf("init example repo: %w", err)
	}
	return commitAll(dir, "Example config")
}

// commitAll commits every change in the work tree of the repository at dir.
func commitAll(dir, message string) error {
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return fmt.Errorf("git add in %s: %w", dir, err)
	}
	sig := &object.Signature{Name: "certops demo", Email: "demo@certops.invalid", When: time.Now()}
	if _, err := wt.Commit(message, &git.CommitOptions{Author: sig}); err != nil {
		return fmt.Errorf("git commit in %s: %w", dir, err)
	}
	return nil
}
