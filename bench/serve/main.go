// Command serve is the real-process benchmark behind `just bench-serve SIZE`
// (issue 12, goal 2). It builds certops, generates a fleet of SIZE
// certificates and SIZE/5 agents (fleet.Generate), commits it and packs it
// (`git repack -adf`), and measures the floor: `git clone --bare --no-local`
// of the packed repository plus one COPY of the same rows (bench.FloorRows)
// into a fresh migrated database. Then it starts a real `certops serve`
// against an empty database and measures, with the process' VmRSS sampled
// every 100 ms: the first apply, 10 one-file pushes, a full walk of
// /api/v1/certificates at its default settings, 5 /metrics scrapes, the idle
// CPU and the resident set once settled, and how soon a restarted process
// serves the API from Postgres. The last line on stdout is
//
//	bench-serve certs=N agents=M apply_s=F x_packed_floor=F peak_rss_mib=F steady_rss_mib=F idle_cpu_pct=F walk_s=F metrics_ms=F restart_ready_s=F
//
// with further figures on the lines before it, and progress on stderr.
//
// The databases are created on the server of $DATABASE_URL when it is set,
// else in a throwaway local cluster (localpg, durable: fsync on). The
// environment is passed on to certops serve, so `GOMEMLIMIT=250MiB just
// bench-serve 50000` measures the chart's setting. Everything listens on
// 127.0.0.1 only, and everything is removed at the end, also after an
// error, ^C or -timeout.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/certops/certops/bench"
	"github.com/certops/certops/fleet"
	"github.com/certops/certops/localpg"
	"github.com/certops/certops/migrations"
	"github.com/certops/certops/state"
)

// Steps of the run after the first apply.
const (
	pushes        = 10
	scrapes       = 5
	idleSettle    = 10 * time.Second // wait before measuring idle CPU
	idleWindow    = 20 * time.Second // idle CPU measured over this
	pollEvery     = 25 * time.Millisecond
	stopGrace     = 30 * time.Second // SIGTERM to exit, before a kill
	cleanupBudget = 2 * time.Minute
)

func main() {
	timeout := flag.Duration("timeout", 20*time.Minute, "give up, clean up and fail after this long")
	interval := flag.Duration("interval", time.Second, "certops serve --interval (the chart's default is 1m)")
	keep := flag.Bool("keep", false, "keep the work directory (fleet repository, serve logs) and print its path")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench/serve [flags] SIZE\n\n"+
			"SIZE is the number of certificates; the fleet has SIZE/5 agents.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	n, err := strconv.Atoi(flag.Arg(0))
	if flag.NArg() != 1 || err != nil || n < 5 {
		flag.Usage()
		os.Exit(2)
	}
	cfg := config{size: fleet.Size{Certificates: n, Agents: n / 5}, interval: *interval, keep: *keep}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeoutCause(ctx, *timeout, fmt.Errorf("-timeout %s reached", *timeout))
	started := time.Now()
	res, err := run(ctx, cfg, logger)
	cancel()
	stop()
	if err != nil {
		logger.Error("bench-serve failed", "err", err, "after", time.Since(started).Round(time.Millisecond))
		os.Exit(1)
	}
	logger.Info("bench-serve done", "took", time.Since(started).Round(time.Millisecond))
	res.print(os.Stdout, cfg)
}

// config is what the command line chose.
type config struct {
	size     fleet.Size
	interval time.Duration
	keep     bool
}

// results are the figures of one run.
type results struct {
	cloneFloor, copyFloor time.Duration
	rows                  int

	apply                  time.Duration // serve start → the head applied
	listen                 time.Duration // serve start → listening
	pushMean, pushMax      time.Duration // commit → applied, each
	walk                   time.Duration
	walkPages              int
	metricsMean            time.Duration
	metricsMax             time.Duration
	metricsBytes           int
	metricsSeries          int
	idleCPU, idleCPUChild  float64 // % of one core
	rssApply, rssPushes    float64 // VmRSS after each step, MiB
	rssWalk, rssMetrics    float64
	steadyRSS, peakRSS     float64 // VmRSS after the idle window; VmHWM then
	sampledMaxRSS          float64 // the highest 100 ms sample of VmRSS
	shutdown               time.Duration
	restartReady           time.Duration
	restartListen          time.Duration
	restartRSS, restartHWM float64
}

func (r results) floor() time.Duration { return r.cloneFloor + r.copyFloor }

