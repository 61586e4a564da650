package state

import (
	"fmt"
	"time"
)

// CertificateVersion is one certificate issued to one agent: the leaf and
// its chain as PEM. The store never holds a private key.
type CertificateVersion struct {
	ID          int64     `json:"id"`
	Certificate string    `json:"certificate"`
	Agent       string    `json:"agent"`
	SpecHash    string    `json:"specHash"`
	Serial      string    `json:"serial"`
	SHA256      string    `json:"sha256"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	CertPEM     string    `json:"certPEM"`
	ChainPEM    string    `json:"chainPEM"`
	Issuer      string    `json:"issuer"`
	IssuedAt    time.Time `json:"issuedAt"`
	// RenewalWindow is the window the CA suggested renewing in (ACME
	// Renewal Information, RFC 9773), as last asked; nil when the CA
	// offered none.
	RenewalWindow *RenewalWindow `json:"renewalWindow,omitempty"`
	// ARIRenewal: an ACME order renewed the previous certificate inside
	// the window the CA suggested (exempt from Let's Encrypt's rate
	// limits). Read by store.CertificateVersions only.
	ARIRenewal bool `json:"ariRenewal,omitempty"`
}

// RenewalWindow is a window in which a CA suggests renewing a certificate.
type RenewalWindow struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Valid reports whether the window is a non-empty interval.
func (w RenewalWindow) Valid() bool { return !w.Start.IsZero() && w.Start.Before(w.End) }

// Open reports whether the window has begun at now: a renewal from then
// on is one the CA asked for (Let's Encrypt exempts such renewals from its
// rate limits).
func (w *RenewalWindow) Open(now time.Time) bool { return w != nil && !now.Before(w.Start) }

// Deployment is the state of one certificate on one agent.
type Deployment struct {
	Certificate string
	Agent       string
	// SpecHash is the spec of the latest issue attempt; Failures and
	// NotBefore (the backoff) belong to it.
	SpecHash string
	// Current is the newest version issued to the agent (for its own
	// SpecHash, which may be older than the certificate's spec).
	Current *CertificateVersion
	RenewAt time.Time
	// Installed* is what the agent last reported installed.
	InstalledSerial   string
	InstalledSpecHash string
	InstalledNotAfter time.Time
	// State is one of the Deployment* states (never pending: that is
	// the absence of a row), and LastError its error, as last recorded:
	// for the spec StateSpecHash, which may not be the certificate's
	// current one (assign.CurrentState says what holds for that).
	State         DeploymentState
	StateSpecHash string
	LastError     string
	LastAttempt   time.Time
	Failures      int
	NotBefore     time.Time
	// Waiting says why no certificate is ordered before NotBefore when
	// that is no failure's backoff (see RateLimitWaiting); empty otherwise.
	Waiting   string
	UpdatedAt time.Time
	// ChangeSeq orders the writes of the row: each takes the next value of
	// the sequence agent_change_seq once the row is locked.
	ChangeSeq int64
	// Served is what the agent's served checks found at the deployment's
	// verify address; nil when never checked, and in the agent API's
	// snapshot, which does not carry it (the read API's reads do).
	Served *Served
	// Revoked: the serial installed or served is revoked (a Revocation
	// from Git); set by the read API's reads only, like Served.
	Revoked bool
}

// Served is what an agent's served checks last found at a deployment's
// verify address (see agentproto.ServedReport).
type Served struct {
	// Serial, NotBefore and NotAfter are the leaf last served: kept through
	// failed checks (the last thing known to be served); empty until a
	// check succeeds.
	Serial              string
	NotBefore, NotAfter time.Time
	// CheckedAt is when the latest check ran, Error its error ("" when it
	// succeeded).
	CheckedAt time.Time
	Error     string
	// MismatchSince is since when the served serial has differed from the
	// installed one; zero while they are equal (or either is unknown).
	MismatchSince time.Time
}

// DeploymentState is where one certificate stands on one agent.
type DeploymentState string

// Deployment states: the server's own (pending, issued, issue-failed) and
// what the agent reported (installed, failed, rolled-back; see
// agentproto.Result).
const (
	DeploymentPending     DeploymentState = "pending"      // no issue request yet (no deployment row)
	DeploymentIssued      DeploymentState = "issued"       // a version was issued; no report yet
	DeploymentIssueFailed DeploymentState = "issue-failed" // the server refused the CSR or could not sign
	DeploymentInstalled   DeploymentState = "installed"    // the agent installed, reloaded and verified it
	DeploymentFailed      DeploymentState = "failed"       // the agent changed nothing (e.g. key generation failed)
	DeploymentRolledBack  DeploymentState = "rolled-back"  // reload or verify failed; the previous files are back
)

// Failed reports whether the agent reported a failed deployment.
func (s DeploymentState) Failed() bool {
	return s == DeploymentFailed || s == DeploymentRolledBack
}

// IssuanceResult is the outcome of one issue request, the result label of
// certops_issuance_total.
type IssuanceResult string

// The results of an issue request.
const (
	IssuanceSuccess  IssuanceResult = "success"  // signed and stored
	IssuanceRejected IssuanceResult = "rejected" // the CSR or its names are refused (422)
	IssuanceFailure  IssuanceResult = "failure"  // the issuer failed (503, backoff)
	IssuanceError    IssuanceResult = "error"    // signed but not stored (503, no backoff)
)

// RateLimitWaiting is a deployment's Waiting while an ACME issuer's rate
// limit of limit certificates per name set per 7 days holds its order
// back: issued certificates for its names in the last 7 days, and
// ordering more being ordered.
func RateLimitWaiting(issuer string, until time.Time, issued, ordering, limit int) string {
	ordered := ""
	if ordering > 0 {
		ordered = fmt.Sprintf(" and %d being ordered", ordering)
	}
	return fmt.Sprintf("waiting for the CA's rate limit until %s (issuer %s allows %d certificates for these names in 7 days: %d issued%s)",
		until.UTC().Format(time.RFC3339), issuer, limit, issued, ordered)
}

// WaitingNow is why the deployment waits at now for its spec specHash
// (Waiting, while NotBefore has not passed), or "".
func (d *Deployment) WaitingNow(specHash string, now time.Time) string {
	if d == nil || d.SpecHash != specHash || !d.NotBefore.After(now) {
		return ""
	}
	return d.Waiting
}
