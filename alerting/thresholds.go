// Package alerting turns the AlertPolicy in Git into alerts, in two
// equivalent ways:
//
//   - for Prometheus: the thresholds are exported as gauges
//     (certops_alert_threshold_*) together with the facts Prometheus cannot
//     compute itself (certops_jobs_in_window, certops_agent_last_seen_…),
//     and the static rules of Rules compare the two. A git push that changes
//     a threshold changes alerting without touching Prometheus;
//   - for certops itself (notifications, the status API): Evaluate applies
//     the same thresholds to the same facts, read from Postgres by Gather.
//
// Resolve fills in the documented defaults, so both ways agree on them too.
package alerting

import (
	"time"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
)

// Thresholds is an AlertPolicy with every default filled in and every
// duration parsed. A zero Remaining or RemainingFraction turns that trigger
// off.
type Thresholds struct {
	// Expiry fires when a certificate's time left reaches Remaining, or its
	// fraction of lifetime left reaches RemainingFraction.
	Warning, Critical ExpiryThreshold
	// RenewalOverdue fires when a certificate is this long past its renewal time.
	RenewalOverdue time.Duration
	// AgentOffline fires when an agent has not been seen for this long.
	AgentOffline time.Duration
	// JobFailureRatio fires when failed/total jobs within JobFailureWindow
	// reaches it, with at least JobFailureMinJobs jobs in the window.
	JobFailureRatio   float64
	JobFailureWindow  time.Duration
	JobFailureMinJobs int
	// IssuanceFailures fires when more than this many issuance failures
	// happen within IssuanceFailureWindow.
	IssuanceFailures      int
	IssuanceFailureWindow time.Duration
	// ReconcileStalled fires when the reconciler has not been Ready for this long.
	ReconcileStalled time.Duration
	// SourceStale fires when no fetch of the config repository succeeded for this long.
	SourceStale time.Duration
	// BackupTooOld fires when the last successful backup is this old (only
	// when a BackupPolicy exists).
	BackupTooOld time.Duration
	// ServedMismatch fires when a service has served another serial than
	// the one installed for this long.
	ServedMismatch time.Duration
}

// ExpiryThreshold is one severity of certificateExpiring.
type ExpiryThreshold struct {
	Remaining         time.Duration
	RemainingFraction float64
}

// Defaults are the thresholds of an absent AlertPolicy, and of each field an
// AlertPolicy leaves out. The expiry defaults are fractions of lifetime
// only: an absolute default such as 14 days would fire for the whole life
// of a 6-day certificate. With the default renewal at two thirds of the
// lifetime, 20% left means renewal is well overdue.
func Defaults() Thresholds {
	return Thresholds{
		Warning:               ExpiryThreshold{RemainingFraction: 0.2},
		Critical:              ExpiryThreshold{RemainingFraction: 0.1},
		RenewalOverdue:        time.Hour,
		AgentOffline:          15 * time.Minute,
		JobFailureRatio:       0.25,
		JobFailureWindow:      time.Hour,
		JobFailureMinJobs:     3,
		IssuanceFailures:      3,
		IssuanceFailureWindow: time.Hour,
		ReconcileStalled:      30 * time.Minute,
		SourceStale:           15 * time.Minute,
		BackupTooOld:          48 * time.Hour,
		ServedMismatch:        30 * time.Minute,
	}
}

// Resolve returns the thresholds of policy (nil: Defaults). Each field the
// policy leaves out keeps its default; a severity of certificateExpiring
// that the policy sets replaces the default of that severity as a whole, so
// setting only `remaining` turns the fraction trigger of that severity off.
// The policy is trusted to be validated (spec.LoadDir); an unparsable
// duration keeps the default.
func Resolve(policy *spec.AlertPolicySpec) Thresholds {
	t := Defaults()
	if policy == nil {
		return t
	}
	if e := policy.CertificateExpiring; e != nil {
		expiry(&t.Warning, e.Warning)
		expiry(&t.Critical, e.Critical)
	}
	duration(&t.RenewalOverdue, policy.RenewalOverdueAfter)
	duration(&t.AgentOffline, policy.AgentOfflineAfter)
	if r := policy.JobFailureRatio; r != nil {
		if r.Ratio > 0 {
			t.JobFailureRatio = r.Ratio
		}
		duration(&t.JobFailureWindow, r.Window)
		t.JobFailureMinJobs = r.MinJobs
	}
	if f := policy.IssuanceFailures; f != nil {
		t.IssuanceFailures = max(f.Count, 0)
		duration(&t.IssuanceFailureWindow, f.Window)
	}
	duration(&t.ReconcileStalled, policy.ReconcileStalled)
	duration(&t.SourceStale, policy.SourceStale)
	duration(&t.BackupTooOld, policy.BackupTooOld)
	duration(&t.ServedMismatch, policy.ServedMismatchAfter)
	return t
}

// Expiry returns the expiry threshold of a severity.
func (t Thresholds) Expiry(sev alert.Severity) ExpiryThreshold {
	if sev == alert.Critical {
		return t.Critical
	}
	return t.Warning
}

func expiry(dst *ExpiryThreshold, src *spec.ExpiryThreshold) {
	if src == nil {
		return
	}
	*dst = ExpiryThreshold{}
	duration(&dst.Remaining, src.Remaining)
	if f := src.RemainingFraction; f != nil && *f > 0 && *f < 1 {
		dst.RemainingFraction = *f
	}
}

func duration(dst *time.Duration, s string) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		*dst = d
	}
}
