package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	legolog "github.com/go-acme/lego/v5/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/certops/certops/agentapi"
	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/alert"
	"github.com/certops/certops/alerting"
	"github.com/certops/certops/backup"
	"github.com/certops/certops/dashboard"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/gitsource"
	"github.com/certops/certops/httpapi"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/localdir"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/redact"
	"github.com/certops/certops/renewalinfo"
	"github.com/certops/certops/retention"
	"github.com/certops/certops/revoke"
	"github.com/certops/certops/secret"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
	"github.com/certops/certops/webhook"
)

// serveConfig is everything `certops serve` needs; flags and CERTOPS_* variables fill it.
type serveConfig struct {
	DatabaseURL           string
	Repo                  string
	Ref                   string
	Path                  string
	Interval              time.Duration
	FullCompare           time.Duration
	Listen                string
	CacheDir              string
	DebugListen           string
	DatabaseWait          time.Duration
	Database              store.Options // session timeouts and the lease TTL
	MigrationsViaHook     bool
	PerCertificateMetrics bool
	Git                   gitsource.Auth
	GitCAFile             string
	APITokenFile          string
	Hooks                 webhook.Config
	HTTP                  httpLimits
	TLS                   tlsFiles
	// VerifyCommits applies only revisions whose commits since the last
	// applied one are all signed by a key in the TrustedKeys files.
	VerifyCommits bool
	TrustedKeys   []string
	// Retention is how much history the leader keeps, and how often it
	// prunes the rest.
	Retention retention.Options
	// RenewalInfo is how often the leader re-checks the ACME renewal
	// windows (ARI) that are due.
	RenewalInfo renewalinfo.Options
}

// defaultGCPercent is serve's GOGC unless the environment sets one.
const defaultGCPercent = 50

// serveCmd runs the reconciler, the status API and the webhook receivers
// until SIGTERM.
func serveCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "serve")
	cfg := declareServe(f)
	newLogger := f.logFlags()
	if err := f.parseNoArgs(args); err != nil {
		return parseExit(err)
	}
	logger, err := newLogger()
	if err != nil {
		return env.fail("certops serve", err)
	}
	if env.getenv("GOGC") == "" {
		// Most of the heap is the loaded desired state, kept between
		// revisions: with Go's default (100) a full reconcile lets the heap
		// grow to twice it. 50 keeps the peak near 1.5 times, for a little
		// more collection while loading (as Prometheus sets 75 by default).
		debug.SetGCPercent(defaultGCPercent)
	}
	if err := serve(ctx, *cfg, logger, nil); err != nil {
		logger.Error("serve failed", "err", err)
		return failure.ExitCode(err)
	}
	return 0
}

