package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// Source is where revisions come from: a git repository or a watched directory.
type Source interface {
	// Head returns the current revision of the configured ref. An unchanged
	// remote must cost no more than a cheap ref check.
	Head(ctx context.Context) (state.Revision, error)
	// FS returns the config tree (rooted at the configured path) of a commit.
	FS(ctx context.Context, commit string) (fs.FS, error)
	// ChangedFiles lists the config-tree paths that differ between two commits.
	ChangedFiles(ctx context.Context, from, to string) ([]string, error)
}

// CommitVerifier checks that commits are signed by trusted keys.
type CommitVerifier interface {
	// VerifyCommits checks head and every commit reachable from head but
	// not from base (merges included; after a force-push, from their merge
	// base), or head alone when base is empty or unknown, and returns one
	// error per untrusted commit. An error is a failure to read the
	// history.
	VerifyCommits(ctx context.Context, base, head string) (spec.ErrorList, error)
}

// Store is the transaction boundary the reconciler writes through.
type Store interface {
	StoredHashes(ctx context.Context) (map[spec.Key]string, error)
	ContentHashes(ctx context.Context) (hashes map[spec.Key]string, drifted int, err error)
	// The writes carry the fence of the lease they are made under, and fail
	// with state.ErrFenced (changing nothing) once it is no longer current.
	Apply(ctx context.Context, fence state.Fence, rev state.Revision, plan state.Plan, status state.Status) (int64, error)
	RecordAttempt(ctx context.Context, fence state.Fence, rev state.Revision, outcome state.RevisionOutcome, errs spec.ErrorList, status state.Status) (int64, error)
	SetStatus(ctx context.Context, fence state.Fence, status state.Status) error
	Status(ctx context.Context) (state.Status, error)
}

// Lease is held by the one replica that reconciles.
type Lease interface {
	Done() <-chan struct{} // closed when the lease is lost
	Release()
	Fence() state.Fence // the term's fencing token, carried by every write
}

// Elector hands out the reconcile lease to at most one replica at a time.
type Elector interface {
	TryLeader(ctx context.Context) (Lease, bool, error)
}

// ElectorOf adapts a TryLeader that returns a concrete lease type (such as
// the store's) to an Elector.
func ElectorOf[L Lease](tryLeader func(ctx context.Context) (L, bool, error)) Elector {
	return electorFunc(func(ctx context.Context) (Lease, bool, error) {
		lease, ok, err := tryLeader(ctx)
		if !ok || err != nil {
			return nil, false, err
		}
		return lease, true, nil
	})
}

type electorFunc func(ctx context.Context) (Lease, bool, error)

func (f electorFunc) TryLeader(ctx context.Context) (Lease, bool, error) { return f(ctx) }

// EventSink receives one-off events worth notifying someone about.
type EventSink interface {
	Event(ctx context.Context, a alert.Alert) error
}

// Options tune the reconcile loop; zero values take the documented defaults.
type Options struct {
	// Events, when set, is told about every refused revision, with its errors.
	Events EventSink
	// Verifier, when set, makes every new head wait for its commits since
	// the last applied revision to be verified (see VerifyRevision).
	Verifier CommitVerifier
	// Latest, when set, is given every revision loaded whole and valid,
	// so other parts of the process share its objects.
	Latest *spec.Latest
	// WhileLeading are run beside the reconcile loop for each leadership
	// term, each in its own goroutine, with a context that ends with the
	// term (the lease lost or released, or Run's context ended); the lease
	// is released only after they have all returned. Leader-only
	// background work (pruning history, re-checking ACME renewal
	// information) runs here.
	WhileLeading        []func(ctx context.Context)
	Interval            time.Duration // poll interval (default 1m)
	Jitter              float64       // ± fraction of the interval (default 0.1)
	FullCompareInterval time.Duration // drift check against the database (default 10m)
	RetryMin            time.Duration // first backoff after a transient failure (default 1s)
	RetryMax            time.Duration // backoff cap (default 5m)
	LeaderRetry         time.Duration // how often a follower tries for the lease (default 2s)
	PruneGuard          PruneGuard
	Now                 func() time.Time
	Rand                func() float64 // in [0,1); for jitter
}

