package alerting

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
)

// Input is everything Evaluate needs: the policy, the time and the facts.
type Input struct {
	// Policy is the AlertPolicy in force; nil means the defaults.
	Policy *spec.AlertPolicySpec
	Now    time.Time

	Certificates []Certificate
	Agents       []Agent
	Reconcile    Reconcile
	// Jobs are counted within the policy's jobFailureRatio.window.
	Jobs Jobs
	// IssuanceFailures are counted within the policy's issuanceFailures.window.
	IssuanceFailures int
	// Backup is nil when there is no BackupPolicy (or nothing is known of
	// backups): CertopsBackupTooOld then stays quiet.
	Backup *Backup
	// Issuers are the issuers certificates name, with their local CA's
	// expiry where it is known.
	Issuers []Issuer
}

// Issuer is what CertopsIssuerExpiringSoon looks at: an issuer's CA
// certificate and the certificates it issues.
type Issuer struct {
	Name string
	// CANotAfter is when the issuer's CA certificate ends: known for local
	// CAs loaded by this replica, zero otherwise (the alert stays quiet).
	CANotAfter time.Time
	// LongestDuration is the longest spec.duration of the certificates
	// naming the issuer.
	LongestDuration time.Duration
}

// Certificate is what the expiry and renewal alerts look at: the earliest
// expiring installed certificate across the agents that deploy it.
type Certificate struct {
	Name string
	// NotBefore and NotAfter bound the installed certificate that expires
	// first; zero when nothing is installed.
	NotBefore, NotAfter time.Time
	// RenewAt is the earliest renewal time of the current versions; zero
	// when none was issued.
	RenewAt time.Time
	// ServedNotBefore and ServedNotAfter bound the served certificate (the
	// agents' served checks) that expires first; zero when none was seen.
	ServedNotBefore, ServedNotAfter time.Time
	// ServedMismatchSince is the earliest time since which an agent's
	// service has served another serial than the one installed (zero:
	// none does), and ServedMismatchAgents those agents.
	ServedMismatchSince  time.Time
	ServedMismatchAgents []string
	// RevokedInUseSince is the earliest revocation time of a revoked
	// serial (a Revocation from Git) that an agent still has installed or
	// its service still serves; zero when none. RevokedInUseAgents are
	// those agents, sorted.
	RevokedInUseSince  time.Time
	RevokedInUseAgents []string
}

// Agent is an agent of the desired state and when it was last heard of.
type Agent struct {
	Name string
	// LastSeen is zero for an agent that was never seen; Added (when it
	// entered the desired state) then counts as its last sign of life.
	LastSeen, Added time.Time
}

func (a Agent) lastHeard() time.Time {
	if a.LastSeen.IsZero() {
		return a.Added
	}
	return a.LastSeen
}

// Reconcile is the reconciler's state as shared through the store.
type Reconcile struct {
	// NotReadySince is when the Ready condition became False; zero while
	// Ready (or before the first reconcile).
	NotReadySince time.Time
	// Reason and Message are the Ready condition's, for the alert text.
	Reason, Message string
	// LastFetch is the last successful fetch of the config repository;
	// zero when unknown.
	LastFetch time.Time
}

// Jobs counts deployments (a certificate on an agent) by their latest
// attempt within the window.
type Jobs struct{ Total, Failed int }

// Backup is the state of backups under a BackupPolicy.
type Backup struct {
	// LastSuccess is zero when no backup ever succeeded.
	LastSuccess time.Time
}