// declareServe declares serve's flags on f, each with its CERTOPS_* variable.
func declareServe(f *flagSet) *serveConfig {
	c := &serveConfig{}
	f.StringEnv(&c.DatabaseURL, "database-url", "", "PostgreSQL connection URL")
	f.StringEnv(&c.Repo, "repo", "", "config repository: URL (https://, ssh://, git@host:path, file://), a local git repository, or a plain directory (watched)")
	f.StringEnv(&c.Ref, "ref", "", "branch, tag or commit to follow (default: the remote's default branch)")
	f.StringEnv(&c.Path, "path", ".", "directory of the config inside the repository")
	f.StringEnv(&c.Listen, "listen", ":8080", "HTTP listen address")
	f.StringEnv(&c.CacheDir, "cache-dir", "", "where the git clone is kept and reused across restarts (default: a temporary directory, removed on exit)")
	f.StringEnv(&c.DebugListen, "debug-listen", "", "serve Go's runtime profiles (/debug/pprof/) on this address, unauthenticated: keep it on loopback (default: off)")
	f.StringEnv(&c.Git.Username, "git-username", "", "HTTPS username")
	f.StringEnv(&c.Git.PasswordFile, "git-password-file", "", "file holding the HTTPS password")
	f.StringEnv(&c.Git.TokenFile, "git-token-file", "", "file holding an HTTPS access token")
	f.StringEnv(&c.Git.SSHKeyFile, "git-ssh-key-file", "", "SSH private key file")
	f.StringEnv(&c.Git.KnownHostsFile, "git-known-hosts-file", "", "SSH known_hosts file")
	f.StringEnv(&c.GitCAFile, "git-ca-file", "", "CA bundle for an HTTPS git server")
	f.StringEnv(&c.APITokenFile, "api-token-file", "", "file holding the bearer token required on /api/, /metrics, the dashboard (/ui/) and POST /hooks/reconcile")
	f.StringEnv(&c.Hooks.GitHubSecretFile, "github-webhook-secret-file", "", "GitHub webhook secret file (enables /hooks/github)")
	f.StringEnv(&c.Hooks.GitLabTokenFile, "gitlab-webhook-token-file", "", "GitLab webhook token file (enables /hooks/gitlab)")
	f.StringEnv(&c.Hooks.GenericSecretFile, "generic-webhook-secret-file", "", "HMAC secret file (enables /hooks/generic)")
	f.DurationEnv(&c.DatabaseWait, "database-wait", time.Minute, "how long to wait for the database to become reachable at start")
	f.DurationEnv(&c.Database.LockTimeout, "db-lock-timeout", 10*time.Second, "longest wait for a database lock before a write fails and is retried (lock_timeout)")
	f.DurationEnv(&c.Database.StatementTimeout, "db-statement-timeout", 5*time.Minute, "longest database statement (statement_timeout)")
	f.DurationEnv(&c.Database.IdleInTransactionTimeout, "db-idle-in-transaction-timeout", 10*time.Second, "how long a session may sit in an open transaction before Postgres ends it, releasing its locks (idle_in_transaction_session_timeout)")
	f.DurationEnv(&c.Database.LeaseTTL, "lease-ttl", 10*time.Second, "how long the reconcile lease lives without renewal: a frozen leader is replaced after it")
	f.DurationEnv(&c.Interval, "interval", time.Minute, "poll interval")
	f.DurationEnv(&c.FullCompare, "full-compare-interval", 10*time.Minute, "how often the database is compared in full with Git (drift repair)")
	f.BoolEnv(&c.PerCertificateMetrics, "per-certificate-metrics", true, "export per-certificate metric series (turn off for very large fleets)")
	f.BoolEnv(&c.MigrationsViaHook, "migrations-via-hook", false, "skip migrating at boot (a Helm hook runs certops migrate)")
	f.BoolEnv(&c.VerifyCommits, "verify-commits", false, "apply a revision only if every commit since the last applied one is signed by a trusted key (refused: Stalled, reason UntrustedCommit)")
	f.StringsEnv(&c.TrustedKeys, "trusted-keys", "with --verify-commits: an armored OpenPGP public keyring or an SSH allowed_signers file")
	c.Retention = retention.Defaults()
	f.IntEnv(&c.Retention.KeepVersions, "keep-versions", retention.DefaultKeepVersions, "certificate versions kept per certificate and agent besides those still valid or in use (current, installed, served)")
	f.DurationEnv(&c.Retention.KeepRevisionsFor, "keep-revisions-for", retention.DefaultKeepRevisionsFor, "keep the revision records applied within this age (or among the last --keep-revisions); the last applied one is always kept")
	f.IntEnv(&c.Retention.KeepRevisions, "keep-revisions", retention.DefaultKeepRevisions, "keep the last this many revision records (or those within --keep-revisions-for)")
	f.DurationEnv(&c.Retention.Interval, "prune-interval", retention.DefaultInterval, "how often the leader prunes old certificate versions and revisions, in small batches (0: never)")
	c.RenewalInfo = renewalinfo.Defaults()
	f.DurationEnv(&c.RenewalInfo.Interval, "ari-interval", renewalinfo.DefaultInterval, "how often the leader re-checks the ACME renewal windows (ARI) that are due: each current ACME certificate's daily, or after the CA's Retry-After when shorter, at most hourly (0: never)")
	declareHTTPLimits(f, &c.HTTP)
	declareTLS(f, &c.TLS)
	return c
}

