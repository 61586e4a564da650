// Package renewalinfo keeps the ACME Renewal Information (ARI, RFC 9773)
// of the current certificates fresh. The window a CA suggests renewing in
// is fetched at issuance (issuer.Order); a CA may move it later, earlier
// before a mass revocation or at once for a certificate it revoked. A
// Checker runs on the leader only (serve starts it for each leadership
// term, see reconcile.Options.WhileLeading) and asks the CA again for
// every current certificate version that carries a window: a day after
// the last check, or after the CA's Retry-After when it is shorter (never
// sooner than an hour). When the window moved, the deployment's renew_at
// moves into the new window by the one rule, assign.RenewalInWindow (now,
// when the window has begun), in the same store transaction that records
// the check, so every replica's agent API tells the agent.
//
// A check that fails (CA unreachable, an error answer) records nothing but
// when to try again (an hour later); a CA without ARI, or an issuer that
// is no longer an ACME issuer, is asked again a day later.
package renewalinfo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/assign"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// Store is what the checker needs of the database.
type Store interface {
	DueRenewalInfo(ctx context.Context, now time.Time, maxAge time.Duration, limit int) ([]store.RenewalInfoDue, error)
	RecordRenewalInfo(ctx context.Context, c store.RenewalInfoCheck) (bool, error)
	DeferRenewalInfo(ctx context.Context, versionID int64, next time.Time) error
}

// Issuers finds the CA to ask (issuer.Registry).
type Issuers interface {
	RenewalInfoer(name string) (issuer.RenewalInfoer, error)
}

// Defaults of Options (and of `certops serve`'s flag).
const (
	DefaultInterval   = 10 * time.Minute
	DefaultMaxAge     = 24 * time.Hour
	DefaultMinRetry   = time.Hour
	DefaultErrorRetry = time.Hour
	DefaultBatchSize  = 100
	DefaultPause      = 50 * time.Millisecond
)

// Options tune the checker. Use Defaults for the documented defaults.
type Options struct {
	// Interval is the time between rounds, each checking every version
	// due; 0 disables the checks.
	Interval time.Duration
	// MaxAge is the longest time between two checks of a version (a day).
	MaxAge time.Duration
	// MinRetry is the shortest time between two checks however short the
	// CA's Retry-After (an hour).
	MinRetry time.Duration
	// ErrorRetry is the time before a failed check is tried again (an hour).
	ErrorRetry time.Duration
	// BatchSize bounds the versions read from the store at once (100).
	BatchSize int
	// Pause is the wait between two requests to the CAs (50ms).
	Pause time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Defaults are the documented defaults.
func Defaults() Options {
	return Options{Interval: DefaultInterval, MaxAge: DefaultMaxAge, MinRetry: DefaultMinRetry,
		ErrorRetry: DefaultErrorRetry, BatchSize: DefaultBatchSize, Pause: DefaultPause}
}

// Check reports settings that cannot be meant.
func (o Options) Check() error {
	if o.Interval < 0 {
		return fmt.Errorf("ari-interval %s is negative (0 disables the checks)", o.Interval)
	}
	return nil
}

func (o Options) withDefaults() Options {
	o.MaxAge = cmp.Or(max(o.MaxAge, 0), DefaultMaxAge)
	o.MinRetry = cmp.Or(max(o.MinRetry, 0), DefaultMinRetry)
	o.ErrorRetry = cmp.Or(max(o.ErrorRetry, 0), DefaultErrorRetry)
	o.BatchSize = cmp.Or(max(o.BatchSize, 0), DefaultBatchSize)
	o.Pause = max(o.Pause, 0)
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Results of a check, as the metric's result label.
const (
	ResultUnchanged   = "unchanged"   // the CA's window is the recorded one
	ResultMoved       = "moved"       // the window moved: recorded, renew_at moved into it
	ResultError       = "error"       // the CA could not be asked; tried again after ErrorRetry
	ResultUnsupported = "unsupported" // no ARI (or no longer an ACME issuer); asked again after MaxAge
)

// Metrics are the checker's Prometheus metrics.
type Metrics struct {
	checks *prometheus.CounterVec
}

// NewMetrics registers certops_acme_renewal_info_checks_total on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{checks: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "certops_acme_renewal_info_checks_total",
		Help: "Checks of the ACME Renewal Information (RFC 9773) of current certificates, by issuer and result (unchanged, moved, error, unsupported).",
	}, []string{"issuer", "result"})}
	reg.MustRegister(m.checks)
	return m
}