// Evaluate returns the alerts firing at in.Now, sorted by name, severity
// and subject. It applies the same conditions as the rules of Rules, with
// the same thresholds (Resolve), without their `for` delays.
func Evaluate(in Input) []alert.Alert {
	t := Resolve(in.Policy)
	var out []alert.Alert
	for _, c := range in.Certificates {
		out = appendCertificate(out, t, c, in.Now)
		out = appendServed(out, t, c, in.Now)
		if r := c.RevokedInUseSince; !r.IsZero() && in.Now.Sub(r) >= alert.RevokedInUseGrace {
			out = append(out, alert.Alert{Name: alert.RevokedCertificateInUse, Severity: alert.Critical, Subject: c.Name,
				Summary: "A revoked certificate of " + c.Name + " is still installed or served",
				Description: fmt.Sprintf("On %s, a serial of certificate %s revoked %s ago (a Revocation in Git) is still installed or served, although its replacement was due at once: clients that check revocation refuse it.",
					agentList(c.RevokedInUseAgents), c.Name, ago(in.Now, r)),
				Labels: map[string]string{labelCertificate: c.Name}, Since: r.Add(alert.RevokedInUseGrace)})
		}
	}
	for _, is := range in.Issuers {
		if is.CANotAfter.IsZero() || is.LongestDuration <= 0 || is.CANotAfter.Sub(in.Now) >= is.LongestDuration {
			continue
		}
		left := is.CANotAfter.Sub(in.Now)
		desc := fmt.Sprintf("The CA certificate of issuer %s ends in %s, at %s: sooner than the longest certificate it issues lasts (spec.duration %s). Certificates it signs now are cut short at the CA's end, and once it ends nothing it signs can be renewed.",
			is.Name, left.Round(time.Second), is.CANotAfter.UTC().Format(time.RFC3339), is.LongestDuration)
		if left <= 0 {
			desc = fmt.Sprintf("The CA certificate of issuer %s ended %s ago, at %s: nothing it signs can be renewed.",
				is.Name, (-left).Round(time.Second), is.CANotAfter.UTC().Format(time.RFC3339))
		}
		out = append(out, alert.Alert{Name: alert.IssuerExpiringSoon, Severity: alert.Warning, Subject: is.Name,
			Summary: "The CA of issuer " + is.Name + " expires before the certificates it signs would", Description: desc,
			Labels: map[string]string{labelIssuer: is.Name}, Since: is.CANotAfter.Add(-is.LongestDuration)})
	}
	for _, a := range in.Agents {
		seen := a.lastHeard()
		if seen.IsZero() || in.Now.Sub(seen) < t.AgentOffline {
			continue
		}
		desc := fmt.Sprintf("Agent %s has not been seen for %s (threshold agentOfflineAfter %s).", a.Name, ago(in.Now, seen), t.AgentOffline)
		if a.LastSeen.IsZero() {
			desc = fmt.Sprintf("Agent %s has never connected since it was added %s ago (threshold agentOfflineAfter %s).", a.Name, ago(in.Now, seen), t.AgentOffline)
		}
		out = append(out, alert.Alert{Name: alert.AgentOffline, Severity: alert.Warning, Subject: a.Name,
			Summary: "Agent " + a.Name + " is offline", Description: desc,
			Labels: map[string]string{labelAgent: a.Name}, Since: seen.Add(t.AgentOffline)})
	}
	if j := in.Jobs; j.Total > 0 && j.Total >= t.JobFailureMinJobs && float64(j.Failed)/float64(j.Total) >= t.JobFailureRatio {
		out = append(out, alert.Alert{Name: alert.JobFailureRateHigh, Severity: alert.Warning,
			Summary: "Certificate jobs are failing",
			Description: fmt.Sprintf("%d of %d deployments attempted within %s failed (%.0f%%; threshold jobFailureRatio.ratio %.0f%% with at least %d jobs).",
				j.Failed, j.Total, t.JobFailureWindow, 100*float64(j.Failed)/float64(j.Total), 100*t.JobFailureRatio, t.JobFailureMinJobs),
			Since: in.Now})
	}
	if n := in.IssuanceFailures; n > t.IssuanceFailures {
		out = append(out, alert.Alert{Name: alert.IssuanceFailures, Severity: alert.Warning,
			Summary: "Certificate issuance is failing",
			Description: fmt.Sprintf("%d deployments had their latest issue attempt fail within %s (threshold issuanceFailures.count %d).",
				n, t.IssuanceFailureWindow, t.IssuanceFailures),
			Since: in.Now})
	}
	if r := in.Reconcile; !r.NotReadySince.IsZero() && in.Now.Sub(r.NotReadySince) >= t.ReconcileStalled {
		out = append(out, alert.Alert{Name: alert.ReconcileStalled, Severity: alert.Warning,
			Summary: "The config repository is not being applied",
			Description: fmt.Sprintf("The reconciler has not been Ready for %s (threshold reconcileStalledAfter %s): %s: %s",
				ago(in.Now, r.NotReadySince), t.ReconcileStalled, r.Reason, r.Message),
			Since: r.NotReadySince.Add(t.ReconcileStalled)})
	}
	if f := in.Reconcile.LastFetch; !f.IsZero() && in.Now.Sub(f) >= t.SourceStale {
		out = append(out, alert.Alert{Name: alert.SourceStale, Severity: alert.Warning,
			Summary: "The config repository has not been fetched",
			Description: fmt.Sprintf("No fetch of the config repository succeeded for %s (threshold sourceStaleAfter %s).",
				ago(in.Now, f), t.SourceStale),
			Since: f.Add(t.SourceStale)})
	}
	if b := in.Backup; b != nil && (b.LastSuccess.IsZero() || in.Now.Sub(b.LastSuccess) >= t.BackupTooOld) {
		a := alert.Alert{Name: alert.BackupTooOld, Severity: alert.Warning, Summary: "No recent database backup",
			Description: fmt.Sprintf("The last successful backup is %s old (threshold backupTooOldAfter %s).", ago(in.Now, b.LastSuccess), t.BackupTooOld),
			Since:       b.LastSuccess.Add(t.BackupTooOld)}
		if b.LastSuccess.IsZero() {
			a.Description = fmt.Sprintf("No backup has ever succeeded (threshold backupTooOldAfter %s).", t.BackupTooOld)
			a.Since = in.Now
		}
		out = append(out, a)
	}
	for i := range out { // where to start, for notifications
		if out[i].Labels == nil {
			out[i].Labels = map[string]string{}
		}
		out[i].Labels["runbook_url"] = DefaultRunbookBaseURL + RunbookFile(out[i].Name)
	}
	sortAlerts(out)
	return out
}

