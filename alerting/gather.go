package alerting

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// Source is what Gather reads; *store.Store implements it.
type Source interface {
	ListObjects(ctx context.Context, q store.ObjectQuery) ([]store.StoredObject, string, error)
	Status(ctx context.Context) (state.Status, error)
	AlertFacts(ctx context.Context, jobsSince, issueFailuresSince time.Time) (store.AlertFacts, error)
}

// Gather reads the AlertPolicy and the facts at now from src. Backup is set
// (with a zero LastSuccess) when a BackupPolicy exists; the caller fills in
// the last successful backup, which the backup package records. Issuers
// are listed without their CAs' expiry, which the caller fills in from the
// issuers it has loaded (MonitorOptions.CAExpirations).
func Gather(ctx context.Context, src Source, now time.Time) (Input, error) {
	in := Input{Now: now}
	objs, _, err := src.ListObjects(ctx, store.ObjectQuery{Kind: spec.KindAlertPolicy, Limit: 1})
	if err != nil {
		return Input{}, fmt.Errorf("alerting: gather: %w", err)
	}
	if len(objs) > 0 {
		obj, err := objs[0].Decode()
		if err != nil {
			return Input{}, fmt.Errorf("alerting: gather: %w", err)
		}
		in.Policy = obj.Spec.(*spec.AlertPolicySpec)
	}
	t := Resolve(in.Policy)
	facts, err := src.AlertFacts(ctx, now.Add(-t.JobFailureWindow), now.Add(-t.IssuanceFailureWindow))
	if err != nil {
		return Input{}, fmt.Errorf("alerting: gather: %w", err)
	}
	for _, c := range facts.Certificates {
		in.Certificates = append(in.Certificates, Certificate(c))
	}
	for _, a := range facts.Agents {
		in.Agents = append(in.Agents, Agent{Name: a.Name, LastSeen: a.LastSeen, Added: a.Added})
	}
	in.Jobs = Jobs{Total: facts.Jobs, Failed: facts.FailedJobs}
	in.IssuanceFailures = facts.IssueFailures
	if facts.BackupPolicy {
		in.Backup = &Backup{}
	}
	for name, d := range facts.IssuerDurations {
		if name != "" {
			in.Issuers = append(in.Issuers, Issuer{Name: name, LongestDuration: d})
		}
	}
	slices.SortFunc(in.Issuers, func(a, b Issuer) int { return strings.Compare(a.Name, b.Name) })
	st, err := src.Status(ctx)
	if err != nil {
		return Input{}, fmt.Errorf("alerting: gather: %w", err)
	}
	in.Reconcile = reconcileFacts(st)
	return in, nil
}

// reconcileFacts extracts the Ready condition and the last fetch.
func reconcileFacts(st state.Status) Reconcile {
	var r Reconcile
	if st.LastFetchAt != nil {
		r.LastFetch = *st.LastFetchAt
	}
	for _, c := range st.Conditions {
		if c.Type == state.ConditionReady && c.Status == state.False {
			r.NotReadySince, r.Reason, r.Message = c.LastTransitionTime, string(c.Reason), c.Message
		}
	}
	return r
}

// MonitorOptions configure a Monitor.
type MonitorOptions struct {
	// Interval between evaluations; default 30s.
	Interval time.Duration
	// LastBackup returns the time of the last successful backup (zero:
	// never). Nil: CertopsBackupTooOld is left to Prometheus.
	LastBackup func(context.Context) (time.Time, error)
	// Now defaults to time.Now.
	Now func() time.Time
	// OnEvaluate, when set, is called by Run with the alerts firing after
	// every successful evaluation, and the evaluation's time.
	OnEvaluate func(ctx context.Context, firing []alert.Alert, at time.Time)
	// CAExpirations returns when the CA certificate of each local CA issuer
	// loaded ends (issuer.Registry.CAExpirations). Nil:
	// CertopsIssuerExpiringSoon stays quiet.
	CAExpirations func() map[string]time.Time
	// NoPerCertificateSeries leaves the per-certificate served expiry
	// series out of the fact metrics, as `certops serve
	// --per-certificate-metrics=false` does for the agent API's.
	NoPerCertificateSeries bool
}

// Monitor gathers the facts periodically, exports the thresholds and facts
// for the rules, and keeps the alerts firing now for notifications and the
// status API.
type Monitor struct {
	src        Source
	thresholds *ThresholdMetrics
	facts      *FactMetrics
	errors     prometheus.Counter
	opt        MonitorOptions
	log        *slog.Logger

	mu     sync.Mutex
	alerts []alert.Alert
}

// NewMonitor registers the threshold and fact metrics with reg.
func NewMonitor(src Source, reg prometheus.Registerer, logger *slog.Logger, opt MonitorOptions) *Monitor {
	if opt.Interval <= 0 {
		opt.Interval = 30 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	facts := NewFactMetrics(reg)
	facts.perCertificate = !opt.NoPerCertificateSeries
	m := &Monitor{src: src, thresholds: NewThresholdMetrics(reg), facts: facts, opt: opt, log: logger,
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "certops_alerting_gather_errors_total",
			Help: "Failed reads of the alerting facts from the database.",
		})}
	reg.MustRegister(m.errors)
	return m
}

// Run evaluates every Interval until ctx is done. Failed reads are logged
// and counted; the last good evaluation stays in force.
func (m *Monitor) Run(ctx context.Context) error {
	tick := time.NewTicker(m.opt.Interval)
	defer tick.Stop()
	for {
		at := m.opt.Now()
		alerts, err := m.Evaluate(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			m.errors.Inc()
			m.log.Warn("alerting: evaluate", "err", err)
		case err == nil && m.opt.OnEvaluate != nil:
			m.opt.OnEvaluate(ctx, alerts, at)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Evaluate gathers the facts now, updates the metrics and returns the
// alerts firing (also kept for Alerts).
func (m *Monitor) Evaluate(ctx context.Context) ([]alert.Alert, error) {
	in, err := Gather(ctx, m.src, m.opt.Now())
	if err != nil {
		return nil, err
	}
	if in.Backup != nil && m.opt.LastBackup != nil {
		if in.Backup.LastSuccess, err = m.opt.LastBackup(ctx); err != nil {
			return nil, fmt.Errorf("alerting: last backup: %w", err)
		}
	} else {
		in.Backup = nil
	}
	if m.opt.CAExpirations != nil {
		cas := m.opt.CAExpirations()
		for i := range in.Issuers {
			in.Issuers[i].CANotAfter = cas[in.Issuers[i].Name]
		}
	}
	m.thresholds.Set(in.Policy)
	m.facts.Set(in)
	alerts := Evaluate(in)
	m.mu.Lock()
	m.alerts = alerts
	m.mu.Unlock()
	return alerts, nil
}

// Alerts returns the alerts of the last successful evaluation.
func (m *Monitor) Alerts() []alert.Alert {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]alert.Alert(nil), m.alerts...)
}
