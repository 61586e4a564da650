// Package agent is the certops host agent: it polls the reconciler for the
// certificates assigned to this host (package agentproto is the wire
// protocol), generates their private keys on the host, obtains certificates
// for them, installs the files atomically as a set, reloads the service,
// verifies what the service serves and rolls back when the reload or the
// verification fails. Every outcome is reported to the reconciler. The
// private key never leaves the host: requests carry CSRs only.
//
// # Decisions
//
// For each assignment, on every pass (a 304 poll re-evaluates the cached
// assignments, so a renewal still happens at RenewAt):
//
//   - install Current when the agent holds its private key (the installed key
//     or a pending one, see below) and Current is not what the state dir
//     records as installed or its files on disk are gone or changed;
//   - otherwise request a certificate when there is no Current, the SpecHash
//     differs from the one last installed, the installed files are gone and
//     the key is not held, or now ≥ RenewAt; never before NotBefore.
//
// A deployment that failed (issue refused, reload or verify rolled back) is
// retried after a per-certificate backoff (PollInterval doubling up to an
// hour), unless the SpecHash or Current changes first.
//
// The server's error answers are decided on by their code (the table in
// package agentproto), not their status: on an issue request, backoff,
// issuer_unavailable and unavailable hold that certificate back until
// Retry-After while the pass goes on; conflict and suspended poll the
// assignments again;
// unauthorized and internal (like an unreachable server) stop the pass and
// Run backs off, honouring Retry-After; any other code fails the deployment.
//
// # Keys
//
// Keys live in StateDir/keys (0700 dir, 0600 files): NAME.key is the key of
// the installed certificate, NAME.pending.key a key generated for a
// certificate not yet installed. A pending key is written before its CSR is
// sent, so a crash between issue and install loses nothing: the next pass
// finds Current matching the pending key and installs it. rotationPolicy
// Never reuses NAME.key while its type matches the spec and spec.reissue
// has not changed since it was installed (a new reissue value is a forced
// rotation: a new key); Always uses a new key for every certificate: a
// pending key (never deployed) or a fresh one.
//
// A suspended assignment (the certificate or the agent has spec.suspend) is
// left alone: nothing is issued, installed or renewed, and the files stay.
//
// # Install
//
// The files of a certificate (cert, chain, fullchain, key, and the forms
// built here from the key and certificate: combined PEM, DER, PKCS#12 and
// JKS, the keystores encrypted with passwords read from host files at each
// install; the paths set) are swapped as one transaction recorded in
// StateDir/journal.json:
// prepare (temp files listed) → temp files written, fsynced, chmod/chown'd
// in each target's directory → swap (each old file hard-linked to a backup,
// then the temp renamed over it; directories fsynced) → reload → commit →
// backups removed → journal removed. Recovery rule, applied when New finds a
// journal: a journal that has not reached commit is rolled back (backups
// renamed over the targets, targets that did not exist before removed,
// temps removed), a committed one is rolled forward (backups removed). So a
// crash at any point leaves the old set or the new set, never a mix. When
// the crash happened during reload, the first pass after recovery runs the
// reload argv again so the service picks the old files up. Backups are
// removed as soon as the deployment is committed. Missing target
// directories are created with mode 0755. A target that is a symlink is
// replaced by a regular file (and restored as the symlink on rollback).
//
// That is the files layout: each file is whole, the set is not while it is
// swapped. With Files.Layout "symlink" the files (all in one directory D)
// are written to a new version directory D/.certops.NAME/v-RANDOM, and the
// journal swaps one link, D/.certops.NAME/current, to it (the first time
// also each path's link D/BASE → .certops.NAME/current/BASE): one rename
// flips the set, so even before recovery a crash leaves the old or the new
// set whole. Version directories the current link does not name are pruned
// when a journal is committed or rolled back.
//
// # Host policy
//
// Config.Policy (certops-agent --policy-file) and Config.AllowedDirs bound
// what the config repository may make the agent do: every written path
// must resolve inside an allowed directory (existing directories on the
// way resolved with os.Root, so a symlink out is refused), every reload
// argv must be in AllowedReloads, file modes are capped by MaxFileMode.
// An assignment outside the policy is refused before a certificate is
// requested: reported failed at stage policy with an error starting with
// "HostPolicyRefused: ". Keys are never written more open than 0600,
// with or without a policy. The checks happen before the install; the
// install itself writes by path, so a host user who can swap a directory
// for a symlink between the check and the write is not defended against.
//
// # Verify
//
// Verification dials Verify.Address with SNI and compares the SHA-256 of the
// served leaf's DER with the installed certificate: it checks the identity
// of what is served, not trust (the handshake skips chain verification).
//
// After a deployment, Run keeps looking: every ServedCheckInterval (10
// minutes by default, ±10 %) it dials each assignment's Verify address the
// same way and reports the served leaf's serial and validity, or the error,
// to the server (CheckServed), which compares them with what is installed:
// a certificate renewed on disk but never loaded by the service shows up.
//
// An Agent is not safe for concurrent use: call Run, or SyncOnce, from one
// goroutine.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/redact"
	"github.com/certops/certops/textlimit"
)

