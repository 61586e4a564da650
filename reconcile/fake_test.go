package reconcile_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// The tests in this file run the reconciler against in-memory fakes of its
// Source and Store, so that the sorting of every failure is checked in
// milliseconds. The tests against real git and Postgres are in
// reconcile_test.go.

// fakeSource serves commits from memory; err, when set, fails Head.
type fakeSource struct {
	mu      sync.Mutex
	head    state.Revision
	commits map[string]fstest.MapFS
	err     error
}

func (s *fakeSource) commit(id string, files map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fsys := fstest.MapFS{}
	for p, c := range files {
		fsys[p] = &fstest.MapFile{Data: []byte(c)}
	}
	if s.commits == nil {
		s.commits = map[string]fstest.MapFS{}
	}
	s.commits[id] = fsys
	s.head = state.Revision{Ref: "main", Commit: id}
}

func (s *fakeSource) Head(context.Context) (state.Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head, s.err
}

func (s *fakeSource) FS(_ context.Context, commit string) (fs.FS, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fsys, ok := s.commits[commit]
	if !ok {
		return nil, errors.New("no such commit")
	}
	return fsys, nil
}

func (s *fakeSource) ChangedFiles(context.Context, string, string) ([]string, error) {
	return nil, errors.New("fake source: no tree diffs") // the reconciler then loads in full
}

// fakeStore keeps objects, history and status in memory. The fail* fields
// inject a failure into the matching method.
type fakeStore struct {
	hashes      map[spec.Key]string
	status      state.Status
	records     []state.RevisionOutcome
	applies     int
	failApply   error
	failRecord  error
	failStatus  error
	statusSaves int
}

func (s *fakeStore) StoredHashes(context.Context) (map[spec.Key]string, error) {
	return maps.Clone(s.hashes), nil
}

func (s *fakeStore) ContentHashes(context.Context) (map[spec.Key]string, int, error) {
	return maps.Clone(s.hashes), 0, nil
}

func (s *fakeStore) Apply(_ context.Context, _ state.Fence, _ state.Revision, plan state.Plan, st state.Status) (int64, error) {
	if s.failApply != nil {
		return 0, s.failApply
	}
	s.hashes = plan.Applied(s.hashes)
	s.status = st
	s.applies++
	s.records = append(s.records, state.OutcomeApplied)
	return int64(len(s.records)), nil
}

func (s *fakeStore) RecordAttempt(_ context.Context, _ state.Fence, _ state.Revision, o state.RevisionOutcome, _ spec.ErrorList, st state.Status) (int64, error) {
	if s.failRecord != nil {
		return 0, s.failRecord
	}
	s.records = append(s.records, o)
	s.status = st
	return int64(len(s.records)), nil
}

func (s *fakeStore) SetStatus(_ context.Context, _ state.Fence, st state.Status) error {
	s.statusSaves++
	s.status = st
	return nil
}

func (s *fakeStore) Status(context.Context) (state.Status, error) {
	if s.failStatus != nil {
		return state.Status{}, s.failStatus
	}
	return s.status, nil
}

// fakeLease is a lease that lasts until lose is called.
type fakeLease struct {
	epoch int64
	done  chan struct{}
}

func newFakeLease(epoch int64) *fakeLease { return &fakeLease{epoch: epoch, done: make(chan struct{})} }

func (l *fakeLease) Done() <-chan struct{} { return l.done }
func (l *fakeLease) Release()              {}
func (l *fakeLease) Fence() state.Fence    { return state.Fence{Holder: "fake", Epoch: l.epoch} }
func (l *fakeLease) lose()                 { close(l.done) }

type fakeElector struct{}

func (fakeElector) TryLeader(context.Context) (reconcile.Lease, bool, error) {
	return newFakeLease(1), true, nil
}

// fakeRun is a reconciler over fakes, reconciling under one lease.
type fakeRun struct {
	rec   *reconcile.Reconciler
	lease *fakeLease
}

func (f fakeRun) ReconcileOnce(ctx context.Context) state.Outcome {
	return f.rec.ReconcileOnce(ctx, f.lease)
}

func newFake(t *testing.T, files map[string]string) (fakeRun, *fakeSource, *fakeStore) {
	t.Helper()
	src, st := &fakeSource{}, &fakeStore{}
	src.commit("c1", files)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := reconcile.New(src, st, fakeElector{}, reconcile.NewMetrics(prometheus.NewRegistry()),
		slog.New(slog.DiscardHandler), reconcile.Options{Now: func() time.Time { return now }})
	return fakeRun{rec: rec, lease: newFakeLease(1)}, src, st
}