// Checker re-checks renewal windows per its Options.
type Checker struct {
	st      Store
	issuers Issuers
	opt     Options
	m       *Metrics
	log     *slog.Logger
}

// New returns a Checker. m may be nil (no metrics).
func New(st Store, issuers Issuers, opt Options, m *Metrics, logger *slog.Logger) *Checker {
	return &Checker{st: st, issuers: issuers, opt: opt.withDefaults(), m: m, log: logger}
}

// Result counts what one round did, by check result.
type Result struct {
	Checked map[string]int // by Result* constant
	Batches int
}

// Run checks the due versions every Interval until ctx ends (serve runs
// it for a leadership term, whose end cancels ctx). The first round
// starts after one Interval, at most a minute. It returns at once when
// the checks are disabled.
func (c *Checker) Run(ctx context.Context) {
	if c.opt.Interval <= 0 {
		return
	}
	reconcile.Rounds(ctx, c.opt.Interval, func(ctx context.Context) {
		if _, err := c.CheckOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("check ACME renewal information; retrying next round", "err", err)
		}
	})
}

// CheckOnce checks every version due now, a batch at a time, and returns
// what it did. Every check records when the version is next due, so a
// round ends; it stops early when ctx ends or the store fails (the
// versions not checked stay due for the next round).
func (c *Checker) CheckOnce(ctx context.Context) (Result, error) {
	rd := &round{Result: Result{Checked: map[string]int{}}, failed: map[string]error{}}
	defer c.logFailures(rd)
	for {
		due, err := c.st.DueRenewalInfo(ctx, c.opt.Now(), c.opt.MaxAge, c.opt.BatchSize)
		if err != nil {
			return rd.Result, fmt.Errorf("renewalinfo: %w", err)
		}
		rd.Batches++
		for _, d := range due {
			result, err := c.check(ctx, rd, d)
			if err != nil {
				return rd.Result, fmt.Errorf("renewalinfo: %w", err)
			}
			rd.Checked[result]++
			if c.m != nil {
				c.m.checks.WithLabelValues(d.Issuer, result).Inc()
			}
		}
		if len(due) < c.opt.BatchSize {
			return rd.Result, nil
		}
	}
}

// round is the state of one CheckOnce.
type round struct {
	Result
	// failed remembers the issuers whose CA failed this round: their
	// other versions wait ErrorRetry without asking it again.
	failed map[string]error
	asked  int // requests to CAs
}