// Config configures an Agent. Server, Name, TokenFile and StateDir are
// required.
type Config struct {
	Server    string // reconciler URL, e.g. https://certops.example.com
	Name      string // the Agent's metadata.name
	TokenFile string // file holding the bearer token (whitespace trimmed)
	StateDir  string // keys, state.json and the install journal

	PollInterval  time.Duration // default 30s
	ReloadTimeout time.Duration // default 30s
	VerifyTimeout time.Duration // per dial; default 10s
	// ServedCheckInterval is how often Run checks what the Verify address
	// of each assignment serves and reports it (see CheckServed), with
	// ±10 % jitter; the first round follows the first successful pass.
	// 0 means DefaultServedCheckInterval; negative turns the checks off.
	ServedCheckInterval time.Duration

	// CABundleFile, when set, holds the PEM CAs trusted for the server's
	// TLS certificate instead of the system pool.
	CABundleFile string
	// InsecurePlaintext allows an http:// Server that is not a loopback
	// address. Without it New refuses one: the token and the certificates
	// would cross the network in the clear.
	InsecurePlaintext bool
	// AllowedDirs, when set, are the only directories the agent writes
	// certificate files and http-01 challenge files under (each a clean
	// absolute path); a deploy path or webroot elsewhere is refused. Empty
	// allows any absolute path, as the server says.
	AllowedDirs []string
	// Policy, when set, is the host policy (see Policy): its AllowedDirs
	// are added to AllowedDirs, its AllowedReloads bound the reload argv,
	// its MaxFileMode caps the certificate files' modes. An assignment
	// outside it is refused before anything is issued, written or run.
	// Keys are capped at 0600 with or without a policy.
	Policy *Policy
	// HTTPClient overrides the client built from CABundleFile.
	HTTPClient *http.Client
	Logger     *slog.Logger // default: discard
	Version    string       // sent in heartbeats
	Now        func() time.Time
}

// Defaults.
const (
	DefaultPollInterval  = 30 * time.Second
	DefaultReloadTimeout = 30 * time.Second
	DefaultVerifyTimeout = 10 * time.Second

	heartbeatEvery  = 5 * time.Minute
	maxRetryBackoff = 5 * time.Minute
	maxDeployRetry  = time.Hour
	verifyWindow    = 3 * time.Second
	// fastPollInterval is the poll interval while an ACME order of this
	// agent or an http-01 challenge it serves is in progress.
	fastPollInterval = time.Second
	maxQueuedReport  = 64
)

// Agent is the runtime of one certops agent.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	client *client
	state  *stateStore

	etag        string                  // of the cached assignments
	assignments []agentproto.Assignment // last 200 answer
	challenges  []agentproto.Challenge  // http-01 challenges of the last 200 answer
	bundles     []agentproto.Bundle     // trust bundles of the last 200 answer
	served      *challengeFiles         // http-01 files written, by token
	fastPoll    bool                    // an order or challenge is in progress: poll sooner
	reports     []agentproto.Report     // not yet delivered, oldest first
	retryAt     time.Time               // the server asked us to wait (Retry-After)
	lastBeat    time.Time               // last successful heartbeat
	identified  bool                    // the server named this agent as the token's (see poll)
	reloadAfter []string                // reload argv owed after a startup rollback
	nextServed  time.Time               // when the next round of served checks is due
	syncNow     chan struct{}           // SyncNow: end Run's wait (capacity 1)

	// Tuning and fault injection for tests.
	backoffBase  time.Duration // first retry delay of Run; default 1s
	verifyWindow time.Duration // how long verify retries
	crashAt      int           // fail with errCrash at the crashAt-th install mutation (1-based); 0 never
	mutations    int
	geteuid      func() int

	dirs []string // Config.AllowedDirs ∪ Policy.AllowedDirs
}