// appendCertificate appends the expiry and renewal alerts of one certificate.
func appendCertificate(out []alert.Alert, t Thresholds, c Certificate, now time.Time) []alert.Alert {
	if !c.NotAfter.IsZero() {
		if a, ok := expiringAlert(t, c, now, alert.CertificateExpiringSoon, "Certificate "+c.Name); ok {
			out = append(out, a)
		}
	}
	if !c.RenewAt.IsZero() && now.Sub(c.RenewAt) >= t.RenewalOverdue {
		out = append(out, alert.Alert{Name: alert.CertificateRenewalOverdue, Severity: alert.Warning, Subject: c.Name,
			Summary: "Certificate " + c.Name + " was not renewed",
			Description: fmt.Sprintf("Certificate %s was due for renewal %s ago, at %s (threshold renewalOverdueAfter %s).",
				c.Name, ago(now, c.RenewAt), c.RenewAt.UTC().Format(time.RFC3339), t.RenewalOverdue),
			Labels: map[string]string{labelCertificate: c.Name}, Since: c.RenewAt.Add(t.RenewalOverdue)})
	}
	return out
}

// appendServed appends the served-certificate alerts of one certificate:
// the mismatch once it has lasted t.ServedMismatch, and the expiry of the
// served certificate that expires first against the certificateExpiring
// thresholds.
func appendServed(out []alert.Alert, t Thresholds, c Certificate, now time.Time) []alert.Alert {
	if m := c.ServedMismatchSince; !m.IsZero() && now.Sub(m) >= t.ServedMismatch {
		out = append(out, alert.Alert{Name: alert.ServedCertificateMismatch, Severity: alert.Warning, Subject: c.Name,
			Summary: "Certificate " + c.Name + " is installed but not served",
			Description: fmt.Sprintf("On %s, the service at the verify address of certificate %s has served another certificate than the one installed for %s (threshold servedMismatchAfter %s): the renewed certificate was not loaded.",
				agentList(c.ServedMismatchAgents), c.Name, ago(now, m), t.ServedMismatch),
			Labels: map[string]string{labelCertificate: c.Name}, Since: m.Add(t.ServedMismatch)})
	}
	if c.ServedNotAfter.IsZero() {
		return out
	}
	served := Certificate{Name: c.Name, NotBefore: c.ServedNotBefore, NotAfter: c.ServedNotAfter}
	if a, ok := expiringAlert(t, served, now, alert.ServedCertificateExpiringSoon, "The certificate served for "+c.Name); ok {
		out = append(out, a)
	}
	return out
}

