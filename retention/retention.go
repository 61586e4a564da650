// Package retention prunes the history certops would otherwise keep
// forever: old certificate versions and old revisions with their actions.
// A Pruner runs on the leader only (serve starts it for each leadership
// term, see reconcile.Options.WhileLeading). It deletes in small batches,
// each batch its own short transaction in the store, with a pause between
// batches, so pruning never holds locks for long and stops between any two
// batches when its context ends, leaving every row either kept or
// prunable by the next round.
package retention

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/store"
)

// Store is what the pruner needs of the database: one method per batch.
type Store interface {
	PruneVersionsBatch(ctx context.Context, after store.VersionCursor, keep, limit int) (store.VersionBatch, error)
	PrunableRevisions(ctx context.Context, keep store.RevisionRetention, limit int) ([]int64, error)
	PruneRevisionActions(ctx context.Context, ids []int64, limit int) (int64, error)
	PruneRevisions(ctx context.Context, ids []int64, keep store.RevisionRetention) (int64, error)
	PruneACMEIssuances(ctx context.Context, before time.Time, limit int) (int64, error)
}

// Defaults of Options (and of `certops serve`'s flags).
const (
	DefaultKeepVersions     = 5
	DefaultKeepRevisionsFor = 365 * 24 * time.Hour
	DefaultKeepRevisions    = 1000
	DefaultInterval         = time.Hour
	DefaultBatchSize        = 1000
	DefaultPause            = 50 * time.Millisecond
)

// Options say what to keep and how fast to prune. Use Defaults for the
// documented defaults: zero counts and ages are meaningful (keep none).
type Options struct {
	// KeepVersions is how many versions per (certificate, agent) are kept
	// besides those still valid or in use (current, installed, served).
	KeepVersions int
	// KeepRevisionsFor and KeepRevisions keep the revisions applied within
	// that age or among the newest that many; the newest revision, the last
	// applied one and those objects reference are always kept.
	KeepRevisionsFor time.Duration
	KeepRevisions    int
	// Interval is the time between pruning rounds; 0 disables pruning.
	Interval time.Duration
	// BatchSize bounds the rows one transaction deletes (default 1000).
	BatchSize int
	// Pause is the wait between two batches (default 50ms).
	Pause time.Duration
}

// Defaults are the documented defaults.
func Defaults() Options {
	return Options{KeepVersions: DefaultKeepVersions, KeepRevisionsFor: DefaultKeepRevisionsFor,
		KeepRevisions: DefaultKeepRevisions, Interval: DefaultInterval, BatchSize: DefaultBatchSize, Pause: DefaultPause}
}

// Check reports settings that cannot be meant: negative counts or ages.
func (o Options) Check() error {
	var errs []error
	if o.KeepVersions < 0 {
		errs = append(errs, fmt.Errorf("keep-versions %d is negative", o.KeepVersions))
	}
	if o.KeepRevisions < 0 {
		errs = append(errs, fmt.Errorf("keep-revisions %d is negative", o.KeepRevisions))
	}
	if o.KeepRevisionsFor < 0 {
		errs = append(errs, fmt.Errorf("keep-revisions-for %s is negative", o.KeepRevisionsFor))
	}
	if o.Interval < 0 {
		errs = append(errs, fmt.Errorf("prune-interval %s is negative (0 disables pruning)", o.Interval))
	}
	return errors.Join(errs...)
}

// Enabled says whether pruning runs at all (Interval > 0).
func (o Options) Enabled() bool { return o.Interval > 0 }

func (o Options) withDefaults() Options {
	o.BatchSize = cmp.Or(max(o.BatchSize, 0), DefaultBatchSize)
	if o.Pause < 0 {
		o.Pause = 0
	}
	return o
}

// Table names, as the metric's label.
const (
	TableCertificateVersions = "certificate_versions"
	TableRevisions           = "revisions"
	TableRevisionActions     = "revision_actions"
	TableACMEIssuances       = "acme_issuances"
)

// Metrics are the pruner's Prometheus metrics.
type Metrics struct {
	pruned  *prometheus.CounterVec
	batches prometheus.Histogram
}

// NewMetrics registers the pruner's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certops_pruned_rows_total",
			Help: "Rows of history deleted by retention, by table."}, []string{"table"}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "certops_prune_batch_duration_seconds",
			Help:    "Duration of one retention batch (one transaction).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
	}
	for _, t := range []string{TableCertificateVersions, TableRevisions, TableRevisionActions, TableACMEIssuances} {
		m.pruned.WithLabelValues(t) // every series from the start
	}
	reg.MustRegister(m.pruned, m.batches)
	return m
}

// Pruner prunes history per its Options.
type Pruner struct {
	st  Store
	opt Options
	m   *Metrics
	log *slog.Logger
}

// New returns a Pruner. m may be nil (no metrics).
func New(st Store, opt Options, m *Metrics, logger *slog.Logger) *Pruner {
	return &Pruner{st: st, opt: opt.withDefaults(), m: m, log: logger}
}