func (r results) print(w io.Writer, cfg config) {
	fmt.Fprintf(w, "floor clone_ms=%.1f copy_ms=%.1f floor_ms=%.1f rows=%d\n",
		ms(r.cloneFloor), ms(r.copyFloor), ms(r.floor()), r.rows)
	fmt.Fprintf(w, "serve listen_s=%.3f push_ms_mean=%.1f push_ms_max=%.1f (commit to applied, polling every %s) walk_pages=%d\n",
		r.listen.Seconds(), ms(r.pushMean), ms(r.pushMax), cfg.interval, r.walkPages)
	fmt.Fprintf(w, "metrics metrics_ms_max=%.1f bytes=%d series=%d\n", ms(r.metricsMax), r.metricsBytes, r.metricsSeries)
	fmt.Fprintf(w, "rss after_apply_mib=%.1f after_pushes_mib=%.1f after_walk_mib=%.1f after_metrics_mib=%.1f sampled_max_mib=%.1f\n",
		r.rssApply, r.rssPushes, r.rssWalk, r.rssMetrics, r.sampledMaxRSS)
	fmt.Fprintf(w, "idle children_cpu_pct=%.2f (git subprocesses, not in idle_cpu_pct)\n", r.idleCPUChild)
	fmt.Fprintf(w, "restart shutdown_s=%.3f listen_s=%.3f ready_rss_mib=%.1f ready_hwm_mib=%.1f\n",
		r.shutdown.Seconds(), r.restartListen.Seconds(), r.restartRSS, r.restartHWM)
	fmt.Fprintf(w, "bench-serve certs=%d agents=%d apply_s=%.3f x_packed_floor=%.2f peak_rss_mib=%.2f steady_rss_mib=%.2f idle_cpu_pct=%.2f walk_s=%.3f metrics_ms=%.2f restart_ready_s=%.3f\n",
		cfg.size.Certificates, cfg.size.Agents, r.apply.Seconds(), r.apply.Seconds()/r.floor().Seconds(),
		r.peakRSS, r.steadyRSS, r.idleCPU, r.walk.Seconds(), ms(r.metricsMean), r.restartReady.Seconds())
}

// harness holds what the steps share.
type harness struct {
	cfg    config
	logger *slog.Logger
	work   string // holds the binary, the fleet, the floor's clone and the serve logs
	repo   string // the fleet repository
	bin    string // the certops binary
	client *http.Client
	procs  []*serveProc // every certops serve started, for the cleanup
}

// run does the whole benchmark and cleans up after itself.
func run(ctx context.Context, cfg config, logger *slog.Logger) (res results, err error) {
	work, err := os.MkdirTemp("", "bench-serve-")
	if err != nil {
		return res, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil // loopback only
	h := &harness{cfg: cfg, logger: logger, work: work, repo: filepath.Join(work, "fleet"),
		bin: filepath.Join(work, "certops"), client: &http.Client{Transport: transport, Timeout: time.Minute}}
	defer h.removeWork()

	if err := h.build(ctx); err != nil {
		return res, err
	}
	head, err := h.makeFleet(ctx)
	if err != nil {
		return res, err
	}
	pg, err := startPostgres(ctx, logger)
	if err != nil {
		return res, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), cleanupBudget)
		defer cancel()
		if cerr := pg.close(cctx); cerr != nil {
			logger.Warn("clean up postgres", "err", cerr)
		}
	}()
	if err := h.measureFloor(ctx, pg, &res); err != nil {
		return res, fmt.Errorf("floor: %w", err)
	}
	_, dbURL, err := pg.create(ctx, "")
	if err != nil {
		return res, err
	}
	defer func() { h.stopAll(err != nil) }()
	if err := h.measureServe(ctx, dbURL, head, &res); err != nil {
		return res, err
	}
	return res, nil
}

// moduleRoot is the directory of the certops module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run bench-serve inside the certops module")
	}
	return filepath.Dir(gomod), nil
}