// New validates cfg, prepares the state dir, reads the token once (so a
// missing or empty token file is reported at start) and recovers an install
// interrupted by a crash. An invalid cfg (a field missing, a bad Server or
// AllowedDirs) is a failure.Invalid error.
func New(cfg Config) (*Agent, error) {
	if err := cfg.defaults(); err != nil {
		return nil, failure.Wrap(failure.Invalid, err)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		var err error
		if hc, err = newHTTPClient(cfg.CABundleFile); err != nil {
			return nil, err
		}
	}
	base, err := url.Parse(cfg.Server)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, failure.Wrap(failure.Invalid, fmt.Errorf("server %q: want an http:// or https:// URL", redact.URL(cfg.Server)))
	}
	if base.Scheme == "http" && !cfg.InsecurePlaintext && !isLoopbackHost(base.Hostname()) {
		return nil, failure.Wrap(failure.Invalid, fmt.Errorf("server %q: plain HTTP to a host that is not loopback would send the token in the clear; use https:// (with --ca-file for a private CA) or, knowingly, --insecure-plaintext", redact.URL(cfg.Server)))
	}
	c := &client{base: base, hc: hc, tokenFile: cfg.TokenFile, userAgent: "certops-agent/" + cfg.Version}
	if _, err := c.token(); err != nil {
		return nil, err
	}
	st, err := openState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:          cfg,
		log:          cfg.Logger.With("agent", cfg.Name),
		now:          cfg.Now,
		client:       c,
		state:        st,
		backoffBase:  time.Second,
		verifyWindow: verifyWindow,
		geteuid:      os.Geteuid,
		dirs:         cfg.allowedDirs(),
		syncNow:      make(chan struct{}, 1),
	}
	if err := a.recoverJournal(); err != nil {
		return nil, fmt.Errorf("recover interrupted install: %w", err)
	}
	a.served = openChallengeFiles(cfg.StateDir, a.log)
	return a, nil
}

func (c *Config) defaults() error {
	var missing []error
	for _, f := range []struct{ name, v string }{
		{"Server", c.Server}, {"Name", c.Name}, {"TokenFile", c.TokenFile}, {"StateDir", c.StateDir},
	} {
		if f.v == "" {
			missing = append(missing, fmt.Errorf("agent config: %s is required", f.name))
		}
	}
	if err := errors.Join(missing...); err != nil {
		return err
	}
	for _, d := range c.AllowedDirs {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d {
			return fmt.Errorf("agent config: allowed directory %q is not a clean absolute path", d)
		}
	}
	if c.Policy != nil {
		if err := c.Policy.validate(); err != nil {
			return fmt.Errorf("agent config: policy: %w", err)
		}
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.ReloadTimeout <= 0 {
		c.ReloadTimeout = DefaultReloadTimeout
	}
	if c.VerifyTimeout <= 0 {
		c.VerifyTimeout = DefaultVerifyTimeout
	}
	if c.ServedCheckInterval == 0 {
		c.ServedCheckInterval = DefaultServedCheckInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	return nil
}

// isLoopbackHost reports whether host (a URL's host name, without port) is
// localhost or a loopback IP address (127.0.0.0/8, ::1). Names are not
// resolved: the check is done before anything is sent.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func newHTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := pki.LoadCertPool(caFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr}, nil
}

// Run polls and deploys until ctx is done, then returns nil. It heartbeats
// after the first poll and every five minutes. When the server answers for
// another agent than Config.Name (the token is another agent's), it acts on
// nothing and returns that error at once. When the server is unreachable or
// refuses the agent, it keeps the installed files and retries with
// exponential backoff and jitter (capped at five minutes, at least
// Retry-After when the server sent one).
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent started", "server", redact.URL(a.cfg.Server), "version", a.cfg.Version, "interval", a.cfg.PollInterval,
		"served_check_interval", a.cfg.ServedCheckInterval)
	failures := 0
	for {
		deployErr, serverErr := a.sync(ctx)
		if ctx.Err() != nil {
			a.log.Info("agent stopped")
			return nil
		}
		if errors.Is(serverErr, errWrongAgent) {
			return serverErr
		}
		a.heartbeatIfDue(ctx)
		if serverErr == nil {
			a.checkServedIfDue(ctx)
		}
		a.state.recordSync(a.now(), errors.Join(serverErr, deployErr), a.log)
		if deployErr != nil {
			a.log.Warn("deployment failed", "err", deployErr)
		}
		wait := jitter(a.cfg.PollInterval, 0.1)
		if a.fastPoll {
			wait = min(wait, fastPollInterval)
		}
		if serverErr != nil {
			failures++
			wait = a.retryDelay(failures, serverErr)
			a.log.Warn("sync failed; keeping installed files", "err", serverErr, "retry_in", wait.Round(time.Millisecond))
		} else {
			failures = 0
		}
		select {
		case <-ctx.Done():
			a.log.Info("agent stopped")
			return nil
		case <-a.syncNow:
			a.log.Info("sync requested; syncing now")
		case <-time.After(wait):
		}
	}
}