func readyCondition(t *testing.T, st state.Status) state.Condition {
	t.Helper()
	c, ok := st.Condition(state.ConditionReady)
	if !ok {
		t.Fatal("no Ready condition")
	}
	return c
}

func TestFakeOutcomesAreSorted(t *testing.T) {
	ctx := context.Background()
	invalid := baseFiles()
	invalid["certs/a.yaml"] += certYAML("bad", "not a hostname!")

	t.Run("success, then unchanged", func(t *testing.T) {
		rec, _, st := newFake(t, baseFiles())
		if out := rec.ReconcileOnce(ctx); out.Result != state.ResultSuccess || len(out.Plan.Changes) != 5 {
			t.Fatalf("first: got %s with %d changes (%v), want success with 5", out.Result, len(out.Plan.Changes), out.Err)
		}
		if out := rec.ReconcileOnce(ctx); out.Result != state.ResultUnchanged {
			t.Fatalf("second: got %s, want unchanged", out.Result)
		}
		if st.applies != 1 || readyCondition(t, st.status).Status != state.True {
			t.Errorf("applies = %d, Ready = %+v; want 1 and True", st.applies, readyCondition(t, st.status))
		}
	})
	t.Run("invalid revision stalls once", func(t *testing.T) {
		rec, _, st := newFake(t, invalid)
		out := rec.ReconcileOnce(ctx)
		if out.Result != state.ResultStalled || out.Reason != state.ReasonValidationFailed || len(out.Errors) == 0 {
			t.Fatalf("got %s %s with %d errors, want stalled ValidationFailed with errors", out.Result, out.Reason, len(out.Errors))
		}
		again := rec.ReconcileOnce(ctx)
		if again.Result != state.ResultStalled || !again.Repeat {
			t.Fatalf("polled again: got %s repeat=%v, want a repeated stall", again.Result, again.Repeat)
		}
		if len(st.records) != 1 || st.records[0] != state.OutcomeInvalid || st.applies != 0 {
			t.Errorf("records %v, applies %d; want one invalid record and no apply", st.records, st.applies)
		}
		if c, _ := st.status.Condition(state.ConditionStalled); c.Status != state.True || c.Reason != state.ReasonValidationFailed {
			t.Errorf("Stalled = %+v, want True/ValidationFailed", c)
		}
	})
	t.Run("prune guard stalls", func(t *testing.T) {
		files := baseFiles()
		for i := range 8 {
			files["many.yaml"] += agentYAML(string(rune('a'+i)) + "-agent")
		}
		rec, src, st := newFake(t, files)
		if out := rec.ReconcileOnce(ctx); out.Result != state.ResultSuccess {
			t.Fatalf("first: got %s, want success", out.Result)
		}
		delete(files, "many.yaml")
		src.commit("c2", files)
		out := rec.ReconcileOnce(ctx)
		if out.Result != state.ResultStalled || out.Reason != state.ReasonPruneBlocked || len(out.Errors) != 1 ||
			out.Errors[0].File != reconcile.AllowPruneFile {
			t.Fatalf("got %s %s %v, want stalled PruneBlocked with one error on %s", out.Result, out.Reason, out.Errors, reconcile.AllowPruneFile)
		}
		if got := st.records[len(st.records)-1]; got != state.OutcomePruneBlocked || len(st.hashes) != 13 {
			t.Errorf("last record %s, %d objects stored; want prune-blocked and the 13 objects kept", got, len(st.hashes))
		}
	})
	t.Run("fetch failure is transient", func(t *testing.T) {
		rec, src, st := newFake(t, baseFiles())
		src.err = errors.New("connection refused")
		out := rec.ReconcileOnce(ctx)
		if out.Result != state.ResultTransient || out.Reason != state.ReasonFetchFailed {
			t.Fatalf("got %s %s, want transient FetchFailed", out.Result, out.Reason)
		}
		if c, _ := st.status.Condition(state.ConditionReconciling); c.Status != state.True || len(st.records) != 0 {
			t.Errorf("Reconciling = %+v, records %v; want True and no history", c, st.records)
		}
	})
	t.Run("apply failure is transient and recorded once", func(t *testing.T) {
		rec, _, st := newFake(t, baseFiles())
		st.failApply = errors.New("deadlock detected")
		for range 3 {
			if out := rec.ReconcileOnce(ctx); out.Result != state.ResultTransient || out.Reason != state.ReasonApplyFailed {
				t.Fatalf("got %s %s, want transient ApplyFailed", out.Result, out.Reason)
			}
		}
		if len(st.records) != 1 || st.records[0] != state.OutcomeFailed {
			t.Errorf("records %v, want one failed", st.records)
		}
		st.failApply = nil
		if out := rec.ReconcileOnce(ctx); out.Result != state.ResultSuccess {
			t.Fatalf("after the fault: got %s, want success", out.Result)
		}
	})
	t.Run("a refusal that cannot be recorded is transient", func(t *testing.T) {
		rec, _, st := newFake(t, invalid)
		st.failRecord = errors.New("database is read-only")
		out := rec.ReconcileOnce(ctx)
		if out.Result != state.ResultTransient || out.Reason != state.ReasonStoreUnavailable {
			t.Fatalf("got %s %s, want transient StoreUnavailable", out.Result, out.Reason)
		}
		st.failRecord = nil
		if out := rec.ReconcileOnce(ctx); out.Result != state.ResultStalled || out.Repeat {
			t.Fatalf("recorded on retry: got %s repeat=%v, want a new stall", out.Result, out.Repeat)
		}
	})
	t.Run("no status until the term starts", func(t *testing.T) {
		rec, _, st := newFake(t, baseFiles())
		st.status = state.Status{LastAppliedRevision: "main@sha1:c0"}
		st.failStatus = errors.New("connection reset")
		out := rec.ReconcileOnce(ctx)
		if out.Result != state.ResultTransient || st.statusSaves != 0 || st.status.LastAppliedRevision != "main@sha1:c0" {
			t.Fatalf("got %s, %d status saves, status %+v; want transient and the stored status untouched", out.Result, st.statusSaves, st.status)
		}
	})
	t.Run("a lost lease ends the pass and starts a new term", func(t *testing.T) {
		run, src, st := newFake(t, baseFiles())
		if out := run.ReconcileOnce(ctx); out.Result != state.ResultSuccess {
			t.Fatalf("first: got %s, want success", out.Result)
		}
		run.lease.lose()
		files := baseFiles()
		files["certs/b.yaml"] = certYAML("wiki", "wiki.example.com")
		src.commit("c2", files)
		saves, applies := st.statusSaves, st.applies
		out := run.ReconcileOnce(ctx)
		if out.Result != state.ResultTransient || out.Reason != state.ReasonLeaseLost || !errors.Is(out.Err, state.ErrFenced) {
			t.Fatalf("after losing the lease: got %s %s %v, want transient LeaseLost", out.Result, out.Reason, out.Err)
		}
		if st.statusSaves != saves || st.applies != applies {
			t.Errorf("a pass without the lease wrote: %d status saves, %d applies", st.statusSaves-saves, st.applies-applies)
		}
		// Another replica changed the store meanwhile: the next term reads it again.
		delete(st.hashes, spec.Key{Kind: spec.KindCertificate, Name: "blog"})
		run.lease = newFakeLease(2)
		out = run.ReconcileOnce(ctx)
		if out.Result != state.ResultSuccess || len(out.Plan.Changes) != 2 {
			t.Fatalf("new term: got %s with %d changes, want success creating wiki and blog again", out.Result, len(out.Plan.Changes))
		}
	})
}

// Shutting down ends the pass and the lease together: that is logged as a
// shutdown, not as another replica taking over, and nothing is written.
func TestFakeShutdownIsNotALostLease(t *testing.T) {
	src, st := &fakeSource{}, &fakeStore{}
	src.commit("c1", baseFiles())
	var logs strings.Builder
	rec := reconcile.New(src, st, fakeElector{}, reconcile.NewMetrics(prometheus.NewRegistry()),
		slog.New(slog.NewTextHandler(&logs, nil)), reconcile.Options{})
	lease := newFakeLease(1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	lease.lose()
	out := rec.ReconcileOnce(ctx, lease)
	if out.Result != state.ResultTransient || !errors.Is(out.Err, state.ErrFenced) || st.applies != 0 || st.statusSaves != 0 {
		t.Fatalf("got %s %v with %d applies and %d status saves; want transient, fenced, nothing written",
			out.Result, out.Err, st.applies, st.statusSaves)
	}
	if strings.Contains(logs.String(), "lost reconcile lease") || !strings.Contains(logs.String(), "interrupted by shutdown") {
		t.Errorf("logs:\n%s\nwant the shutdown, not a lost lease", logs.String())
	}
}
