package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
)

// Source is where revisions come from: a git repository or a watched directory.
type Source interface {
	// Head returns the current revision of the configured ref. An unchanged
	// remote must cost no more than a cheap ref check.
	Head(ctx context.Context) (Revision, error)
	// FS returns the config tree (rooted at the configured path) of a commit.
	FS(ctx context.Context, commit string) (fs.FS, error)
	// ChangedFiles lists the config-tree paths that differ between two commits.
	ChangedFiles(ctx context.Context, from, to string) ([]string, error)
}

// Store is the transaction boundary the reconciler writes through.
type Store interface {
	StoredHashes(ctx context.Context) (map[spec.Key]string, error)
	ContentHashes(ctx context.Context) (hashes map[spec.Key]string, drifted int, err error)
	Apply(ctx context.Context, rev Revision, plan Plan, status Status) (int64, error)
	RecordAttempt(ctx context.Context, rev Revision, outcome string, errs spec.ErrorList, status Status) (int64, error)
	SetStatus(ctx context.Context, status Status) error
	Status(ctx context.Context) (Status, error)
}

// Lease is held by the one replica that reconciles.
type Lease interface {
	Done() <-chan struct{} // closed when the lease is lost
	Release()
}

// Elector hands out the reconcile lease to at most one replica at a time.
type Elector interface {
	TryLeader(ctx context.Context) (Lease, bool, error)
}

// EventSink receives one-off events worth notifying someone about.
type EventSink interface {
	Event(ctx context.Context, a alert.Alert) error
}

// Options tune the reconcile loop; zero values take the documented defaults.
type Options struct {
	// Events, when set, is told about every refused revision, with its errors.
	Events              EventSink
	Interval            time.Duration // poll interval (default 1m)
	Jitter              float64       // ± fraction of the interval (default 0.1)
	FullCompareInterval time.Duration // drift check against the database (default 10m)
	RetryMin            time.Duration // first backoff after a transient failure (default 1s)
	RetryMax            time.Duration // backoff cap (default 5m)
	LeaderRetry         time.Duration // how often a follower tries for the lease (default 5s)
	PruneGuard          PruneGuard
	Now                 func() time.Time
	Rand                func() float64 // in [0,1); for jitter
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Interval, time.Minute)
	def(&o.FullCompareInterval, 10*time.Minute)
	def(&o.RetryMin, time.Second)
	def(&o.RetryMax, 5*time.Minute)
	def(&o.LeaderRetry, 5*time.Second)
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

// The results of one reconcile, as counted in certops_reconcile_total.
const (
	resultSuccess   = "success"   // a revision was applied (or drift repaired)
	resultUnchanged = "unchanged" // nothing new; next interval
	resultStalled   = "stalled"   // needs a human: invalid revision, prune guard
	resultTransient = "transient" // fetch or database trouble; retry with backoff
)

// Outcome is what one reconcile did.
type Outcome struct {
	Result   string
	Revision Revision
	Plan     Plan
	Errors   spec.ErrorList // for stalled outcomes
	Err      error          // for transient outcomes
	repeat   bool           // the same refused head, polled again
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
	started      bool
	loader       Loader
	stored       map[spec.Key]string // hashes in the store; nil = unknown
	applied      Revision
	stalled      stallState // the head refused last, if any
	failedCommit string     // the commit whose apply failure was last recorded
	status       Status
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
			r.lead(ctx, lease)
			lease.Release()
			r.m.leader.Set(0)
			r.log.Info("released reconcile lease")
		}
		if err := sleep(ctx, r.opt.LeaderRetry); err != nil {
			return nil
		}
	}
}