// serve wires the reconciler together and runs it until ctx ends. onListen,
// when set, is told the address the HTTP server listens on. The HTTP server
// starts first, so probes answer (not ready) while the database schema is
// awaited. The git repository is cloned by the leader when
// it first fetches: the API and the agents are served from the database
// even while the remote is unreachable.
func serve(ctx context.Context, cfg serveConfig, logger *slog.Logger, onListen func(addr string)) (err error) {
	if cfg.DatabaseURL == "" {
		return failure.New(failure.Usage, "--database-url (CERTOPS_DATABASE_URL) is required")
	}
	if cfg.Repo == "" {
		return failure.New(failure.Usage, "--repo (CERTOPS_REPO) is required")
	}
	keys, err := trustedKeys(cfg.VerifyCommits, cfg.TrustedKeys)
	if err != nil {
		return err
	}
	if keys != nil && localdir.IsPlainDir(cfg.Repo) {
		return failure.New(failure.Usage, "--verify-commits needs a git repository; --repo is a plain directory")
	}
	if err := cfg.TLS.check(); err != nil {
		return err
	}
	if err := cfg.Retention.Check(); err != nil {
		return failure.Wrap(failure.Usage, err)
	}
	if err := cfg.RenewalInfo.Check(); err != nil {
		return failure.Wrap(failure.Usage, err)
	}
	var tlsConfig *tls.Config
	if cfg.TLS.CertFile != "" {
		if tlsConfig, err = cfg.TLS.serverTLSConfig(logger); err != nil {
			return err
		}
	}
	token, err := readSecret(cfg.APITokenFile)
	if err != nil {
		return fmt.Errorf("--api-token-file: %w", err)
	}
	if cfg.DebugListen != "" {
		if err := serveDebug(ctx, cfg.DebugListen, logger); err != nil {
			return err
		}
	}
	st, err := store.OpenWait(ctx, cfg.DatabaseURL, cfg.DatabaseWait, cfg.Database, logger)
	if err != nil {
		return err
	}
	defer st.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	metrics := reconcile.NewMetrics(reg)
	if err := backup.RegisterMetrics(reg, st, logger); err != nil {
		return err
	}
	// Alert thresholds from Git as gauges, the facts the shipped rules
	// compare them with, and certops' own evaluation of the same alerts.
	// Each evaluation's firing alerts go to the notifier, which sends each
	// once per state change through the channels the AlertPolicy names.
	notifier := notify.New(st, logger, notify.NewMetrics(reg), notify.Options{})
	// The issuers the agent API signs with (on every replica, from its own
	// snapshot of the database); the monitor reads their CAs' expiry.
	// lego logs through its own package-level logger; route it into ours.
	legolog.SetDefault(logger.With("component", "lego"))
	registry := issuer.NewRegistry(logger, issuer.WithACME(issuer.ACMEOptions{Metrics: issuer.NewACMEMetrics(reg)}))
	monitor := alerting.NewMonitor(st, reg, logger, alerting.MonitorOptions{
		CAExpirations:          registry.CAExpirations,
		NoPerCertificateSeries: !cfg.PerCertificateMetrics,
		LastBackup: func(ctx context.Context) (time.Time, error) {
			stats, err := st.BackupStats(ctx)
			return stats.LastSuccess, err
		},
		OnEvaluate: func(ctx context.Context, firing []alert.Alert, at time.Time) {
			if err := notifier.SyncApplied(ctx, firing, at); err != nil && ctx.Err() == nil {
				logger.Warn("sync alert notifications", "err", err)
			}
		}})
	// Webhooks and operators' reconcile requests (POST /hooks/reconcile,
	// with the API's token) wake the leader's reconciler, through the
	// store's relay when it runs on another replica.
	wake := make(chan struct{}, 1)
	cfg.Hooks.ReconcileToken = token
	hooks, err := webhook.NewHandler(cfg.Hooks, func() { poke(wake) }, logger, webhook.NewMetrics(reg))
	if err != nil {
		return err
	}
	// The agent API (own authentication per agent); every replica serves it
	// from its own snapshot of the database.
	agents := newAgentAPI(st, registry, notifier, reg, cfg.PerCertificateMetrics, logger)
	// The agent API's snapshot shares the objects the reconciler loads (on
	// the leader) instead of decoding a second copy of each.
	latest := new(spec.Latest)
	agents.snapshot.ShareObjects(latest)
	var self *selfIssued
	if cfg.TLS.SelfIssuer != "" {
		if self, err = newSelfIssued(cfg.TLS.SelfIssuer, cfg.TLS.DNSNames, registry, logger); err != nil {
			return err
		}
		if tlsConfig, err = cfg.TLS.tlsConfig(self.getCertificate); err != nil {
			return err
		}
	}

	var starting atomic.Bool
	starting.Store(true)
	apiCfg := httpapi.Config{BearerToken: token, Hooks: hooks, Gatherer: reg, MetricsText: agents.gauges, Alerts: monitor.Alerts, Issuers: registry,
		Ready: func() error {
			if starting.Load() {
				return errors.New("starting: waiting for the database schema")
			}
			return agents.snapshot.Ready()
		}}
	apiCfg.UI = dashboard.New(httpapi.NewService(st, apiCfg), dashboard.Config{Token: token}, logger)
	api := httpapi.NewHandler(st, apiCfg, logger)
	mux := http.NewServeMux()
	var agentHandler http.Handler = agents.handler
	if cfg.TLS.ClientCAFile != "" {
		agentHandler = requireClientCert(agentHandler)
	}
	mux.Handle(agentproto.PathPrefix, agentHandler)
	// The public revocation routes of the local CA issuers (CRL, OCSP, CA
	// certificate): no token, read by relying parties; every replica
	// serves them from Postgres.
	mux.Handle(revoke.PathPrefix, revoke.NewHandler(st, registry, revoke.Config{}, logger.With("component", "pki")))
	mux.Handle("/", api)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := newHTTPServer(mux, cfg.HTTP, logger)
	srv.TLSConfig = tlsConfig
	serveErr := make(chan error, 1)
	go func() {
		limited := limitListener(ln, cfg.HTTP.MaxConnections)
		if tlsConfig != nil {
			serveErr <- srv.ServeTLS(limited, "", "")
		} else {
			serveErr <- srv.Serve(limited)
		}
	}()
	if self != nil {
		selfCtx, stopSelf := context.WithCancel(ctx)
		selfDone := make(chan struct{})
		go func() { defer close(selfDone); self.Run(selfCtx) }()
		defer func() { stopSelf(); <-selfDone }()
	}
	logger.Info("serving", "addr", ln.Addr().String(), "tls", tlsConfig != nil, "client_certs", cfg.TLS.ClientCAFile != "", "repo", redact.URL(cfg.Repo), "ref", cfg.Ref, "path", cfg.Path)
	if onListen != nil {
		onListen(ln.Addr().String())
	}
	// stopHTTP stops taking requests and waits for those in flight. It runs
	// before the background work is cancelled (agent requests start ACME
	// orders and announce events), and again, as a no-op, on early returns.
	stopHTTP := sync.OnceValue(func() error {
		logger.Info("shutting down")
		shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutCtx); err != nil {
			return fmt.Errorf("http server shutdown: %w", err)
		}
		return nil
	})
	defer func() {
		if serr := stopHTTP(); serr != nil && err == nil {
			err = serr
		}
	}()

	if cfg.MigrationsViaHook {
		logger.Info("skipping boot-time migration: migrations run in a Helm hook")
		if err := st.WaitForSchema(ctx); err != nil {
			return ignoreCanceled(err)
		}
	} else if err := st.Migrate(ctx); err != nil {
		return ignoreCanceled(fmt.Errorf("migrate: %w", err))
	}
	src, verifier, changes, closeSource, err := openSource(ctx, cfg, keys, logger)
	if err != nil {
		return ignoreCanceled(err)
	}
	defer closeSource()
	if verifier != nil {
		logger.Info("applying only commits signed by trusted keys", "keys", keys.Len(), "files", cfg.TrustedKeys)
	}
	// History is pruned, and the ACME renewal windows re-checked, by the
	// leader only, for as long as its term lasts.
	pruner := retention.New(st, cfg.Retention, retention.NewMetrics(reg), logger.With("component", "retention"))
	windows := renewalinfo.New(st, registry, cfg.RenewalInfo, renewalinfo.NewMetrics(reg), logger.With("component", "renewalinfo"))
	rec := reconcile.New(src, st, reconcile.ElectorOf(st.TryLeader), metrics, logger, reconcile.Options{
		Interval: cfg.Interval, FullCompareInterval: cfg.FullCompare, Events: notifier, Verifier: verifier, Latest: latest,
		WhileLeading: []func(context.Context){pruner.Run, windows.Run}})
	starting.Store(false)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var background sync.WaitGroup
	background.Go(func() { st.RelayWakes(runCtx, wake, rec.Wake) })
	if changes != nil { // a watched directory
		background.Go(func() {
			for {
				select {
				case <-runCtx.Done():
					return
				case _, ok := <-changes:
					if !ok {
						return // the watcher ended
					}
					rec.Wake()
				}
			}
		})
	}
	background.Go(func() { _ = agents.snapshot.Run(runCtx) })
	background.Go(func() {
		// A restarted replica serves agents from the database first: its
		// first load of the repository would compete for the CPU with
		// the snapshot's first load. The reconciler starts once the
		// snapshot is loaded, or after a while if the database is slow.
		select {
		case <-agents.snapshot.Loaded():
		case <-time.After(10 * time.Second):
		case <-runCtx.Done():
			return
		}
		_ = rec.Run(runCtx)
	})
	background.Go(func() { _ = agents.presence.Run(runCtx) }) // flushes once more at the end
	background.Go(func() { _ = agents.orders.Run(runCtx) })   // waits for the orders to release their claims
	background.Go(func() { _ = agents.events.Run(runCtx) })
	background.Go(func() { _ = monitor.Run(runCtx) })
	background.Go(func() { _ = notifier.Run(runCtx) })
	// Revocations of ACME certificates go to their CA (each claimed by one replica).
	background.Go(func() { _ = revoke.NewACMERevoker(st, registry, 0, logger.With("component", "revoke")).Run(runCtx) })
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
	}
	// Requests first, then the background work they feed, then (deferred)
	// the store everything uses.
	if serr := stopHTTP(); serr != nil && err == nil {
		err = serr
	}
	cancel()
	background.Wait()
	return err
}