// expiringAlert is the expiry alert name of certificate c (validity
// NotBefore..NotAfter), called what in its texts, at the most severe level
// its thresholds reach now (critical replaces warning), if any.
func expiringAlert(t Thresholds, c Certificate, now time.Time, name, what string) (alert.Alert, bool) {
	for _, sev := range []alert.Severity{alert.Critical, alert.Warning} {
		since, ok := expiring(t.Expiry(sev), c, now)
		if !ok {
			continue
		}
		left := c.NotAfter.Sub(now)
		desc := fmt.Sprintf("%s expires in %s, at %s.", what, left.Round(time.Second), c.NotAfter.UTC().Format(time.RFC3339))
		if left <= 0 {
			desc = fmt.Sprintf("%s expired %s ago, at %s.", what, (-left).Round(time.Second), c.NotAfter.UTC().Format(time.RFC3339))
		}
		return alert.Alert{Name: name, Severity: sev, Subject: c.Name, Summary: what + " expires soon", Description: desc,
			Labels: map[string]string{labelCertificate: c.Name}, Since: since}, true
	}
	return alert.Alert{}, false
}

// agentList names agents for a description: "agent web-01", "agents
// web-01, web-02", at most five and how many more.
func agentList(agents []string) string {
	switch len(agents) {
	case 0:
		return "an agent"
	case 1:
		return "agent " + agents[0]
	}
	if len(agents) > 5 {
		return fmt.Sprintf("agents %s and %d more", strings.Join(agents[:5], ", "), len(agents)-5)
	}
	return "agents " + strings.Join(agents, ", ")
}

// expiring reports whether c has reached threshold e at now, and since when:
// the earlier of the times the time left reached e.Remaining and the
// fraction left reached e.RemainingFraction.
func expiring(e ExpiryThreshold, c Certificate, now time.Time) (since time.Time, ok bool) {
	var at []time.Time
	if e.Remaining > 0 {
		at = append(at, c.NotAfter.Add(-e.Remaining))
	}
	if lifetime := c.NotAfter.Sub(c.NotBefore); e.RemainingFraction > 0 && !c.NotBefore.IsZero() && lifetime > 0 {
		at = append(at, c.NotAfter.Add(-time.Duration(e.RemainingFraction*float64(lifetime))))
	}
	for _, t := range at {
		if !now.Before(t) && (!ok || t.Before(since)) {
			since, ok = t, true
		}
	}
	return since, ok
}

// sortAlerts sorts by name, severity and subject.
func sortAlerts(as []alert.Alert) {
	slices.SortFunc(as, func(a, b alert.Alert) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Severity, b.Severity), cmp.Compare(a.Subject, b.Subject))
	})
}

func ago(now, t time.Time) time.Duration { return now.Sub(t).Round(time.Second) }