// build compiles ./cmd/certops into h.bin. GOMEMLIMIT and GOGC, meant for
// certops serve, are kept from the compiler.
func (h *harness) build(ctx context.Context) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", h.bin, "./cmd/certops")
	cmd.Dir = root
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "GOGC=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/certops: %w", err)
	}
	h.logger.Info("built certops", "bin", h.bin, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// makeFleet generates the fleet, commits it on branch main, packs it and
// returns the head commit.
func (h *harness) makeFleet(ctx context.Context) (string, error) {
	start := time.Now()
	if err := fleet.Generate(h.repo, h.cfg.size); err != nil {
		return "", err
	}
	head, err := fleet.InitRepo(ctx, h.repo)
	if err != nil {
		return "", err
	}
	if _, err := fleet.Git(ctx, h.repo, "repack", "-adf", "-q"); err != nil {
		return "", err
	}
	counts, err := fleet.Git(ctx, h.repo, "count-objects", "-v")
	if err != nil {
		return "", err
	}
	h.logger.Info("fleet generated, committed and packed", "size", h.cfg.size.String(), "head", head,
		"objects", strings.ReplaceAll(counts, "\n", " "), "took", time.Since(start).Round(time.Millisecond))
	return head, nil
}

// measureFloor times, once, a bare clone of the packed fleet repository over
// the pack protocol and one COPY of the fleet's rows into the objects table
// of a fresh migrated database. Building the rows, creating and migrating
// the database and connecting are not timed.
func (h *harness) measureFloor(ctx context.Context, pg *pgServer, res *results) error {
	rows, err := bench.FloorRows(h.repo)
	if err != nil {
		return err
	}
	name, dbURL, err := pg.create(ctx, "_floor")
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), cleanupBudget)
		defer cancel()
		if err := pg.drop(cctx, name); err != nil {
			h.logger.Warn("drop the floor database", "err", err)
		}
	}()
	if err := migrate(ctx, dbURL); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	dest := filepath.Join(h.work, "floor-clone.git")
	defer os.RemoveAll(dest)

	start := time.Now()
	if _, err := fleet.Git(ctx, h.work, "clone", "--bare", "--no-local", "-q", h.repo, dest); err != nil {
		return err
	}
	cloned := time.Now()
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"objects"}, bench.FloorColumns(), pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("COPY: %w", err)
	}
	copied := time.Now()
	if n != int64(len(rows)) {
		return fmt.Errorf("COPY wrote %d rows, want %d", n, len(rows))
	}
	res.cloneFloor, res.copyFloor, res.rows = cloned.Sub(start), copied.Sub(cloned), len(rows)
	h.logger.Info("floor measured", "clone", res.cloneFloor.Round(time.Millisecond),
		"copy", res.copyFloor.Round(time.Millisecond), "rows", len(rows))
	return nil
}

// migrate applies certops' migrations to the database at dbURL.
func migrate(ctx context.Context, dbURL string) error {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	return migrations.Up(ctx, db)
}

// measureServe runs certops serve against the empty database at dbURL and
// drives the steps of the run, filling res.
func (h *harness) measureServe(ctx context.Context, dbURL, head string, res *results) error {
	args := []string{"serve", "--database-url", dbURL, "--repo", "file://" + h.repo,
		"--listen", "127.0.0.1:0", "--interval", h.cfg.interval.String(), "--log-format", "json"}
	var env []any
	for _, k := range []string{"GOMEMLIMIT", "GOGC", "GOMAXPROCS"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k, v)
		}
	}
	h.logger.Info("starting certops serve", env...)
	p, base, err := h.startServe(ctx, args, "serve-1.log")
	if err != nil {
		return err
	}
	res.listen = time.Since(p.started)
	h.logger.Info("certops serve listening", "url", base, "pid", p.pid(), "after", res.listen.Round(time.Millisecond))

	// The first apply, from the process start.
	applied, err := h.waitApplied(ctx, p, base, head)
	if err != nil {
		return fmt.Errorf("first apply: %w", err)
	}
	res.apply = applied.Sub(p.started)
	res.rssApply = h.checkpoint(p, "first apply done", "apply", res.apply.Round(time.Millisecond))

	if err := h.push(ctx, p, base, res); err != nil {
		return err
	}
	res.rssPushes = h.checkpoint(p, "pushes applied", "mean", res.pushMean.Round(time.Millisecond), "max", res.pushMax.Round(time.Millisecond))

	if err := h.walk(ctx, base, res); err != nil {
		return err
	}
	res.rssWalk = h.checkpoint(p, "API walk done", "walk", res.walk.Round(time.Millisecond), "pages", res.walkPages)

	if err := h.scrape(ctx, base, res); err != nil {
		return err
	}
	res.rssMetrics = h.checkpoint(p, "metrics scraped", "mean", res.metricsMean.Round(time.Microsecond),
		"max", res.metricsMax.Round(time.Microsecond), "bytes", res.metricsBytes, "series", res.metricsSeries)

	if err := h.idle(ctx, p, res); err != nil {
		return err
	}
	return h.restart(ctx, p, args, res)
}

