// Package alert defines the alerts certops evaluates itself, from the
// thresholds of the AlertPolicy in Git, for notifications and the status
// API. The same alerts exist as Prometheus rules (see `certops rules`);
// both compare the same metrics with the same thresholds.
package alert

import "time"

// Alert names, shared with the Prometheus rules.
const (
	CertificateExpiringSoon   = "CertopsCertificateExpiringSoon"
	CertificateRenewalOverdue = "CertopsCertificateRenewalOverdue"
	AgentOffline              = "CertopsAgentOffline"
	JobFailureRateHigh        = "CertopsJobFailureRateHigh"
	IssuanceFailures          = "CertopsIssuanceFailures"
	ReconcileStalled          = "CertopsReconcileStalled"
	SourceStale               = "CertopsSourceStale"
	BackupTooOld              = "CertopsBackupTooOld"
	// ServedCertificateMismatch: an agent's service has served another
	// certificate than the one installed for longer than the AlertPolicy's
	// servedMismatchAfter.
	ServedCertificateMismatch = "CertopsServedCertificateMismatch"
	// ServedCertificateExpiringSoon: what a service serves (the agents'
	// served checks) reaches the certificateExpiring thresholds.
	ServedCertificateExpiringSoon = "CertopsServedCertificateExpiringSoon"
	// IssuerExpiringSoon: a local CA's certificate ends sooner than the
	// longest certificate it issues would last.
	IssuerExpiringSoon = "CertopsIssuerExpiringSoon"
	// HostPolicyRefused is a Prometheus rule only (certops does not
	// evaluate it itself; each refusal is a DeployFailed event): an
	// agent's host policy refused an assignment.
	HostPolicyRefused = "CertopsHostPolicyRefused"
	// RevokedCertificateInUse: a serial revoked by a Revocation from Git
	// is still installed or served RevokedInUseGrace after its revocation
	// (its replacement was due at once).
	RevokedCertificateInUse = "CertopsRevokedCertificateInUse"
)

// RevokedInUseGrace is how long a revoked serial may stay installed or
// served before RevokedCertificateInUse fires: the agent's next poll, the
// issuance and the reload fit in it.
const RevokedInUseGrace = 15 * time.Minute

// Event names for notifications that are not threshold alerts: one-off
// failures worth telling someone about.
const (
	IssuanceFailed  = "CertopsIssuanceFailed"
	DeployFailed    = "CertopsDeployFailed"
	BackupFailed    = "CertopsBackupFailed"
	RevisionRefused = "CertopsRevisionRefused" // invalid or blocked by the prune guard, with the errors
)

// Severity of an alert.
type Severity string

// Severities.
const (
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// Alert is one alert that is firing now.
type Alert struct {
	Name     string   `json:"name"`
	Severity Severity `json:"severity"`
	// Subject is what the alert is about: a certificate or agent name, or ""
	// for alerts about certops itself.
	Subject     string            `json:"subject,omitempty"`
	Summary     string            `json:"summary"`
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Since is when the condition started, as far as certops knows.
	Since time.Time `json:"since"`
}

// Key identifies an alert across evaluations: the same key firing again is
// the same alert, not a new one.
func (a Alert) Key() string { return a.Name + "/" + string(a.Severity) + "/" + a.Subject }