// agentAPI is the agent API's parts: the handler serves requests, the
// others have loops to run.
type agentAPI struct {
	snapshot *agentapi.Snapshot
	presence *agentapi.Presence
	orders   *agentapi.Orders
	events   *agentapi.Announcer
	handler  *agentapi.Handler
	// gauges is registered; /metrics serves its per-certificate text
	// after the registry's.
	gauges *agentapi.StateCollector
}

// newAgentAPI wires the agent API: every part reads its tuning from the
// defaults of agentapi.Config.
func newAgentAPI(st *store.Store, registry *issuer.Registry, events agentapi.EventSink, reg prometheus.Registerer, perCertificate bool, logger *slog.Logger) agentAPI {
	var cfg agentapi.Config
	metrics := agentapi.NewMetrics(reg)
	a := agentAPI{snapshot: agentapi.NewSnapshot(st, registry, cfg, logger),
		presence: agentapi.NewPresence(st, cfg, logger), events: agentapi.NewAnnouncer(events, logger)}
	a.gauges = agentapi.NewStateCollector(a.snapshot, a.presence, perCertificate)
	reg.MustRegister(a.gauges)
	ledger := agentapi.NewLedger(st, a.snapshot, a.events, metrics, cfg, logger)
	a.orders = agentapi.NewOrders(st, a.snapshot, ledger, metrics, cfg, logger)
	issuance := agentapi.NewIssuance(a.snapshot, registry, a.orders, ledger, metrics, cfg, logger)
	a.handler = agentapi.NewHandler(agentapi.Parts{Snapshot: a.snapshot, Presence: a.presence,
		Issuance: issuance, Ledger: ledger, Orders: a.orders}, logger)
	return a
}