// startServe starts certops serve with args, its output in the work
// directory's logName, and returns it with its base URL once it listens.
func (h *harness) startServe(ctx context.Context, args []string, logName string) (*serveProc, string, error) {
	p, err := startServe(h.bin, args, h.work, filepath.Join(h.work, logName))
	if err != nil {
		return nil, "", err
	}
	h.procs = append(h.procs, p)
	addr, err := p.addr(ctx)
	if err != nil {
		return nil, "", err
	}
	return p, "http://" + addr, nil
}

// checkpoint logs msg with the process' current and peak resident set and
// returns the current one in MiB.
func (h *harness) checkpoint(p *serveProc, msg string, attrs ...any) float64 {
	rss, err1 := p.statusMiB("VmRSS")
	hwm, err2 := p.statusMiB("VmHWM")
	if err := errors.Join(err1, err2); err != nil {
		h.logger.Warn("read the resident set", "err", err)
	}
	h.logger.Info(msg, append(attrs, "rss_mib", fmt.Sprintf("%.1f", rss), "hwm_mib", fmt.Sprintf("%.1f", hwm))...)
	return rss
}

// apiStatus is the part of GET /api/v1/status the harness reads.
type apiStatus struct {
	LastAppliedRevision   string            `json:"lastAppliedRevision"`
	LastAttemptedRevision string            `json:"lastAttemptedRevision"`
	Conditions            []state.Condition `json:"conditions"`
	Errors                []string          `json:"errors"`
}

// waitApplied polls the status until the revision applied is commit and
// returns when it saw that. A revision stalled on commit (invalid, refused)
// is an error, as is the process ending.
func (h *harness) waitApplied(ctx context.Context, p *serveProc, base, commit string) (time.Time, error) {
	lastErr := ""
	for {
		var st apiStatus
		err := h.getJSON(ctx, base+"/api/v1/status", &st)
		now := time.Now()
		switch {
		case err == nil && strings.HasSuffix(st.LastAppliedRevision, commit):
			return now, nil
		case err == nil && strings.HasSuffix(st.LastAttemptedRevision, commit) && stalled(st):
			return now, fmt.Errorf("revision %s stalled: %s", commit, strings.Join(st.Errors, "; "))
		case err != nil && err.Error() != lastErr && ctx.Err() == nil:
			lastErr = err.Error()
			h.logger.Debug("status not available yet", "err", err)
		}
		if done, err := p.exited(); done {
			return now, fmt.Errorf("%w; log tail:\n%s", err, p.logTail(20))
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return now, fmt.Errorf("wait for %s to be applied: %w", commit, err)
		}
	}
}

func stalled(st apiStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == state.ConditionStalled && c.Status == state.True {
			return true
		}
	}
	return false
}

// push commits one-file changes to the fleet repository, one at a time, and
// times each from the commit until certops has applied it. That includes
// waiting for certops' next poll (--interval).
func (h *harness) push(ctx context.Context, p *serveProc, base string, res *results) error {
	var sum time.Duration
	for i := range pushes {
		file, err := fleet.ChangeOneFile(h.repo, i)
		if err != nil {
			return err
		}
		commit, err := fleet.Commit(ctx, h.repo, fmt.Sprintf("bench-serve: change %d", i))
		if err != nil {
			return err
		}
		committed := time.Now()
		applied, err := h.waitApplied(ctx, p, base, commit)
		if err != nil {
			return fmt.Errorf("push %d (%s): %w", i+1, file, err)
		}
		took := applied.Sub(committed)
		h.logger.Info("push applied", "n", i+1, "file", file, "took", took.Round(time.Millisecond))
		sum += took
		res.pushMax = max(res.pushMax, took)
	}
	res.pushMean = sum / pushes
	return nil
}

// walk lists every certificate through /api/v1/certificates with its
// default settings, following next, and checks the count; then, for the
// record, walks again at pages of 100 and 1000.
func (h *harness) walk(ctx context.Context, base string, res *results) error {
	var err error
	if res.walk, res.walkPages, err = h.walkAt(ctx, base, 0); err != nil {
		return err
	}
	for _, limit := range []int{100, 1000} {
		took, pages, err := h.walkAt(ctx, base, limit)
		if err != nil {
			return err
		}
		h.logger.Info("API walk at a set page size", "limit", limit, "walk", took.Round(time.Millisecond), "pages", pages)
	}
	return nil
}

