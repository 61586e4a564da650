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
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/certops/certops/agent"
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
	AllowDirs string // comma-separated, split into Config.AllowedDirs
	Once      bool
	LogFormat string
	LogLevel  string
}

// run is the whole program; it returns the process exit code: 0 success, 1
// failure (including a failed --once sync), 2 bad usage.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 1 && args[1] == "version" {
		fmt.Fprintln(stdout, "certops-agent", version)
		return 0
	}
	cfg, err := parseFlags(args[1:], getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "certops-agent:", err)
		return 2
	}
	logger, err := newLogger(cfg.LogFormat, cfg.LogLevel, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "certops-agent:", err)
		return 2
	}
	cfg.Logger, cfg.Version = logger, version
	if len(cfg.AllowedDirs) == 0 {
		logger.Warn("no --allow-dirs: this agent writes certificate files wherever the config repository says")
	}
	a, err := agent.New(cfg.Config)
	if err != nil {
		fmt.Fprintln(stderr, "certops-agent:", err)
		return 1
	}
	if cfg.Once {
		if err := a.SyncOnce(ctx); err != nil {
			logger.Error("sync failed", "err", err)
			return 1
		}
		return 0
	}
	if err := a.Run(ctx); err != nil {
		logger.Error("agent failed", "err", err)
		return 1
	}
	return 0
}

// parseFlags reads the flags; each defaults to its CERTOPS_AGENT_*
// variable (--token-file ↔ CERTOPS_AGENT_TOKEN_FILE).
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("certops-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		c    config
		errs []error
	)
	envName := func(name string) string {
		return "CERTOPS_AGENT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	}
	str := func(p *string, name, def, help string) {
		if v := getenv(envName(name)); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, help+" (env "+envName(name)+")")
	}
	dur := func(p *time.Duration, name string, def time.Duration, help string) {
		if v := getenv(envName(name)); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(name), err))
			}
			def = d
		}
		fs.DurationVar(p, name, def, help+" (env "+envName(name)+")")
	}
	boolean := func(p *bool, name, help string) {
		switch v := strings.ToLower(getenv(envName(name))); v {
		case "", "0", "false", "no":
		case "1", "true", "yes":
			*p = true
		default:
			errs = append(errs, fmt.Errorf("%s: want true or false, got %q", envName(name), v))
		}
		fs.BoolVar(p, name, *p, help+" (env "+envName(name)+")")
	}
	str(&c.Server, "server", "", "reconciler URL, e.g. https://certops.example.com")
	str(&c.Name, "name", "", "this agent's name (the Agent object's metadata.name)")
	str(&c.TokenFile, "token-file", "", "file holding the agent's bearer token")
	str(&c.StateDir, "state-dir", "", "directory for private keys, state and the install journal")
	str(&c.CABundleFile, "ca-file", "", "PEM CA bundle trusted for the server's TLS certificate (default: system roots)")
	str(&c.AllowDirs, "allow-dirs", "", "comma-separated directories the agent may write certificate and challenge files under (default: anywhere the server says)")
	dur(&c.PollInterval, "interval", agent.DefaultPollInterval, "how often to poll for assignments")
	dur(&c.ReloadTimeout, "reload-timeout", agent.DefaultReloadTimeout, "how long a reload command may run")
	dur(&c.VerifyTimeout, "verify-timeout", agent.DefaultVerifyTimeout, "timeout of one verification dial")
	str(&c.LogFormat, "log-format", "text", "log format: text or json")
	str(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	boolean(&c.Once, "once", "run one sync and exit (exit status 1 if it failed)")
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
			errs = append(errs, fmt.Errorf("--%s (or %s) is required", req.name, envName(req.name)))
		}
	}
	for _, d := range strings.Split(c.AllowDirs, ",") {
		if d = strings.TrimSpace(d); d != "" {
			c.AllowedDirs = append(c.AllowedDirs, d)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &c, nil
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
	}
}
