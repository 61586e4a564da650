// Command certops-agent runs on a host: it installs the certificates the
// certops reconciler assigns to it, reloads their services, verifies and
// rolls back. See package agent.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

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
       certops-agent status --state-dir DIR [-o text|json]
       certops-agent version

SIGHUP makes a running agent sync now.

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
	if len(args) > 1 && args[1] == "status" {
		return statusCmd(args[2:], getenv, stdout, stderr, fail)
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
	} else {
		stopHUP := syncOnHUP(ctx, a)
		if err = a.Run(ctx); err != nil {
			logger.Error("agent failed", "err", err)
		}
		stopHUP()
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

// syncOnHUP makes SIGHUP start a pass now (the operator's "sync now"),
// until ctx ends or the returned stop is called.
func syncOnHUP(ctx context.Context, a *agent.Agent) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				a.SyncNow()
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}

// statusCmd: certops-agent status --state-dir DIR [-o text|json] — what
// the state directory says: the certificates installed (serial, expiry),
// the last pass and the last report delivered. It reads the directory
// only, so it works whether the agent runs or not.
func statusCmd(args []string, getenv func(string) string, stdout, stderr io.Writer, fail func(error) int) int {
	fs := envflag.New("certops-agent status", "CERTOPS_AGENT_", getenv, stderr)
	var dir, output string
	fs.StringEnv(&dir, "state-dir", "", "the agent's state directory")
	fs.StringVar(&output, "o", "text", "output: text or json")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: certops-agent status --state-dir DIR [-o text|json]\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return fail(failure.Wrap(failure.Usage, err))
	}
	switch {
	case fs.NArg() > 0:
		return fail(failure.New(failure.Usage, fmt.Sprintf("status: unexpected argument %q", fs.Arg(0))))
	case dir == "":
		return fail(failure.New(failure.Usage, "status: --state-dir (or CERTOPS_AGENT_STATE_DIR) is required"))
	case output != "text" && output != "json":
		return fail(failure.New(failure.Usage, fmt.Sprintf("status: -o %q: want text or json", output)))
	}
	st, err := agent.ReadStatus(dir)
	if err != nil {
		return fail(err)
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return fail0(enc.Encode(st), fail)
	}
	printAgentStatus(stdout, st, time.Now())
	return 0
}

func fail0(err error, fail func(error) int) int {
	if err != nil {
		return fail(err)
	}
	return 0
}

// printAgentStatus writes the state directory's summary as a person reads it.
func printAgentStatus(w io.Writer, st agent.Status, now time.Time) {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		d := now.Sub(t)
		if d < 0 {
			return t.UTC().Format(time.RFC3339) + " (in " + envflag.Approx(-d) + ")"
		}
		return t.UTC().Format(time.RFC3339) + " (" + envflag.Approx(d) + " ago)"
	}
	fmt.Fprintf(w, "State dir:    %s\n", st.StateDir)
	switch {
	case st.LastSync == nil:
		fmt.Fprintln(w, "Last sync:    never")
	case st.LastSync.Error != "":
		fmt.Fprintf(w, "Last sync:    %s, failed: %s\n", at(st.LastSync.At), strings.Join(strings.Fields(st.LastSync.Error), " "))
	default:
		fmt.Fprintf(w, "Last sync:    %s, ok\n", at(st.LastSync.At))
	}
	if r := st.LastReport; r != nil {
		result := r.Result
		if r.Stage != "" {
			result += " at stage " + r.Stage
		}
		name := r.Certificate
		if r.Bundle != "" {
			name = "trust bundle " + r.Bundle
		}
		fmt.Fprintf(w, "Last report:  %s, %s %s\n", at(r.At), name, result)
	} else {
		fmt.Fprintln(w, "Last report:  none")
	}
	if st.InterruptedInstall {
		fmt.Fprintln(w, "Warning:      an install was interrupted (journal.json); the agent rolls it back or forward when it starts")
	}
	if len(st.PendingKeys) > 0 {
		fmt.Fprintf(w, "Pending keys: %s (generated for certificates not installed yet)\n", strings.Join(st.PendingKeys, ", "))
	}
	fmt.Fprintln(w)
	printBundles(w, st.Bundles, at)
	if len(st.Certificates) == 0 {
		fmt.Fprintln(w, "No certificates installed.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tSERIAL\tEXPIRES\tINSTALLED\tFAILURES")
	for _, c := range st.Certificates {
		failures := "-"
		if c.Failures > 0 {
			failures = fmt.Sprintf("%d, next try %s", c.Failures, at(c.RetryAt))
			if c.PolicyRefused {
				failures += " (refused by the host policy)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, orDash(c.Serial), at(c.NotAfter), at(c.InstalledAt), failures)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printBundles lists the trust bundles of the state directory, if any,
// followed by a blank line.
func printBundles(w io.Writer, bundles []agent.InstalledBundle, at func(time.Time) string) {
	if len(bundles) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TRUST BUNDLE\tPATH\tSHA256\tINSTALLED\tFAILURES")
	for _, b := range bundles {
		failures := "-"
		if b.Failures > 0 {
			failures = fmt.Sprintf("%d, next try %s", b.Failures, at(b.RetryAt))
		}
		sum := orDash(b.SHA256)
		if len(sum) > 12 {
			sum = sum[:12] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Name, orDash(b.Path), sum, at(b.InstalledAt), failures)
	}
	tw.Flush()
	fmt.Fprintln(w)
}