// walkAt walks the certificates with ?limit=limit (0: the default).
func (h *harness) walkAt(ctx context.Context, base string, limit int) (took time.Duration, pages int, err error) {
	start := time.Now()
	count, next := 0, ""
	for {
		q := url.Values{}
		if next != "" {
			q.Set("after", next)
		}
		if limit > 0 {
			q.Set("limit", strconv.Itoa(limit))
		}
		u := base + "/api/v1/certificates"
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		var page struct {
			Items []json.RawMessage `json:"items"`
			Next  string            `json:"next"`
		}
		if err := h.getJSON(ctx, u, &page); err != nil {
			return 0, pages, fmt.Errorf("API walk, page %d: %w", pages+1, err)
		}
		pages++
		count += len(page.Items)
		if page.Next == "" {
			break
		}
		if page.Next == next || pages > h.cfg.size.Certificates {
			return 0, pages, fmt.Errorf("API walk: next %q does not advance (page %d)", page.Next, pages)
		}
		next = page.Next
	}
	took = time.Since(start)
	if count != h.cfg.size.Certificates {
		return 0, pages, fmt.Errorf("API walk listed %d certificates in %d pages, want %d", count, pages, h.cfg.size.Certificates)
	}
	return took, pages, nil
}

// scrape reads /metrics a few times and times each read of the whole body.
func (h *harness) scrape(ctx context.Context, base string, res *results) error {
	var sum time.Duration
	for i := range scrapes {
		start := time.Now()
		body, err := h.get(ctx, base+"/metrics")
		took := time.Since(start)
		if err != nil {
			return fmt.Errorf("scrape %d: %w", i+1, err)
		}
		sum += took
		res.metricsMax = max(res.metricsMax, took)
		res.metricsBytes, res.metricsSeries = len(body), 0
		for line := range strings.Lines(string(body)) {
			if line != "\n" && !strings.HasPrefix(line, "#") {
				res.metricsSeries++
			}
		}
	}
	res.metricsMean = sum / scrapes
	return nil
}

// idle leaves certops alone for idleSettle, then measures its CPU over
// idleWindow; the resident set at the end is the steady one, and the
// high-water mark then is the peak of the whole run.
func (h *harness) idle(ctx context.Context, p *serveProc, res *results) error {
	h.logger.Info("idling", "settle", idleSettle, "window", idleWindow)
	if err := sleep(ctx, idleSettle); err != nil {
		return err
	}
	before, err := p.cpu()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := sleep(ctx, idleWindow); err != nil {
		return err
	}
	after, err := p.cpu()
	if err != nil {
		return err
	}
	wall := time.Since(start).Seconds()
	res.idleCPU = (after.self - before.self) / wall * 100
	res.idleCPUChild = (after.children - before.children) / wall * 100
	if res.steadyRSS, err = p.statusMiB("VmRSS"); err != nil {
		return err
	}
	if res.peakRSS, err = p.statusMiB("VmHWM"); err != nil {
		return err
	}
	res.sampledMaxRSS = p.sampledMaxMiB()
	h.logger.Info("idle measured", "cpu_pct", fmt.Sprintf("%.2f", res.idleCPU), "children_cpu_pct", fmt.Sprintf("%.2f", res.idleCPUChild),
		"rss_mib", fmt.Sprintf("%.1f", res.steadyRSS), "hwm_mib", fmt.Sprintf("%.1f", res.peakRSS),
		"sampled_max_mib", fmt.Sprintf("%.1f", res.sampledMaxRSS))
	return nil
}

// restart stops p with SIGTERM, starts certops serve again on the same
// database and times, from the new process' start, until /readyz answers 200
// and the certificate list answers 200.
func (h *harness) restart(ctx context.Context, p *serveProc, args []string, res *results) error {
	took, err := p.stop(stopGrace)
	if err != nil {
		return err
	}
	res.shutdown = took
	h.logger.Info("certops serve stopped", "took", took.Round(time.Millisecond))

	p2, base, err := h.startServe(ctx, args, "serve-2.log")
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	res.restartListen = time.Since(p2.started)
	for _, path := range []string{"/readyz", "/api/v1/certificates?limit=1"} {
		for !h.answers200(ctx, base+path) {
			if done, err := p2.exited(); done {
				return fmt.Errorf("restart: %w; log tail:\n%s", err, p2.logTail(20))
			}
			if err := sleep(ctx, pollEvery); err != nil {
				return fmt.Errorf("restart: wait for %s: %w", path, err)
			}
		}
	}
	res.restartReady = time.Since(p2.started)
	res.restartRSS, _ = p2.statusMiB("VmRSS")
	res.restartHWM, _ = p2.statusMiB("VmHWM")
	h.logger.Info("restarted certops serve is ready", "after", res.restartReady.Round(time.Millisecond),
		"listening_after", res.restartListen.Round(time.Millisecond))
	if _, err := p2.stop(stopGrace); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

// get returns the body of a GET of u, which must answer 200.
func (h *harness) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.300s", u, resp.Status, body)
	}
	return body, nil
}