// lead runs the reconcile loop for one leadership term.
func (r *Reconciler) lead(ctx context.Context, lease Lease) {
	r.started, r.failures = false, 0
	for {
		out := r.ReconcileOnce(ctx)
		if ctx.Err() != nil {
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
	r.stored, r.applied, r.stalled, r.failedCommit = nil, Revision{}, stallState{}, ""
	r.lastFull = r.opt.Now()
	st, err := r.store.Status(ctx)
	if err != nil {
		return fmt.Errorf("read status: %w", err)
	}
	r.status, r.started = st, true
	return nil
}

func (r *Reconciler) nextDelay(out Outcome) time.Duration {
	if out.Result != resultTransient {
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
// due) loads, validates, plans and applies it. It never panics on bad input:
// every failure is sorted into stalled or transient and shown in the status.
func (r *Reconciler) ReconcileOnce(ctx context.Context) Outcome {
	out := r.reconcile(ctx)
	r.m.reconciles.WithLabelValues(out.Result).Inc()
	switch out.Result {
	case resultTransient:
		r.log.Warn("reconcile failed; will retry", "revision", out.Revision.String(), "err", out.Err)
	case resultStalled:
		if out.repeat {
			r.log.Debug("head is still the refused revision", "revision", out.Revision.String())
			break
		}
		first := ""
		if len(out.Errors) > 0 {
			first = out.Errors[0].Error()
		}
		r.log.Error("revision refused", "revision", out.Revision.String(), "errors", len(out.Errors), "first", first)
	case resultSuccess:
		r.log.Info("revision applied", "revision", out.Revision.String(), "changes", len(out.Plan.Changes))
	}
	return out
}

func (r *Reconciler) reconcile(ctx context.Context) Outcome {
	if !r.started {
		if err := r.startTerm(ctx); err != nil {
			// No status to show the failure in: the retry starts the term.
			return Outcome{Result: resultTransient, Err: err}
		}
	}
	now := r.opt.Now()

	t := time.Now()
	head, err := r.src.Head(ctx)
	r.m.duration.WithLabelValues("fetch").Observe(time.Since(t).Seconds())
	if err != nil {
		r.m.fetches.WithLabelValues("error").Inc()
		return r.transient(ctx, head, "FetchFailed", fmt.Errorf("fetch: %w", err))
	}
	r.status.LastFetchAt = &now
	r.m.lastFetch.Set(float64(now.Unix()))

	fullDue := now.Sub(r.lastFull) >= r.opt.FullCompareInterval
	switch {
	case head.Commit == r.applied.Commit && r.stored != nil && !fullDue:
		// Nothing new. Conditions may still show an earlier transient
		// failure (a fetch that failed): the applied head is ready again.
		r.m.fetches.WithLabelValues("unchanged").Inc()
		r.status.setReady("Applied revision "+head.String(), now)
		r.saveStatus(ctx)
		return Outcome{Result: resultUnchanged, Revision: head}
	case head.Commit == r.stalled.commit:
		// A refused head stays refused however often it is polled; the
		// drift check needs a head that can be applied.
		r.m.fetches.WithLabelValues("unchanged").Inc()
		r.status.setStalled(r.stalled.reason, r.stalled.message, now)
		r.saveStatus(ctx)
		return Outcome{Result: resultStalled, Revision: head, Errors: r.status.Errors, repeat: true}
	}
	r.m.fetches.WithLabelValues("changed").Inc()

	// Load and validate the revision as a whole.
	t = time.Now()
	fsys, err := r.src.FS(ctx, head.Commit)
	if err != nil {
		return r.transient(ctx, head, "FetchFailed", fmt.Errorf("read revision: %w", err))
	}
	changed := r.changedSince(ctx, head)
	state, verrs := r.loader.Load(fsys, head.Commit, changed)
	r.m.duration.WithLabelValues("load").Observe(time.Since(t).Seconds())
	allowed, err := ReadAllowPrune(fsys)
	if err != nil {
		verrs = append(verrs, spec.Error{File: AllowPruneFile, Message: err.Error()})
	}
	if len(verrs) > 0 {
		r.m.validationErrors.Set(float64(len(verrs)))
		return r.stall(ctx, head, "invalid", "ValidationFailed",
			fmt.Sprintf("revision %s has %d validation error(s)", head, len(verrs)), verrs)
	}
	r.m.validationErrors.Set(0)

	// Plan against what the store holds.
	t = time.Now()
	stored, drift, err := r.storedState(ctx, fullDue)
	if err != nil {
		return r.transient(ctx, head, "StoreUnavailable", err)
	}
	plan := Compute(state.Objects, stored)
	r.m.duration.WithLabelValues("plan").Observe(time.Since(t).Seconds())
	if over := r.opt.PruneGuard.Check(plan, stored, allowed); over != nil {
		r.m.pruneBlocked.Inc()
		errs := make(spec.ErrorList, len(over))
		for i, o := range over {
			errs[i] = spec.Error{File: AllowPruneFile, Message: "prune guard: " + o +
				"; to allow it, commit " + AllowPruneFile + " containing the number of deletions or \"all\""}
		}
		return r.stall(ctx, head, "prune-blocked", "PruneBlocked",
			fmt.Sprintf("revision %s would delete too many objects", head), errs)
	}

	// Apply in one transaction, or just confirm an unchanged revision.
	t = time.Now()
	next := r.status.clone()
	next.succeed(head, now)
	if plan.Empty() && r.status.LastAppliedRevision == head.String() {
		r.status = next
		r.saveStatus(ctx)
	} else {
		if _, err := r.store.Apply(ctx, head, plan, next); err != nil {
			r.stored = nil
			return r.applyFailed(ctx, head, err)
		}
		r.status = next
	}
	r.m.duration.WithLabelValues("apply").Observe(time.Since(t).Seconds())
	r.stored = applyPlan(stored, plan)
	if drift > 0 {
		r.m.driftRepaired.Add(float64(drift))
		r.log.Warn("repaired out-of-band changes in the database", "objects", drift)
	}
	r.applied, r.stalled, r.failedCommit = head, stallState{}, ""
	r.m.setObjects(state)
	r.m.setRevision(head)
	r.m.lastApplied.Set(float64(now.Unix()))
	return Outcome{Result: resultSuccess, Revision: head, Plan: plan}
}

// changedSince lists the files changed between the cached load and head, or
// nil (a full load) when there is no usable cache.
func (r *Reconciler) changedSince(ctx context.Context, head Revision) []string {
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

// applyPlan returns stored as it is after plan was applied.
func applyPlan(stored map[spec.Key]string, plan Plan) map[spec.Key]string {
	out := make(map[spec.Key]string, len(stored)+len(plan.Changes))
	for k, v := range stored {
		out[k] = v
	}
	for _, c := range plan.Changes {
		if c.Action == ActionDelete {
			delete(out, c.Key)
		} else {
			out[c.Key] = c.NewHash
		}
	}
	return out
}

// clone returns a copy of s that shares no slices with it.
func (s Status) clone() Status {
	s.Conditions = append([]Condition(nil), s.Conditions...)
	s.Errors = append(spec.ErrorList(nil), s.Errors...)
	return s
}

// succeed marks head as applied.
func (s *Status) succeed(head Revision, now time.Time) {
	s.LastAppliedRevision, s.LastAppliedAt = head.String(), &now
	s.LastAttemptedRevision, s.LastAttemptedAt = head.String(), &now
	s.Errors = nil
	s.setReady("Applied revision "+head.String(), now)
}

// setReady sets the conditions of an applied head.
func (s *Status) setReady(msg string, now time.Time) {
	s.setCondition(ConditionReady, "True", "ReconciliationSucceeded", msg, now)
	s.setCondition(ConditionReconciling, "False", "ReconciliationSucceeded", msg, now)
	s.setCondition(ConditionStalled, "False", "ReconciliationSucceeded", msg, now)
}

// setStalled sets the conditions of a head that needs a human.
func (s *Status) setStalled(reason, msg string, now time.Time) {
	s.setCondition(ConditionReady, "False", reason, msg, now)
	s.setCondition(ConditionReconciling, "False", reason, msg, now)
	s.setCondition(ConditionStalled, "True", reason, msg, now)
}

// stallState remembers the refused head, so polling it again neither
// re-validates nor records it again.
type stallState struct {
	commit, reason, message string
}

// stall records a revision that needs a human: nothing of it is applied and
// the last applied revision keeps serving.
func (r *Reconciler) stall(ctx context.Context, head Revision, outcome, reason, msg string, errs spec.ErrorList) Outcome {
	now := r.opt.Now()
	s := &r.status
	s.LastAttemptedRevision, s.LastAttemptedAt, s.Errors = head.String(), &now, errs
	s.setStalled(reason, msg, now)
	if _, err := r.store.RecordAttempt(ctx, head, outcome, errs, r.status); err != nil {
		return r.transient(ctx, head, "StoreUnavailable", fmt.Errorf("record refused revision: %w", err))
	}
	r.stalled = stallState{commit: head.Commit, reason: reason, message: msg}
	r.announceRefused(ctx, head, reason, msg, errs)
	return Outcome{Result: resultStalled, Revision: head, Errors: errs}
}

// announceRefused sends a RevisionRefused event with the first errors. The
// subject is the commit, so a new leader refusing the same commit again
// does not notify twice.
func (r *Reconciler) announceRefused(ctx context.Context, head Revision, reason, msg string, errs spec.ErrorList) {
	if r.opt.Events == nil {
		return
	}
	const shown = 20
	var b strings.Builder
	b.WriteString(msg + ":")
	for i, e := range errs {
		if i == shown {
			fmt.Fprintf(&b, "\n… and %d more", len(errs)-shown)
			break
		}
		b.WriteString("\n" + e.Error())
	}
	since := head.Time
	if since.IsZero() {
		since = r.opt.Now()
	}
	err := r.opt.Events.Event(ctx, alert.Alert{Name: alert.RevisionRefused, Severity: alert.Critical,
		Subject: head.Commit, Summary: "Revision " + head.String() + " refused (" + reason + ")",
		Description: b.String(), Labels: map[string]string{"reason": reason}, Since: since})
	if err != nil {
		r.log.Warn("notify refused revision", "err", err)
	}
}

// applyFailed handles a failed apply transaction: nothing was applied, and
// it is retried with backoff. The first failure of a commit is recorded in
// the revision history (outcome "failed") when the database takes it.
func (r *Reconciler) applyFailed(ctx context.Context, head Revision, err error) Outcome {
	err = fmt.Errorf("apply: %w", err)
	out := r.transient(ctx, head, "ApplyFailed", err)
	if r.failedCommit != head.Commit {
		errs := spec.ErrorList{{Message: err.Error()}}
		if _, rerr := r.store.RecordAttempt(ctx, head, "failed", errs, r.status); rerr == nil {
			r.failedCommit = head.Commit
		}
	}
	return out
}

// transient records a failure worth retrying with backoff.
func (r *Reconciler) transient(ctx context.Context, head Revision, reason string, err error) Outcome {
	now := r.opt.Now()
	s := &r.status
	msg := err.Error()
	s.setCondition(ConditionReady, "False", reason, msg, now)
	s.setCondition(ConditionReconciling, "True", "RetryingAfterFailure", msg, now)
	s.setCondition(ConditionStalled, "False", reason, msg, now)
	r.saveStatus(ctx)
	return Outcome{Result: resultTransient, Revision: head, Err: err}
}

func (r *Reconciler) saveStatus(ctx context.Context) {
	if err := r.store.SetStatus(ctx, r.status); err != nil && !errors.Is(err, context.Canceled) {
		r.log.Warn("save status", "err", err)
	}
}

// setCondition sets a condition, keeping its transition time unless its status changes.
func (s *Status) setCondition(typ, status, reason, msg string, now time.Time) {
	for i := range s.Conditions {
		c := &s.Conditions[i]
		if c.Type != typ {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message = status, reason, msg
		return
	}
	s.Conditions = append(s.Conditions, Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: now})
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
