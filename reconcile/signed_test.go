package reconcile_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/gitsource"
	"github.com/certops/certops/gitsource/signtest"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/state"
)

// TestOnlySignedCommitsAreApplied runs the reconciler over a real git
// repository whose commits are signed by real OpenPGP and SSH keys, against
// a real database: a revision with one untrusted commit since the last
// applied one is refused whole, and a force-push that drops it is checked
// from the merge base.
func TestOnlySignedCommitsAreApplied(t *testing.T) {
	gpg := signtest.GPG(t, "alice@example.com")
	ssh := signtest.SSH(t, "bob@example.com")
	keys, err := gitsource.LoadTrustedKeys([]string{gpg.Trusted, ssh.Trusted})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, baseFiles()) // its first commit is unsigned: history before the first apply
	repo := mustRepo(t, h.repo.dir)
	h.rec = reconcile.New(gitsource.Source{Repo: repo}, h.store, reconcile.ElectorOf(h.store.TryLeader), reconcile.NewMetrics(prometheus.NewRegistry()),
		slog.New(slog.DiscardHandler), reconcile.Options{Now: h.clock.Now, FullCompareInterval: time.Hour,
			Verifier: repo.Verifier(keys)})
	commit := func(s *signtest.Signer, files map[string]string, msg string) string {
		t.Helper()
		h.repo.write(files)
		return signtest.Commit(t, h.repo.dir, s, msg)
	}

	commit(gpg, nil, "signed head of the first apply")
	if out := h.once(); out.Result != state.ResultSuccess {
		t.Fatalf("first apply of a signed head: got %s %s %v %v", out.Result, out.Reason, out.Errors, out.Err)
	}
	commit(ssh, map[string]string{"certs/b.yaml": certYAML("wiki", "wiki.example.com")}, "add wiki")
	signed := commit(gpg, map[string]string{"certs/c.yaml": certYAML("docs", "docs.example.com")}, "add docs")
	if out := h.once(); out.Result != state.ResultSuccess || len(out.Plan.Changes) != 2 {
		t.Fatalf("two signed commits: got %s with %d changes (%v), want success with 2", out.Result, len(out.Plan.Changes), out.Errors)
	}
	objects, revs := h.names(), h.revisionCount()

	unsigned := commit(nil, map[string]string{"certs/d.yaml": certYAML("evil", "evil.example.com")}, "sneak in evil")
	head := commit(gpg, map[string]string{"certs/e.yaml": certYAML("shop2", "shop2.example.com")}, "signed on top")
	out := h.once()
	if out.Result != state.ResultStalled || out.Reason != state.ReasonUntrustedCommit || len(out.Errors) != 1 ||
		out.Errors[0].File != "commit "+unsigned || !strings.Contains(out.Errors[0].Message, "unsigned") {
		t.Fatalf("an unsigned commit in the middle: got %s %s %v, want stalled UntrustedCommit naming commit %s as unsigned", out.Result, out.Reason, out.Errors, unsigned)
	}
	st := h.status()
	if c := condition(st, state.ConditionStalled); c.Status != state.True || c.Reason != state.ReasonUntrustedCommit {
		t.Errorf("Stalled = %+v, want True/UntrustedCommit", c)
	}
	if state.CommitOf(st.LastAppliedRevision) != signed || state.CommitOf(st.LastAttemptedRevision) != head {
		t.Errorf("applied %s, attempted %s; want %s still applied and %s attempted", st.LastAppliedRevision, st.LastAttemptedRevision, signed, head)
	}
	if got := h.names(); !slices.Equal(got, objects) {
		t.Errorf("objects changed by a refused revision: %v, want %v", got, objects)
	}
	recs, err := h.store.ListRevisions(context.Background(), 1, 0)
	if err != nil || len(recs) != 1 || recs[0].Outcome != state.OutcomeUntrusted || h.revisionCount() != revs+1 {
		t.Fatalf("history: %+v, %v; want one new record, outcome untrusted", recs, err)
	}
	if again := h.once(); !again.Repeat || h.revisionCount() != revs+1 {
		t.Errorf("polled again: repeat=%v, %d new records; want a repeat, none recorded", again.Repeat, h.revisionCount()-revs)
	}

	// The fix is a rewrite: drop the unsigned commit and push again.
	signtest.Git(t, h.repo.dir, nil, "reset", "-q", "--hard", signed)
	fixed := commit(ssh, map[string]string{"certs/e.yaml": certYAML("shop2", "shop2.example.com")}, "signed on top, again")
	if out := h.once(); out.Result != state.ResultSuccess || len(out.Plan.Changes) != 1 {
		t.Fatalf("force-pushed fix: got %s %s %v, want success with 1 change", out.Result, out.Reason, out.Errors)
	}
	if got := state.CommitOf(h.status().LastAppliedRevision); got != fixed {
		t.Errorf("applied %s, want %s", got, fixed)
	}

	// A key no longer trusted: a restarted reconciler with only the SSH key
	// refuses the next OpenPGP-signed commit.
	sshOnly, err := gitsource.LoadTrustedKeys([]string{ssh.Trusted})
	if err != nil {
		t.Fatal(err)
	}
	h.rec = reconcile.New(gitsource.Source{Repo: repo}, h.store, reconcile.ElectorOf(h.store.TryLeader), reconcile.NewMetrics(prometheus.NewRegistry()),
		slog.New(slog.DiscardHandler), reconcile.Options{Now: h.clock.Now, FullCompareInterval: time.Hour,
			Verifier: repo.Verifier(sshOnly)})
	byGPG := commit(gpg, map[string]string{"certs/f.yaml": certYAML("blog2", "blog2.example.com")}, "signed by a removed key")
	out = h.once()
	if out.Result != state.ResultStalled || len(out.Errors) != 1 || out.Errors[0].File != "commit "+byGPG || !strings.Contains(out.Errors[0].Message, "unknown key") {
		t.Fatalf("a removed key: got %s %v, want stalled naming %s with unknown key", out.Result, out.Errors, byGPG)
	}
}