func (h *harness) getJSON(ctx context.Context, u string, v any) error {
	body, err := h.get(ctx, u)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// answers200 reports whether a GET of u answers 200 within a second.
func (h *harness) answers200(ctx context.Context, u string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := h.get(ctx, u)
	return err == nil
}

// stopAll stops every certops serve still running; after a failure it
// prints the end of each one's log first.
func (h *harness) stopAll(failed bool) {
	for _, p := range h.procs {
		if failed {
			fmt.Fprintf(os.Stderr, "--- end of %s ---\n%s\n", p.log, p.logTail(30))
		}
		if _, err := p.stop(10 * time.Second); err != nil && !failed {
			h.logger.Warn("stop certops serve", "err", err)
		}
	}
}

// removeWork removes the work directory, unless -keep.
func (h *harness) removeWork() {
	if h.cfg.keep {
		h.logger.Info("work directory kept", "dir", h.work)
		return
	}
	if err := os.RemoveAll(h.work); err != nil {
		h.logger.Warn("remove the work directory", "err", err)
	}
}

// pgServer is where the run's databases live: the server of $DATABASE_URL,
// or a throwaway durable cluster of its own.
type pgServer struct {
	admin   string           // URL of an existing database to run CREATE DATABASE from
	cluster *localpg.Cluster // nil on $DATABASE_URL's server
	prefix  string           // of the run's database names
	created []string         // databases not dropped yet
}

// startPostgres connects to $DATABASE_URL's server or starts a local cluster
// with durable commits (not the tests' fast mode).
func startPostgres(ctx context.Context, logger *slog.Logger) (*pgServer, error) {
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return nil, err
	}
	s := &pgServer{prefix: "bench_serve_" + hex.EncodeToString(suffix[:]), admin: os.Getenv("DATABASE_URL")}
	if s.admin == "" {
		c, err := localpg.Start(ctx, localpg.Options{Logger: logger})
		if err != nil {
			return nil, err
		}
		s.cluster, s.admin = c, c.URL("postgres")
	} else if u, err := url.Parse(s.admin); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, errors.New("DATABASE_URL must be a postgres:// URL")
	}
	var version, fsync, syncCommit string
	err := s.exec(ctx, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit')").
			Scan(&version, &fsync, &syncCommit)
	})
	if err != nil {
		if s.cluster != nil {
			_ = s.cluster.Stop(context.WithoutCancel(ctx))
		}
		return nil, err
	}
	logger.Info("postgres", "local_cluster", s.cluster != nil, "version", version, "fsync", fsync, "synchronous_commit", syncCommit)
	return s, nil
}

// exec runs fn on a connection to the admin database.
func (s *pgServer) exec(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(conn)
}

// create creates an empty database named after the run and suffix and
// returns its name and URL.
func (s *pgServer) create(ctx context.Context, suffix string) (name, dbURL string, err error) {
	name = s.prefix + suffix
	err = s.exec(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("create database %s: %w", name, err)
	}
	s.created = append(s.created, name)
	u, err := url.Parse(s.admin)
	if err != nil {
		return "", "", err
	}
	u.Path = "/" + name
	return name, u.String(), nil
}

// drop drops database name, disconnecting its sessions.
func (s *pgServer) drop(ctx context.Context, name string) error {
	err := s.exec(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	})
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	for i, n := range s.created {
		if n == name {
			s.created = append(s.created[:i], s.created[i+1:]...)
			break
		}
	}
	return nil
}

// close drops the databases still there and stops the local cluster, if any.
func (s *pgServer) close(ctx context.Context) error {
	var errs []error
	if s.cluster == nil { // the local cluster goes as a whole
		for _, name := range append([]string(nil), s.created...) {
			errs = append(errs, s.drop(ctx, name))
		}
	} else {
		errs = append(errs, s.cluster.Stop(ctx))
	}
	return errors.Join(errs...)
}

// sleep waits for d, or returns the reason ctx ended.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// ms is d in (fractional) milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