// check asks the CA about one version and records the answer; the error
// is the store's (or ctx's), when nothing could be recorded.
func (c *Checker) check(ctx context.Context, rd *round, d store.RenewalInfoDue) (string, error) {
	now := c.opt.Now()
	if _, ok := rd.failed[d.Issuer]; ok {
		return ResultError, c.st.DeferRenewalInfo(ctx, d.VersionID, now.Add(c.opt.ErrorRetry))
	}
	ri, err := c.issuers.RenewalInfoer(d.Issuer)
	switch {
	case failure.KindOf(err) == failure.NotFound:
		return ResultUnsupported, c.st.DeferRenewalInfo(ctx, d.VersionID, now.Add(c.opt.MaxAge))
	case err != nil:
		rd.failed[d.Issuer] = err
		return ResultError, c.st.DeferRenewalInfo(ctx, d.VersionID, now.Add(c.opt.ErrorRetry))
	}
	leaf, err := pki.ParseLeaf(d.CertPEM)
	if err != nil { // not from a CA: stored certificates were parsed before
		c.log.Error("stored certificate unreadable; its renewal information is checked again later", "certificate", d.Certificate,
			"agent", d.Agent, "serial", d.Serial, "err", err)
		return ResultError, c.st.DeferRenewalInfo(ctx, d.VersionID, now.Add(c.opt.MaxAge))
	}
	if err := c.pause(ctx, rd); err != nil {
		return "", err
	}
	info, err := ri.RenewalInfo(ctx, leaf)
	now = c.opt.Now()
	switch {
	case ctx.Err() != nil:
		return "", ctx.Err()
	case errors.Is(err, issuer.ErrNoARI):
		return ResultUnsupported, c.st.DeferRenewalInfo(ctx, d.VersionID, now.Add(c.opt.MaxAge))
	case err != nil:
		rd.failed[d.Issuer] = err
		return ResultError, c.st.DeferRenewalInfo(ctx, d.VersionID, now.Add(c.opt.ErrorRetry))
	}
	return c.record(ctx, d, info, now)
}

// record records the CA's answer: the window unchanged, or moved with the
// deployment's renewal.
func (c *Checker) record(ctx context.Context, d store.RenewalInfoDue, info *issuer.RenewalInfo, now time.Time) (string, error) {
	// Windows are compared as stored (microseconds).
	w := state.RenewalWindow{Start: info.Window.Start.Truncate(time.Microsecond), End: info.Window.End.Truncate(time.Microsecond)}
	check := store.RenewalInfoCheck{VersionID: d.VersionID, Window: w, CheckedAt: now, NextCheck: now.Add(c.nextCheck(info.RetryAfter))}
	if w.Start.Equal(d.Window.Start) && w.End.Equal(d.Window.End) {
		_, err := c.st.RecordRenewalInfo(ctx, check)
		return ResultUnchanged, err
	}
	check.RenewAt = assign.RenewalInWindow(w.Start, w.End, d.Certificate, d.Agent, now)
	moved, err := c.st.RecordRenewalInfo(ctx, check)
	if err != nil {
		return "", err
	}
	attrs := []any{"certificate", d.Certificate, "agent", d.Agent, "issuer", d.Issuer, "serial", d.Serial,
		"window_start", w.Start, "window_end", w.End, "previous_start", d.Window.Start, "previous_end", d.Window.End}
	if info.ExplanationURL != "" {
		attrs = append(attrs, "explanation_url", info.ExplanationURL)
	}
	if moved {
		c.log.Info("the CA moved the renewal window; renewal moved", append(attrs, "renew_at", check.RenewAt, "previous_renew_at", d.RenewAt)...)
	} else {
		c.log.Info("the CA moved the renewal window; renewal time kept (already due, or the certificate was replaced)",
			append(attrs, "renew_at", d.RenewAt)...)
	}
	return ResultMoved, nil
}

// nextCheck is how long until a version is asked again after a CA's
// answer with retryAfter: the CA's Retry-After, at least MinRetry and at
// most MaxAge; MaxAge when the CA did not say.
func (c *Checker) nextCheck(retryAfter time.Duration) time.Duration {
	if retryAfter <= 0 {
		return c.opt.MaxAge
	}
	return min(max(retryAfter, c.opt.MinRetry), c.opt.MaxAge)
}

// pause waits between two requests to the CAs (not before a round's first).
func (c *Checker) pause(ctx context.Context, rd *round) error {
	if rd.asked > 0 && c.opt.Pause > 0 {
		t := time.NewTimer(c.opt.Pause)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	rd.asked++
	return ctx.Err()
}

// logFailures logs once per issuer whose CA failed in the round.
func (c *Checker) logFailures(rd *round) {
	for name, err := range rd.failed {
		c.log.Warn("ACME renewal information unavailable; its certificates are checked again later",
			"issuer", name, "retry_in", c.opt.ErrorRetry, "err", err)
	}
}