// SyncNow asks Run for a pass now: the wait for the next poll (or the
// backoff after failures) ends at once, and a pass in progress is followed
// by another. Requests while one is pending join it. It never blocks and,
// unlike the rest of Agent, may be called from any goroutine
// (certops-agent calls it on SIGHUP).
func (a *Agent) SyncNow() {
	select {
	case a.syncNow <- struct{}{}:
	default:
	}
}

// retryDelay is the wait after the n-th consecutive failed pass.
func (a *Agent) retryDelay(n int, err error) time.Duration {
	d := a.backoffBase
	for i := 1; i < n && d < maxRetryBackoff; i++ {
		d *= 2
	}
	d = jitter(min(d, maxRetryBackoff), 0.5)
	if errors.Is(err, errUnauthorized) {
		// A rejected token does not fix itself quickly; never poll faster
		// than the normal interval.
		d = max(d, a.cfg.PollInterval)
	}
	if wait := a.retryAt.Sub(a.now()); wait > d {
		d = wait
	}
	return d
}

// jitter spreads d over [d·(1−f), d].
func jitter(d time.Duration, f float64) time.Duration {
	return d - time.Duration(rand.Float64()*f*float64(d))
}

// SyncOnce runs one pass: deliver queued reports, poll the assignments and
// bring each of them to its desired state. It returns every failure joined:
// the server being unreachable or refusing the agent, and each certificate
// whose deployment failed.
func (a *Agent) SyncOnce(ctx context.Context) error {
	deployErr, serverErr := a.sync(ctx)
	err := errors.Join(serverErr, deployErr)
	a.state.recordSync(a.now(), err, a.log)
	return err
}

// sync is SyncOnce with the failures kept apart: serverErr (the pass could
// not talk to the server; Run backs off) and deployErr (a certificate
// failed; it has its own retry schedule).
func (a *Agent) sync(ctx context.Context) (deployErr, serverErr error) {
	if len(a.reloadAfter) > 0 {
		argv := a.reloadAfter
		a.reloadAfter = nil
		if err := a.reloadAllowed(argv); err != nil {
			a.log.Error("not reloading after recovering an interrupted install", "err", err)
		} else if err := a.reload(ctx, argv); err != nil {
			a.log.Error("reload after recovering an interrupted install failed", "err", err)
		}
	}
	if wait := a.retryAt.Sub(a.now()); wait > 0 {
		return nil, fmt.Errorf("server asked to retry in %s", wait.Round(time.Second))
	}
	a.flushReports(ctx)
	assignments, err := a.poll(ctx)
	if err != nil {
		return nil, a.serverTrouble(err)
	}
	a.fastPoll = len(a.challenges) > 0
	if err := a.serveChallenges(ctx, a.challenges); err != nil {
		return nil, a.serverTrouble(err)
	}
	var errs []error
	for _, as := range assignments {
		err := a.syncOne(ctx, as)
		switch {
		case err == nil:
		case errors.Is(err, errCrash):
			return nil, err
		case isServerTrouble(err):
			return errors.Join(errs...), a.serverTrouble(err)
		default:
			errs = append(errs, fmt.Errorf("certificate %s: %w", as.Name, err))
		}
	}
	for _, b := range a.bundles {
		err := a.syncBundle(ctx, b)
		switch {
		case err == nil:
		case errors.Is(err, errCrash):
			return nil, err
		default:
			errs = append(errs, fmt.Errorf("trust bundle %s: %w", b.Name, err))
		}
	}
	a.flushReports(ctx)
	return errors.Join(errs...), nil
}

