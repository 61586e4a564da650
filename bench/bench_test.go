package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/fleet"
	"github.com/certops/certops/gitsource"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// envMax names the environment variable that skips fleet sizes with more
// certificates than its value.
const envMax = "CERTOPS_BENCH_MAX"

// forEachSize runs fn as a sub-benchmark per fleet size of the ladder, up to
// $CERTOPS_BENCH_MAX certificates when that is set.
func forEachSize(b *testing.B, fn func(b *testing.B, size fleet.Size)) {
	limit := -1
	if v := os.Getenv(envMax); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			b.Fatalf("%s=%q: want a non-negative number of certificates", envMax, v)
		}
		limit = n
	}
	for _, size := range fleet.Sizes() {
		if limit >= 0 && size.Certificates > limit {
			continue
		}
		b.Run(size.String(), func(b *testing.B) { fn(b, size) })
	}
}

// newFleet generates a fleet of the given size on disk, commits it on branch
// main and returns the repository's directory. Nothing of it stays on the heap.
func newFleet(ctx context.Context, b *testing.B, size fleet.Size) string {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "fleet")
	if err := fleet.Generate(dir, size); err != nil {
		b.Fatal(err)
	}
	if _, err := fleet.InitRepo(ctx, dir); err != nil {
		b.Fatal(err)
	}
	return dir
}

// fileURL is the file:// URL of a repository directory: it makes both the
// git CLI and go-git speak the pack protocol (git-upload-pack), as with a
// remote, instead of copying or hard-linking the object store.
func fileURL(dir string) string { return "file://" + dir }

// openStore opens a fresh, migrated, empty database.
func openStore(ctx context.Context, b *testing.B) *store.Store {
	b.Helper()
	st, err := store.Open(ctx, pgtest.DB(b), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// reconciler is a reconciler over a fresh in-memory clone of the repository
// at dir, writing to st. Its drift check is pushed out of the benchmark's
// reach so that every measurement is of the path it names.
type reconciler struct {
	repo     *gitsource.Repo
	cacheDir string // the on-disk clone, when CERTOPS_BENCH_CACHEDIR is set
	rec      *reconcile.Reconciler
	reg      *prometheus.Registry
	lease    *store.Lease // the reconcile lease its passes run under
}

func newReconciler(ctx context.Context, dir string, st *store.Store) (*reconciler, error) {
	logger := slog.New(slog.DiscardHandler)
	// CERTOPS_BENCH_CACHEDIR=1 clones to disk, as the chart's reconciler does
	// (--cache-dir); the default is the in-memory clone.
	cacheDir := ""
	if os.Getenv("CERTOPS_BENCH_CACHEDIR") != "" {
		d, err := os.MkdirTemp("", "bench-clone-")
		if err != nil {
			return nil, err
		}
		cacheDir = d
	}
	repo, err := gitsource.Open(ctx, gitsource.Config{URL: fileURL(dir), Ref: "main", CacheDir: cacheDir}, logger)
	if err != nil {
		if cacheDir != "" {
			os.RemoveAll(cacheDir)
		}
		return nil, err
	}
	lease, ok, err := st.TryLeader(ctx)
	if err != nil || !ok {
		repo.Close()
		if cacheDir != "" {
			os.RemoveAll(cacheDir)
		}
		return nil, fmt.Errorf("take the reconcile lease: ok=%v: %v", ok, err)
	}
	reg := prometheus.NewRegistry()
	rec := reconcile.New(gitsource.Source{Repo: repo}, st, reconcile.ElectorOf(st.TryLeader),
		reconcile.NewMetrics(reg), logger,
		reconcile.Options{FullCompareInterval: 24 * time.Hour})
	return &reconciler{repo: repo, cacheDir: cacheDir, rec: rec, reg: reg, lease: lease}, nil
}

// phases are the reconcile phases of certops_reconcile_duration_seconds.
func phases() []string { return []string{"fetch", "load", "plan", "apply"} }

// phaseSeconds returns the time spent so far in each reconcile phase, from
// the reconciler's certops_reconcile_duration_seconds histogram.
func (r *reconciler) phaseSeconds(b *testing.B) map[string]float64 {
	b.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	out := make(map[string]float64)
	for _, f := range families {
		if f.GetName() != "certops_reconcile_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "phase" {
					out[l.GetValue()] += m.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return out
}

// reportPhases reports the mean time per iteration of each phase between the
// phaseSeconds snapshots before and after, as <phase>_ms; phases the
// iterations never reached are left out.
func reportPhases(b *testing.B, before, after map[string]float64) {
	for _, p := range phases() {
		if d := after[p] - before[p]; d > 0 {
			b.ReportMetric(d*1000/float64(b.N), p+"_ms")
		}
	}
}

func (r *reconciler) Close() {
	r.lease.Release()
	r.repo.Close()
	if r.cacheDir != "" {
		os.RemoveAll(r.cacheDir)
	}
}

// mustReconcile runs one reconcile and fails the benchmark unless its result
// is want.
func (r *reconciler) mustReconcile(ctx context.Context, b *testing.B, want state.Result) state.Outcome {
	b.Helper()
	out := r.rec.ReconcileOnce(ctx, r.lease)
	if out.Result != want {
		b.Fatalf("reconcile: got %s (err %v, %d validation errors), want %s", out.Result, out.Err, len(out.Errors), want)
	}
	return out
}

// applied returns a reconciler that has applied the whole fleet at dir to a
// fresh database.
func applied(ctx context.Context, b *testing.B, dir string) *reconciler {
	b.Helper()
	st := openStore(ctx, b)
	b.Cleanup(st.Close)
	r, err := newReconciler(ctx, dir, st)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)
	r.mustReconcile(ctx, b, "success")
	return r
}

// Memory figures of this process, from /proc/self/status.
const (
	procStatus    = "/proc/self/status"
	procClearRefs = "/proc/self/clear_refs"
)

// settleMemory collects garbage and returns freed memory to the OS, so that
// what the process holds afterwards is what is still live.
func settleMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}

// resetPeakRSS resets the process's resident-set high-water mark (VmHWM);
// writing "5" to clear_refs does that since Linux 4.0.
func resetPeakRSS() error {
	if err := os.WriteFile(procClearRefs, []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS: %w", err)
	}
	return nil
}

// statusMiB reads a "Vm...: N kB" field of /proc/self/status in MiB.
func statusMiB(field string) (float64, error) {
	data, err := os.ReadFile(procStatus)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), field+": %d kB", &kb); err == nil {
			return float64(kb) / 1024, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s", procStatus, field)
}

// heapInuseMiB is runtime.MemStats.HeapInuse after a collection, in MiB.
func heapInuseMiB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / (1 << 20)
}

// ms is d in (fractional) milliseconds, for metrics.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
