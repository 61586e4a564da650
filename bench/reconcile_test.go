package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/certops/certops/fleet"
	"github.com/certops/certops/state"
)

// floorOnce measures the floor of the fleet at dir once, for the x_floor
// ratio of a benchmark run in the same process. The rows it builds are
// dropped and the memory returned to the OS before it returns.
func floorOnce(ctx context.Context, b *testing.B, dir string) floorTimes {
	b.Helper()
	rows, err := FloorRows(dir)
	if err != nil {
		b.Fatal(err)
	}
	f := measureFloor(ctx, b, dir, rows)
	settleMemory()
	return f
}

// profiled runs fn with the profiler label bench=name, so that a CPU profile
// of a whole run can be narrowed to the timed code, leaving fixture
// generation and the floor out: go tool pprof -tagfocus bench=full ...
func profiled(ctx context.Context, name string, fn func(ctx context.Context)) {
	pprof.Do(ctx, pprof.Labels("bench", name), fn)
}

// envHeapProfile names the environment variable with a directory to write,
// after each full reconcile, a heap profile of what the reconciler keeps
// live (full-<size>.heap).
const envHeapProfile = "CERTOPS_BENCH_HEAPPROFILE"

// writeHeapProfile writes the heap profile $CERTOPS_BENCH_HEAPPROFILE asks for.
func writeHeapProfile(b *testing.B, size fleet.Size) {
	b.Helper()
	dir := os.Getenv(envHeapProfile)
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, "full-"+size.String()+".heap"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReconcileFull measures a full reconcile from nothing: a fresh
// in-memory clone of file://repo (gitsource.Open) and one ReconcileOnce that
// loads, validates, plans and applies every object into an empty migrated
// database. ns/op is the clone plus the reconcile; creating the database and
// connecting to it are not timed. Reported alongside: the floor measured in
// the same process just before (floor_ms) and the ratio to it (x_floor), the
// process's peak RSS during the clone and reconcile (peak_rss_MiB, the
// VmHWM after resetting it; rss_before_MiB is the VmRSS at the start) and
// the live heap afterwards with the reconciler still holding its clone and
// caches (heap_inuse_MiB).
func BenchmarkReconcileFull(b *testing.B) {
	forEachSize(b, func(b *testing.B, size fleet.Size) {
		ctx := b.Context()
		dir := newFleet(ctx, b, size)
		floor := floorOnce(ctx, b, dir)

		var total, clone time.Duration
		var peak, before, heap float64
		var objects int
		phaseSum := make(map[string]float64)
		for b.Loop() {
			st := openStore(ctx, b)
			settleMemory()
			if err := resetPeakRSS(); err != nil {
				b.Fatal(err)
			}
			rss, err := statusMiB("VmRSS")
			if err != nil {
				b.Fatal(err)
			}
			before = math.Max(before, rss)

			var r *reconciler
			var out state.Outcome
			profiled(ctx, "full", func(ctx context.Context) {
				start := time.Now()
				var err error
				if r, err = newReconciler(ctx, dir, st); err != nil {
					b.Fatal(err)
				}
				cloned := time.Now()
				out = r.mustReconcile(ctx, b, "success")
				total += time.Since(start)
				clone += cloned.Sub(start)
			})

			hwm, err := statusMiB("VmHWM")
			if err != nil {
				b.Fatal(err)
			}
			peak = math.Max(peak, hwm)
			heap = math.Max(heap, heapInuseMiB()) // r is still live here
			writeHeapProfile(b, size)
			objects = len(out.Plan.Changes)
			for p, s := range r.phaseSeconds(b) {
				phaseSum[p] += s
			}
			r.Close()
			st.Close()
		}
		nsPerOp := float64(total) / float64(b.N)
		b.ReportMetric(nsPerOp, "ns/op")
		b.ReportMetric(nsPerOp/float64(floor.total()), "x_floor")
		b.ReportMetric(ms(floor.total()), "floor_ms")
		b.ReportMetric(ms(clone)/float64(b.N), "clone_ms")
		reportPhases(b, nil, phaseSum)
		b.ReportMetric(peak, "peak_rss_MiB")
		b.ReportMetric(before, "rss_before_MiB")
		b.ReportMetric(heap, "heap_inuse_MiB")
		b.ReportMetric(float64(objects), "objects")
	})
}

// BenchmarkReconcileOneFileChange measures pushed → applied for a change of
// one certificate in one file, after a full apply: each iteration commits a
// change with fleet.ChangeOneFile (not timed) and then times one ReconcileOnce
// (ls-remote + incremental fetch, tree diff, parse of the one file,
// whole-revision validation, plan, apply of one update). max_ms is the
// slowest iteration.
func BenchmarkReconcileOneFileChange(b *testing.B) {
	forEachSize(b, func(b *testing.B, size fleet.Size) {
		ctx := b.Context()
		dir := newFleet(ctx, b, size)
		r := applied(ctx, b, dir)
		phasesBefore := r.phaseSeconds(b)

		var total, worst time.Duration
		variant := 0
		for b.Loop() {
			variant++
			if _, err := fleet.ChangeOneFile(dir, variant); err != nil {
				b.Fatal(err)
			}
			if _, err := fleet.Commit(ctx, dir, fmt.Sprintf("change %d", variant)); err != nil {
				b.Fatal(err)
			}
			var out state.Outcome
			start := time.Now()
			profiled(ctx, "one-file", func(ctx context.Context) { out = r.mustReconcile(ctx, b, "success") })
			d := time.Since(start)
			total += d
			worst = max(worst, d)
			if n := len(out.Plan.Changes); n != 1 {
				b.Fatalf("one-file change planned %d changes, want 1", n)
			}
		}
		b.ReportMetric(float64(total)/float64(b.N), "ns/op")
		b.ReportMetric(ms(worst), "max_ms")
		reportPhases(b, phasesBefore, r.phaseSeconds(b))
	})
}

// BenchmarkReconcileUnchanged measures one ReconcileOnce of a head that is
// already applied: an ls-remote that finds the ref unmoved, and the status
// write. max_ms is the slowest iteration.
func BenchmarkReconcileUnchanged(b *testing.B) {
	forEachSize(b, func(b *testing.B, size fleet.Size) {
		ctx := b.Context()
		dir := newFleet(ctx, b, size)
		r := applied(ctx, b, dir)
		phasesBefore := r.phaseSeconds(b)

		var total, worst time.Duration
		for b.Loop() {
			start := time.Now()
			profiled(ctx, "unchanged", func(ctx context.Context) { r.mustReconcile(ctx, b, "unchanged") })
			d := time.Since(start)
			total += d
			worst = max(worst, d)
		}
		b.ReportMetric(float64(total)/float64(b.N), "ns/op")
		b.ReportMetric(ms(worst), "max_ms")
		reportPhases(b, phasesBefore, r.phaseSeconds(b))
	})
}