// serverTrouble logs what the server said and remembers Retry-After.
func (a *Agent) serverTrouble(err error) error {
	if errors.Is(err, errUnauthorized) {
		a.log.Error("token rejected by the server (401); check the token file and the Agent's tokenSHA256")
	}
	var se *serverError
	if errors.As(err, &se) && se.RetryAfter > 0 {
		a.retryAt = a.now().Add(se.RetryAfter)
	}
	return err
}

// poll returns the current assignments: fetched when they changed, the
// cached ones on 304.
func (a *Agent) poll(ctx context.Context) ([]agentproto.Assignment, error) {
	got, etag, err := a.client.assignments(ctx, a.etag)
	if err != nil {
		return nil, err
	}
	if got == nil { // 304
		return a.assignments, nil
	}
	if got.Agent != a.cfg.Name {
		return nil, wrongAgent(got.Agent, a.cfg.Name)
	}
	a.identified = true
	a.etag, a.assignments, a.challenges, a.bundles = etag, got.Certificates, got.Challenges, got.Bundles
	a.log.Debug("assignments changed", "count", len(got.Certificates), "etag", etag)
	return a.assignments, nil
}

// errWrongAgent marks the answer of a server that knows the token as
// another agent's: the agent must not act on that agent's assignments.
var errWrongAgent = errors.New("the token is another agent's")

// wrongAgent is errWrongAgent with the names, as a failure.Forbidden error.
func wrongAgent(tokenAgent, name string) error {
	return failure.Wrap(failure.Forbidden, fmt.Errorf("%w: the server knows it as agent %q, but this agent is --name %q; refusing to act (fix --name or the token file)",
		errWrongAgent, tokenAgent, name))
}

// heartbeatIfDue sends a heartbeat at start and every heartbeatEvery.
func (a *Agent) heartbeatIfDue(ctx context.Context) {
	if !a.identified {
		return // not before the server said whose token this is
	}
	if !a.lastBeat.IsZero() && a.now().Sub(a.lastBeat) < heartbeatEvery {
		return
	}
	if a.now().Before(a.retryAt) {
		return
	}
	host, _ := os.Hostname()
	err := a.client.heartbeat(ctx, agentproto.Heartbeat{Version: wireField(a.cfg.Version), Hostname: wireField(host)})
	if err != nil {
		a.log.Warn("heartbeat failed", "err", a.serverTrouble(err))
		return
	}
	a.lastBeat = a.now()
}

// wireField is s as the server accepts a one-line field: valid UTF-8
// without control characters, at most agentproto.MaxFieldBytes.
func wireField(s string) string {
	return textlimit.Truncate(textlimit.Clean(s, false), agentproto.MaxFieldBytes)
}

// report queues r and tries to deliver the queue. Its error (command
// output, say) is made valid UTF-8 without NUL or control characters and
// cut to agentproto.MaxReportError, so that the server takes it.
func (a *Agent) report(ctx context.Context, r agentproto.Report) {
	r.At = a.now().UTC()
	r.Error = textlimit.Bound(r.Error, agentproto.MaxReportError)
	log := a.log.With("certificate", r.Certificate, "result", r.Result, "serial", r.Serial)
	if r.Bundle != "" {
		log = a.log.With("bundle", r.Bundle, "result", r.Result, "sha256", r.SHA256)
	}
	if r.Error != "" {
		log.Warn("deployment outcome", "stage", r.Stage, "err", r.Error)
	} else {
		log.Info("deployment outcome")
	}
	a.reports = append(a.reports, r)
	if n := len(a.reports) - maxQueuedReport; n > 0 {
		a.reports = a.reports[n:]
	}
	a.flushReports(ctx)
}

// flushReports delivers queued reports in order, stopping at the first
// failure (the rest wait for the next pass). A report the server refuses as
// malformed is dropped.
func (a *Agent) flushReports(ctx context.Context) {
	for len(a.reports) > 0 {
		err := a.client.report(ctx, a.reports[0])
		if err != nil && isServerTrouble(err) {
			a.log.Debug("report not delivered; will retry", "err", err)
			return
		}
		if err != nil {
			a.log.Warn("server refused report; dropping it", "certificate", a.reports[0].Certificate, "err", err)
		} else {
			r := a.reports[0]
			a.state.st.LastReport = &ReportRecord{At: r.At, Certificate: r.Certificate, Bundle: r.Bundle, Result: r.Result, Stage: r.Stage}
		}
		a.reports = a.reports[1:]
	}
}
