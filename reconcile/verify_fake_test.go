package reconcile_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// fakeVerifier trusts every commit but those in untrusted; err fails it.
type fakeVerifier struct {
	untrusted map[string]bool
	err       error
	calls     []string // "base..head" of every call
}

func (v *fakeVerifier) VerifyCommits(_ context.Context, base, head string) (spec.ErrorList, error) {
	v.calls = append(v.calls, base+".."+head)
	if v.err != nil {
		return nil, v.err
	}
	if v.untrusted[head] {
		return spec.ErrorList{{File: "commit " + head, Message: "unsigned"}}, nil
	}
	return nil, nil
}

func newVerifiedFake(t *testing.T, v *fakeVerifier) (fakeRun, *fakeSource, *fakeStore) {
	t.Helper()
	src, st := &fakeSource{}, &fakeStore{}
	src.commit("c1", baseFiles())
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := reconcile.New(src, st, fakeElector{}, reconcile.NewMetrics(prometheus.NewRegistry()),
		slog.New(slog.DiscardHandler), reconcile.Options{Now: func() time.Time { return now }, Verifier: v})
	return fakeRun{rec: rec, lease: newFakeLease(1)}, src, st
}

func TestFakeCommitVerification(t *testing.T) {
	ctx := context.Background()
	t.Run("an untrusted head is refused once, verified once", func(t *testing.T) {
		v := &fakeVerifier{untrusted: map[string]bool{"c2": true}}
		run, src, st := newVerifiedFake(t, v)
		if out := run.ReconcileOnce(ctx); out.Result != state.ResultSuccess {
			t.Fatalf("first apply: got %s %v, want success", out.Result, out.Err)
		}
		files := baseFiles()
		files["certs/b.yaml"] = certYAML("wiki", "wiki.example.com")
		src.commit("c2", files)
		out := run.ReconcileOnce(ctx)
		if out.Result != state.ResultStalled || out.Reason != state.ReasonUntrustedCommit || len(out.Errors) != 1 || out.Errors[0].File != "commit c2" {
			t.Fatalf("untrusted head: got %s %s %v, want stalled UntrustedCommit naming commit c2", out.Result, out.Reason, out.Errors)
		}
		for range 2 {
			if again := run.ReconcileOnce(ctx); !again.Repeat || again.Reason != state.ReasonUntrustedCommit {
				t.Fatalf("polled again: got %s repeat=%v, want a repeated UntrustedCommit stall", again.Result, again.Repeat)
			}
		}
		if want := []string{"..c1", "c1..c2"}; len(v.calls) != 2 || v.calls[0] != want[0] || v.calls[1] != want[1] {
			t.Errorf("verifier calls %q, want %q: the head alone first, then the range from the applied commit, once", v.calls, want)
		}
		if st.records[len(st.records)-1] != state.OutcomeUntrusted || st.applies != 1 || st.status.LastAppliedRevision != "main@sha1:c1" {
			t.Errorf("records %v, %d applies, applied %s; want untrusted recorded and c1 still applied", st.records, st.applies, st.status.LastAppliedRevision)
		}
		if c, _ := st.status.Condition(state.ConditionStalled); c.Status != state.True || c.Reason != state.ReasonUntrustedCommit {
			t.Errorf("Stalled = %+v, want True/UntrustedCommit", c)
		}
	})
	t.Run("a verification that cannot read the history is transient", func(t *testing.T) {
		v := &fakeVerifier{err: errors.New("object not found")}
		run, _, st := newVerifiedFake(t, v)
		out := run.ReconcileOnce(ctx)
		if out.Result != state.ResultTransient || out.Reason != state.ReasonFetchFailed || st.applies != 0 || len(st.records) != 0 {
			t.Fatalf("got %s %s, %d applies, records %v; want transient FetchFailed, nothing applied or recorded", out.Result, out.Reason, st.applies, st.records)
		}
		v.err = nil
		if out := run.ReconcileOnce(ctx); out.Result != state.ResultSuccess {
			t.Fatalf("after the fault: got %s, want success", out.Result)
		}
	})
	t.Run("a verified head is not verified again when its apply is retried", func(t *testing.T) {
		v := &fakeVerifier{}
		run, _, st := newVerifiedFake(t, v)
		st.failApply = errors.New("deadlock detected")
		run.ReconcileOnce(ctx)
		st.failApply = nil
		if out := run.ReconcileOnce(ctx); out.Result != state.ResultSuccess || len(v.calls) != 1 {
			t.Fatalf("retry: got %s after %d verifications, want success after 1", out.Result, len(v.calls))
		}
	})
}