func (o Options) withDefaults() Options {
	o.Interval = cmp.Or(max(o.Interval, 0), time.Minute)
	o.FullCompareInterval = cmp.Or(max(o.FullCompareInterval, 0), 10*time.Minute)
	o.RetryMin = cmp.Or(max(o.RetryMin, 0), time.Second)
	o.RetryMax = cmp.Or(max(o.RetryMax, 0), 5*time.Minute)
	o.LeaderRetry = cmp.Or(max(o.LeaderRetry, 0), 2*time.Second)
	if o.Jitter <= 0 {
		o.Jitter = 0.1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	return o
}

// Reconciler converges the store to the source's desired state. Only the
// replica holding the lease runs it; see Run.
type Reconciler struct {
	src     Source
	store   Store
	elector Elector
	m       *Metrics
	log     *slog.Logger
	opt     Options
	wake    chan struct{}

	// State of the current leadership term.
	fence        state.Fence // the term's lease
	started      bool
	loader       Loader
	stored       map[spec.Key]string // hashes in the store; nil = unknown
	applied      state.Revision
	stalled      *StalledError // why the head refused last was refused, if any
	stalledAt    string        // that head's commit
	failedCommit string        // the commit whose apply failure was last recorded
	verified     string        // "base..head" last verified trusted
	status       state.Status
	lastFull     time.Time
	failures     int
}

// New returns a Reconciler.
func New(src Source, st Store, el Elector, m *Metrics, logger *slog.Logger, opt Options) *Reconciler {
	return &Reconciler{src: src, store: st, elector: el, m: m, log: logger, opt: opt.withDefaults(),
		wake: make(chan struct{}, 1)}
}

// Wake asks for a reconcile now (webhook, file watcher). It never blocks.
func (r *Reconciler) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run reconciles until ctx ends, while holding the lease; without it, it
// waits and tries again, so of several replicas exactly one reconciles.
func (r *Reconciler) Run(ctx context.Context) error {
	for {
		lease, ok, err := r.elector.TryLeader(ctx)
		if err != nil {
			r.log.Warn("leader election failed", "err", err)
		}
		if ok {
			r.log.Info("acquired reconcile lease")
			r.m.leader.Set(1)
			endTerm := r.whileLeading(ctx, lease)
			r.lead(ctx, lease)
			endTerm()
			lease.Release()
			r.m.leader.Set(0)
			r.log.Info("released reconcile lease")
		}
		if err := sleep(ctx, r.opt.LeaderRetry); err != nil {
			return nil
		}
	}
}

// whileLeading starts Options.WhileLeading for the term of lease, and
// returns the function that ends them and waits for them to return.
func (r *Reconciler) whileLeading(ctx context.Context, lease Lease) (endTerm func()) {
	if len(r.opt.WhileLeading) == 0 {
		return func() {}
	}
	termCtx, cancel := context.WithCancel(ctx)
	var work sync.WaitGroup
	for _, fn := range r.opt.WhileLeading {
		work.Go(func() { fn(termCtx) })
	}
	go func() {
		select {
		case <-lease.Done():
			cancel()
		case <-termCtx.Done():
		}
	}()
	return func() {
		cancel()
		work.Wait()
	}
}

// lead runs the reconcile loop for one leadership term. Its work is tied to
// the lease: the pass in progress is cancelled when the lease is lost, and no
// pass starts without it.
func (r *Reconciler) lead(ctx context.Context, lease Lease) {
	r.failures = 0
	for {
		out := r.ReconcileOnce(ctx, lease)
		if ctx.Err() != nil || out.Reason == state.ReasonLeaseLost {
			return
		}
		delay := r.nextDelay(out)
		select {
		case <-ctx.Done():
			return
		case <-lease.Done():
			r.log.Warn("lost reconcile lease")
			return
		case <-r.wake:
		case <-time.After(delay):
		}
	}
}

// startTerm forgets everything cached: another replica may have applied
// revisions since this one last led. Until the stored status is read the
// term has not started: writing a status built from nothing would erase
// the last applied revision from it.
func (r *Reconciler) startTerm(ctx context.Context) error {
	r.loader.Reset()
	r.stored, r.applied, r.stalled, r.stalledAt, r.failedCommit, r.verified = nil, state.Revision{}, nil, "", "", ""
	r.lastFull = r.opt.Now()
	st, err := r.store.Status(ctx)
	if err != nil {
		return fmt.Errorf("read status: %w", err)
	}
	r.status, r.started = st, true
	return nil
}

func (r *Reconciler) nextDelay(out state.Outcome) time.Duration {
	if out.Result != state.ResultTransient {
		r.failures = 0
		return r.jitter(r.opt.Interval)
	}
	r.failures++
	d := float64(r.opt.RetryMin) * math.Pow(2, float64(r.failures-1))
	if d > float64(r.opt.RetryMax) {
		d = float64(r.opt.RetryMax)
	}
	return r.jitter(time.Duration(d))
}

func (r *Reconciler) jitter(d time.Duration) time.Duration {
	f := 1 + r.opt.Jitter*(2*r.opt.Rand()-1)
	return time.Duration(float64(d) * f)
}

// ReconcileOnce fetches the head, and when it is new (or a drift check is
// due) loads, validates, plans and applies it, as the holder of lease: a
// lease of a new term starts the term (every cache is read again), and the
// pass ends when the lease does. It never panics on bad input: every failure
// is sorted into stalled or transient, and finalize turns the result into
// status, history, metrics, logs and events.
func (r *Reconciler) ReconcileOnce(ctx context.Context, lease Lease) state.Outcome {
	if f := lease.Fence(); f != r.fence {
		r.fence, r.started = f, false // a new term
	}
	shutdown := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lease.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	var p pass
	err := leaseLost(lease)
	if err == nil {
		p, err = r.attempt(ctx)
	}
	if err != nil && !errors.Is(err, state.ErrFenced) && leaseLost(lease) != nil {
		err = fmt.Errorf("%w: %w", state.ErrFenced, err) // cancelled by the lease's end
	}
	if errors.Is(err, state.ErrFenced) && shutdown.Err() != nil {
		// Shutting down ends the lease too: not another replica's doing.
		r.started = false
		r.log.Info("reconcile pass interrupted by shutdown; it wrote nothing more", "revision", p.head.String())
		return state.Outcome{Revision: p.head, Result: state.ResultTransient, Reason: state.ReasonLeaseLost, Err: err}
	}
	return r.finalize(ctx, p, err)
}

// leaseLost is state.ErrFenced once the lease has ended.
func leaseLost(lease Lease) error {
	select {
	case <-lease.Done():
		return state.ErrFenced
	default:
		return nil
	}
}

// pass is what one attempt got to: the head it read and, when it applied
// (or confirmed) it, the plan.
type pass struct {
	head      state.Revision
	plan      state.Plan
	desired   spec.State
	applied   bool // the head is applied (plan may be empty)
	unchanged bool // nothing new: the head was applied before
	repeat    bool // the head is the one refused last
	drift     int  // rows repaired by a full compare
}

// attempt is one reconcile up to its result: nil with what was done, or a
// *StalledError or *TransientError. It writes nothing but the apply itself
// (whose transaction carries the status); finalize does the rest.
func (r *Reconciler) attempt(ctx context.Context) (pass, error) {
	var p pass
	if !r.started {
		if err := r.startTerm(ctx); err != nil {
			return p, &TransientError{Reason: state.ReasonStoreUnavailable, Err: err}
		}
	}
	now := r.opt.Now()

	t := time.Now()
	head, err := r.src.Head(ctx)
	r.m.duration.WithLabelValues("fetch").Observe(time.Since(t).Seconds())
	p.head = head
	if err != nil {
		r.m.fetches.WithLabelValues("error").Inc()
		return p, transient(state.ReasonFetchFailed, "fetch: %w", err)
	}
	r.status.LastFetchAt = &now
	r.m.lastFetch.Set(float64(now.Unix()))

	fullDue := now.Sub(r.lastFull) >= r.opt.FullCompareInterval
	switch {
	case head.Commit == r.applied.Commit && r.stored != nil && !fullDue:
		r.m.fetches.WithLabelValues("unchanged").Inc()
		p.unchanged = true
		return p, nil
	case r.stalled != nil && head.Commit == r.stalledAt:
		// A refused head stays refused however often it is polled; the
		// drift check needs a head that can be applied.
		r.m.fetches.WithLabelValues("unchanged").Inc()
		p.repeat = true
		return p, r.stalled
	}
	r.m.fetches.WithLabelValues("changed").Inc()

	// Only commits signed by trusted keys are applied: every commit since
	// the last applied one, checked once per head.
	if r.opt.Verifier != nil {
		base := state.CommitOf(r.status.LastAppliedRevision)
		if key := base + ".." + head.Commit; key != r.verified {
			t = time.Now()
			err := VerifyRevision(ctx, r.opt.Verifier, base, head)
			r.m.duration.WithLabelValues("verify").Observe(time.Since(t).Seconds())
			if err != nil {
				return p, err
			}
			r.verified = key
		}
	}

	// Load and validate the revision as a whole.
	t = time.Now()
	fsys, err := r.src.FS(ctx, head.Commit)
	if err != nil {
		return p, transient(state.ReasonFetchFailed, "read revision: %w", err)
	}
	desired, err := r.loader.LoadRevision(fsys, head, r.changedSince(ctx, head))
	r.m.duration.WithLabelValues("load").Observe(time.Since(t).Seconds())
	if err != nil {
		return p, err
	}
	r.m.validationErrors.Set(0)
	p.desired = desired.State
	if r.opt.Latest != nil {
		r.opt.Latest.Set(desired.State)
	}

	// Plan against what the store holds.
	t = time.Now()
	stored, drift, err := r.storedState(ctx, fullDue)
	if err != nil {
		return p, &TransientError{Reason: state.ReasonStoreUnavailable, Err: err}
	}
	plan, err := r.opt.PruneGuard.Plan(head, desired, stored)
	r.m.duration.WithLabelValues("plan").Observe(time.Since(t).Seconds())
	if err != nil {
		return p, err
	}
	p.plan, p.drift = plan, drift

	// Apply in one transaction with the status it leads to, or just confirm
	// an unchanged revision (finalize saves the status then).
	t = time.Now()
	next := r.status.Clone()
	next.MarkApplied(head, now)
	if !plan.Empty() || r.status.LastAppliedRevision != head.String() {
		r.status.SetCondition(state.ConditionReconciling, state.True, state.ReasonProgressing,
			fmt.Sprintf("Applying revision %s (%d changes)", head, len(plan.Changes)), now)
		r.saveStatus(ctx)
		if _, err := r.store.Apply(ctx, r.fence, head, plan, next); err != nil {
			r.stored = nil
			return p, transient(state.ReasonApplyFailed, "apply: %w", err)
		}
		p.applied = true
	}
	r.status = next
	r.m.duration.WithLabelValues("apply").Observe(time.Since(t).Seconds())
	r.stored = plan.Applied(stored)
	return p, nil
}

// finalize derives everything that follows from an attempt's result: the
// status and its conditions (saved, or recorded with the refused revision),
// the cached term state, the metrics, the log line and the events.
func (r *Reconciler) finalize(ctx context.Context, p pass, err error) state.Outcome {
	now := r.opt.Now()
	out := state.Outcome{Revision: p.head, Plan: p.plan}
	var stalled *StalledError
	var tr *TransientError
	switch {
	case errors.Is(err, state.ErrFenced):
		// Another replica leads now: nothing of this pass may be written,
		// and the next term starts from what is stored.
		out.Result, out.Reason, out.Message, out.Err = state.ResultTransient, state.ReasonLeaseLost, err.Error(), err
		r.started = false
		r.log.Warn("lost reconcile lease; this pass wrote nothing more", "revision", p.head.String(), "err", err)
	case errors.As(err, &stalled) && p.repeat:
		out.Result, out.Repeat = state.ResultStalled, true
		out.Reason, out.Message, out.Errors = stalled.Reason, stalled.Message, stalled.Errors
		r.status.MarkStalled(stalled.Reason, stalled.Message, now)
		r.saveStatus(ctx)
		r.log.Debug("head is still the refused revision", "revision", p.head.String())
	case errors.As(err, &stalled):
		out = r.refused(ctx, p.head, stalled, now)
	case errors.As(err, &tr):
		out = r.retry(ctx, p.head, tr, now)
	case err != nil: // every error of attempt is typed; this is a bug
		out = r.retry(ctx, p.head, &TransientError{Reason: state.ReasonApplyFailed, Err: err}, now)
	case p.unchanged:
		// Conditions may still show an earlier transient failure (a fetch
		// that failed): the applied head is ready again.
		out.Result = state.ResultUnchanged
		r.status.MarkReady("Applied revision "+p.head.String(), now)
		r.saveStatus(ctx)
	default:
		out.Result = state.ResultSuccess
		if !p.applied {
			r.saveStatus(ctx) // an empty plan: the status only
		}
		if p.drift > 0 {
			r.m.driftRepaired.Add(float64(p.drift))
			r.log.Warn("repaired out-of-band changes in the database", "objects", p.drift)
		}
		r.applied, r.stalled, r.stalledAt, r.failedCommit = p.head, nil, "", ""
		r.m.setObjects(p.desired)
		r.m.setRevision(p.head)
		r.m.lastApplied.Set(float64(now.Unix()))
		r.log.Info("revision applied", "revision", p.head.String(), "changes", len(p.plan.Changes))
	}
	r.m.reconciles.WithLabelValues(string(out.Result)).Inc()
	return out
}

// refused records a revision that needs a human, with the status, in the
// revision history: nothing of it is applied and the last applied revision
// keeps serving. It is announced once per commit.
func (r *Reconciler) refused(ctx context.Context, head state.Revision, e *StalledError, now time.Time) state.Outcome {
	switch e.Reason {
	case state.ReasonValidationFailed:
		r.m.validationErrors.Set(float64(len(e.Errors)))
	case state.ReasonPruneBlocked:
		r.m.pruneBlocked.Inc()
	}
	r.status.MarkRefused(head, e.Reason, e.Message, e.Errors, now)
	if _, err := r.store.RecordAttempt(ctx, r.fence, head, e.Outcome, e.Errors, r.status); err != nil {
		if errors.Is(err, state.ErrFenced) {
			return r.finalize(ctx, pass{head: head}, err)
		}
		return r.retry(ctx, head, transient(state.ReasonStoreUnavailable, "record refused revision: %w", err), now)
	}
	r.stalled, r.stalledAt = e, head.Commit
	first := ""
	if len(e.Errors) > 0 {
		first = e.Errors[0].Error()
	}
	r.log.Error("revision refused", "revision", head.String(), "reason", e.Reason, "errors", len(e.Errors), "first", first)
	r.announceRefused(ctx, head, e)
	return state.Outcome{Result: state.ResultStalled, Revision: head, Reason: e.Reason, Message: e.Message, Errors: e.Errors}
}

// retry shows a failure worth retrying with backoff in the status. The first
// apply failure of a commit is also recorded in the revision history
// (outcome "failed") when the database takes it.
func (r *Reconciler) retry(ctx context.Context, head state.Revision, e *TransientError, now time.Time) state.Outcome {
	out := state.Outcome{Result: state.ResultTransient, Revision: head, Reason: e.Reason, Message: e.Error(), Err: e}
	r.log.Warn("reconcile failed; will retry", "revision", head.String(), "reason", e.Reason, "err", e.Err)
	if !r.started {
		return out // no status to show the failure in: the retry starts the term
	}
	r.status.MarkRetrying(e.Reason, e.Error(), now)
	r.saveStatus(ctx)
	if e.Reason == state.ReasonApplyFailed && r.failedCommit != head.Commit {
		errs := spec.ErrorList{{Message: e.Error()}}
		if _, err := r.store.RecordAttempt(ctx, r.fence, head, state.OutcomeFailed, errs, r.status); err == nil {
			r.failedCommit = head.Commit
		}
	}
	return out
}

// announceRefused sends a RevisionRefused event with the first errors. The
// subject is the commit, so a new leader refusing the same commit again
// does not notify twice.
func (r *Reconciler) announceRefused(ctx context.Context, head state.Revision, e *StalledError) {
	if r.opt.Events == nil {
		return
	}
	const shown = 20
	var b strings.Builder
	b.WriteString(e.Message + ":")
	for i, err := range e.Errors {
		if i == shown {
			fmt.Fprintf(&b, "\n… and %d more", len(e.Errors)-shown)
			break
		}
		b.WriteString("\n" + err.Error())
	}
	since := head.Time
	if since.IsZero() {
		since = r.opt.Now()
	}
	err := r.opt.Events.Event(ctx, alert.Alert{Name: alert.RevisionRefused, Severity: alert.Critical,
		Subject: head.Commit, Summary: "Revision " + head.String() + " refused (" + string(e.Reason) + ")",
		Description: b.String(), Labels: map[string]string{"reason": string(e.Reason)}, Since: since})
	if err != nil {
		r.log.Warn("notify refused revision", "err", err)
	}
}

// changedSince lists the files changed between the cached load and head, or
// nil (a full load) when there is no usable cache.
func (r *Reconciler) changedSince(ctx context.Context, head state.Revision) []string {
	base := r.loader.Commit()
	switch {
	case base == "":
		return nil
	case base == head.Commit:
		return []string{}
	}
	changed, err := r.src.ChangedFiles(ctx, base, head.Commit)
	if err != nil {
		r.log.Warn("tree diff failed; loading the whole revision", "err", err)
		return nil
	}
	return changed
}

// storedState returns the stored hashes: from the cache, from the hash
// column, or — when a full comparison is due — recomputed from each row's
// content, in which case drift counts the rows edited, deleted or inserted
// out of band.
func (r *Reconciler) storedState(ctx context.Context, full bool) (map[spec.Key]string, int, error) {
	if !full && r.stored != nil {
		return r.stored, 0, nil
	}
	if !full {
		st, err := r.store.StoredHashes(ctx)
		return st, 0, err
	}
	content, drift, err := r.store.ContentHashes(ctx)
	if err != nil {
		return nil, 0, err
	}
	// Rows deleted or inserted behind our back are drift too: the cache says
	// what this replica last wrote.
	if r.stored != nil {
		for k := range r.stored {
			if _, ok := content[k]; !ok {
				drift++
			}
		}
		for k := range content {
			if _, ok := r.stored[k]; !ok {
				drift++
			}
		}
	}
	r.lastFull = r.opt.Now()
	return content, drift, nil
}

func (r *Reconciler) saveStatus(ctx context.Context) {
	if err := r.store.SetStatus(ctx, r.fence, r.status); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, state.ErrFenced) {
		r.log.Warn("save status", "err", err)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Rounds runs round every interval until ctx ends: the leader-only work
// of Options.WhileLeading (pruning history, re-checking ACME renewal
// information) is made of such rounds. The first round starts after one
// interval, at most a minute, so that a new leader's first reconcile goes
// first.
func Rounds(ctx context.Context, interval time.Duration, round func(context.Context)) {
	wait := min(interval, time.Minute)
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		round(ctx)
		wait = interval
	}
}
