// Command certops-agent runs on a host: it installs the certificates the
// certops reconciler assigns to it, reloads their services, verifies and
// rolls back. See package agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/certops/certops/agent"
	"github.com/certops/certops/envflag"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/redact"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// version is the release version; set with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: certops-agent --server URL --name NAME --token-file FILE --state-dir DIR [flags]
       certops-agent version

Every flag can also be set by its CERTOPS_AGENT_* environment variable.
Flags:
`

// config is everything the command reads from flags and the environment.
type config struct {
	agent.Config
	AllowDirs  string // comma-separated, split into Config.AllowedDirs
	PolicyFile string // the host policy, loaded into Config.Policy
	Once       bool
	LogFormat  string
	LogLevel   string
}

// run is the whole program; it returns the process exit code, through
// failure.ExitCode as certops does: 0 success, 1 failure (including a
// failed --once sync), 2 bad usage (an unknown flag or argument, a missing
// or bad flag value).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 1 && args[1] == "version" {
		fmt.Fprintln(stdout, "certops-agent", version)
		return 0
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "certops-agent:", redact.Text(err.Error())) // a --server URL may hold a password
		return failure.ExitCode(err)
	}
	cfg, err := parseFlags(args[1:], getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return fail(failure.Wrap(failure.Usage, err))
	}
	logger, err := envflag.Logger(cfg.LogFormat, cfg.LogLevel, stderr)
	if err != nil {
		return fail(failure.Wrap(failure.Usage, err))
	}
	cfg.Logger, cfg.Version = logger, version
	if len(cfg.AllowedDirs) == 0 && (cfg.Policy == nil || len(cfg.Policy.AllowedDirs) == 0) {
		logger.Warn("no --allow-dirs and no allowedDirs in a --policy-file: this agent writes certificate files wherever the config repository says")
	}
	if cfg.Policy == nil {
		logger.Warn("no --policy-file: this agent runs whatever reload command the config repository says")
	}
	a, err := agent.New(cfg.Config)
	if err != nil {
		if failure.KindOf(err) == failure.Invalid {
			err = failure.Wrap(failure.Usage, err) // the Config is the flags: a bad flag value
		}
		return fail(err)
	}
	if cfg.Once {
		err = a.SyncOnce(ctx)
		if err != nil {
			logger.Error("sync failed", "err", err)
		}
	} else if err = a.Run(ctx); err != nil {
		logger.Error("agent failed", "err", err)
	}
	return failure.ExitCode(err)
}

// parseFlags reads the flags; each defaults to its CERTOPS_AGENT_*
// variable (--token-file ↔ CERTOPS_AGENT_TOKEN_FILE).
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := envflag.New("certops-agent", "CERTOPS_AGENT_", getenv, stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		c    config
		errs []error
	)
	fs.StringEnv(&c.Server, "server", "", "reconciler URL, e.g. https://certops.example.com")
	fs.StringEnv(&c.Name, "name", "", "this agent's name (the Agent object's metadata.name)")
	fs.StringEnv(&c.TokenFile, "token-file", "", "file holding the agent's bearer token")
	fs.StringEnv(&c.StateDir, "state-dir", "", "directory for private keys, state and the install journal")
	fs.StringEnv(&c.CABundleFile, "ca-file", "", "PEM CA bundle trusted for the server's TLS certificate (default: system roots)")
	fs.BoolEnv(&c.InsecurePlaintext, "insecure-plaintext", false, "allow an http:// --server that is not a loopback address (the token then crosses the network in the clear)")
	fs.StringEnv(&c.AllowDirs, "allow-dirs", "", "comma-separated directories the agent may write certificate and challenge files under, added to the policy file's allowedDirs (default: anywhere the server says)")
	fs.StringEnv(&c.PolicyFile, "policy-file", "", "host policy YAML (allowedDirs, allowedReloads, maxFileMode) bounding what the config repository may make this agent write or run")
	fs.DurationEnv(&c.PollInterval, "interval", agent.DefaultPollInterval, "how often to poll for assignments")
	fs.DurationEnv(&c.ReloadTimeout, "reload-timeout", agent.DefaultReloadTimeout, "how long a reload command may run")
	fs.DurationEnv(&c.VerifyTimeout, "verify-timeout", agent.DefaultVerifyTimeout, "timeout of one verification dial")
	fs.DurationEnv(&c.ServedCheckInterval, "served-check-interval", agent.DefaultServedCheckInterval,
		"how often to check and report what each verify address serves (±10 % jitter); 0 turns the checks off")
	fs.StringEnv(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringEnv(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolEnv(&c.Once, "once", false, "run one sync and exit (exit status 1 if it failed)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	for _, req := range []struct{ name, v string }{
		{"server", c.Server}, {"name", c.Name}, {"token-file", c.TokenFile}, {"state-dir", c.StateDir},
	} {
		if req.v == "" {
			errs = append(errs, fmt.Errorf("--%s (or %s) is required", req.name, fs.EnvName(req.name)))
		}
	}
	switch {
	case c.ServedCheckInterval < 0:
		errs = append(errs, fmt.Errorf("--served-check-interval %s: must not be negative (0 turns the checks off)", c.ServedCheckInterval))
	case c.ServedCheckInterval == 0:
		c.ServedCheckInterval = -1 // agent.Config: negative is off
	}
	c.AllowedDirs = append(c.AllowedDirs, envflag.SplitList(c.AllowDirs)...)
	if c.PolicyFile != "" {
		p, err := agent.LoadPolicy(c.PolicyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--policy-file: %w", err))
		}
		c.Policy = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &c, nil
}