// poke sends on a channel of capacity one without blocking.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ignoreCanceled treats an error caused by shutdown as a clean exit.
func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// trustedKeys loads the --trusted-keys files when --verify-commits is on
// (nil when it is off). Either flag without the other is bad usage.
func trustedKeys(verify bool, files []string) (*gitsource.TrustedKeys, error) {
	switch {
	case !verify && len(files) > 0:
		return nil, failure.New(failure.Usage, "--trusted-keys is set but --verify-commits is not: commits would not be verified")
	case !verify:
		return nil, nil
	case len(files) == 0:
		return nil, failure.New(failure.Usage, "--verify-commits needs --trusted-keys (CERTOPS_TRUSTED_KEYS)")
	}
	keys, err := gitsource.LoadTrustedKeys(files)
	if err != nil {
		return nil, failure.Wrap(failure.Usage, fmt.Errorf("--trusted-keys: %w", err))
	}
	return keys, nil
}

// openSource picks the source for --repo: a plain local directory (no git
// repository in it) is watched; anything else is cloned with go-git when
// first needed, and its commits are verified against keys when keys is not
// nil. The channel, if any, signals file changes until ctx ends;
// closeSource releases the source.
func openSource(ctx context.Context, cfg serveConfig, keys *gitsource.TrustedKeys, logger *slog.Logger) (src reconcile.Source, verifier reconcile.CommitVerifier, changes <-chan struct{}, closeSource func(), err error) {
	if localdir.IsPlainDir(cfg.Repo) {
		dir := filepath.Join(cfg.Repo, filepath.FromSlash(cfg.Path))
		src, changes, err := localdir.Open(ctx, dir, logger)
		return src, nil, changes, func() {}, err
	}
	// Without --cache-dir the clone goes to a temporary directory, removed
	// on exit: on disk, not in memory, where a large repository's objects
	// would stay on the heap.
	cacheDir, removeCache := cfg.CacheDir, func() {}
	if cacheDir == "" {
		if cacheDir, err = os.MkdirTemp("", "certops-clone-"); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("temporary clone directory: %w", err)
		}
		removeCache = func() {
			if err := os.RemoveAll(cacheDir); err != nil {
				logger.Warn("remove the temporary clone", "err", err)
			}
		}
	}
	// The repository is opened by the leader's first fetch and reopened
	// after failures: a replica started while the remote is unreachable
	// serves from the database meanwhile (FetchFailed, retried).
	repo, err := gitsource.NewLazySource(gitsource.Config{URL: cfg.Repo, Ref: cfg.Ref, Path: cfg.Path,
		Auth: cfg.Git, CABundleFile: cfg.GitCAFile, CacheDir: cacheDir}, logger)
	if err != nil {
		removeCache()
		return nil, nil, nil, nil, err
	}
	if keys != nil {
		verifier = repo.Verifier(keys)
	}
	return repo, verifier, nil, func() {
		if err := repo.Close(); err != nil {
			logger.Warn("close the git repository", "err", err)
		}
		removeCache()
	}, nil
}

// readSecret reads an optional secret file; an empty path means no secret.
func readSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	return secret.ReadFile(path)
}

// buildInfo is certops_build_info: always 1, labelled with the release
// version, the Go version and the VCS revision the binary was built from
// ("unknown" when the build recorded none).
func buildInfo() prometheus.Collector {
	revision := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "certops_build_info",
		Help: "Always 1: the version, Go version and VCS revision of the running certops."}, []string{"version", "goversion", "revision"})
	g.WithLabelValues(version, runtime.Version(), revision).Set(1)
	return g
}