// Result is what one round deleted, and how long its batches took.
type Result struct {
	Versions, Revisions, Actions int64
	Ledger                       int64 // rows of the ACME rate-limit ledger
	Batches                      int
	LongestBatch                 time.Duration
	Elapsed                      time.Duration
}

// Run prunes every Interval until ctx ends (serve runs it for a
// leadership term, whose end cancels ctx). The first round starts after
// one Interval, at most a minute: not while a new leader's first
// reconcile is busy. It returns at once when pruning is disabled.
func (p *Pruner) Run(ctx context.Context) {
	if !p.opt.Enabled() {
		return
	}
	reconcile.Rounds(ctx, p.opt.Interval, func(ctx context.Context) {
		if _, err := p.PruneOnce(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("prune history; retrying next round", "err", err)
		}
	})
}

// PruneOnce runs one round: certificate versions, revisions, then the
// ACME rate-limit ledger's rows older than store.ACMELedgerRetention. It
// stops between two batches when ctx ends; every batch done is committed.
func (p *Pruner) PruneOnce(ctx context.Context) (Result, error) {
	var r Result
	start := time.Now()
	err := p.pruneVersions(ctx, &r)
	if err == nil {
		err = p.pruneRevisions(ctx, &r)
	}
	if err == nil {
		err = p.pruneLedger(ctx, &r, start.Add(-store.ACMELedgerRetention))
	}
	r.Elapsed = time.Since(start)
	attrs := []any{"versions", r.Versions, "revisions", r.Revisions, "revision_actions", r.Actions,
		"acme_issuances", r.Ledger, "batches", r.Batches, "longest_batch", r.LongestBatch, "elapsed", r.Elapsed}
	if err != nil {
		return r, fmt.Errorf("retention: %w", err)
	}
	p.log.Info("pruned history", attrs...)
	return r, nil
}

// pruneVersions walks every (certificate, agent) pair once.
func (p *Pruner) pruneVersions(ctx context.Context, r *Result) error {
	var cursor store.VersionCursor
	for {
		var b store.VersionBatch
		err := p.batch(ctx, r, func() (err error) {
			b, err = p.st.PruneVersionsBatch(ctx, cursor, p.opt.KeepVersions, p.opt.BatchSize)
			return err
		})
		if err != nil {
			return err
		}
		r.Versions += b.Deleted
		p.count(TableCertificateVersions, b.Deleted)
		if b.Done {
			return nil
		}
		cursor = b.Next
	}
}

// pruneRevisions deletes prunable revisions a batch at a time: first
// their actions (a revision of a large config has tens of thousands),
// batch by batch, then the revisions themselves.
func (p *Pruner) pruneRevisions(ctx context.Context, r *Result) error {
	keep := store.RevisionRetention{MaxAge: p.opt.KeepRevisionsFor, Keep: p.opt.KeepRevisions}
	for {
		var ids []int64
		err := p.batch(ctx, r, func() (err error) {
			ids, err = p.st.PrunableRevisions(ctx, keep, p.opt.BatchSize)
			return err
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		for {
			var n int64
			err := p.batch(ctx, r, func() (err error) {
				n, err = p.st.PruneRevisionActions(ctx, ids, p.opt.BatchSize)
				return err
			})
			if err != nil {
				return err
			}
			r.Actions += n
			p.count(TableRevisionActions, n)
			if n < int64(p.opt.BatchSize) {
				break
			}
		}
		var n int64
		err = p.batch(ctx, r, func() (err error) {
			n, err = p.st.PruneRevisions(ctx, ids, keep)
			return err
		})
		if err != nil {
			return err
		}
		r.Revisions += n
		p.count(TableRevisions, n)
		if len(ids) < p.opt.BatchSize {
			return nil
		}
	}
}

// pruneLedger deletes the rate-limit ledger's rows issued before before.
func (p *Pruner) pruneLedger(ctx context.Context, r *Result, before time.Time) error {
	for {
		var n int64
		err := p.batch(ctx, r, func() (err error) {
			n, err = p.st.PruneACMEIssuances(ctx, before, p.opt.BatchSize)
			return err
		})
		if err != nil {
			return err
		}
		r.Ledger += n
		p.count(TableACMEIssuances, n)
		if n < int64(p.opt.BatchSize) {
			return nil
		}
	}
}

// batch runs one batch after the pause (none before the round's first),
// timing it; it does not start once ctx has ended.
func (p *Pruner) batch(ctx context.Context, r *Result, fn func() error) error {
	if r.Batches > 0 && p.opt.Pause > 0 {
		t := time.NewTimer(p.opt.Pause)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	err := fn()
	d := time.Since(start)
	r.Batches++
	r.LongestBatch = max(r.LongestBatch, d)
	if p.m != nil {
		p.m.batches.Observe(d.Seconds())
	}
	return err
}

func (p *Pruner) count(table string, n int64) {
	if p.m != nil && n > 0 {
		p.m.pruned.WithLabelValues(table).Add(float64(n))
	}
}
