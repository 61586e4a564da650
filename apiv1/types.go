// Package apiv1 holds the wire types of the read-only status API under
// /api/v1/ (and the answer of POST /hooks/reconcile): what `certops serve`
// writes (httpapi, webhook), what the dashboard renders, what the operator
// CLI reads (apiclient), and the OpenAPI document that describes them
// (OpenAPIDocument, embedded from openapi.json). It holds types and that
// document only, so a client links no server code.
package apiv1

import (
	"encoding/json"
	"time"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// Status is the body of GET /api/v1/status.
type Status struct {
	LastAppliedRevision   string            `json:"lastAppliedRevision"`
	LastAppliedAt         *time.Time        `json:"lastAppliedAt,omitempty"`
	LastAttemptedRevision string            `json:"lastAttemptedRevision"`
	LastAttemptedAt       *time.Time        `json:"lastAttemptedAt,omitempty"`
	LastFetchAt           *time.Time        `json:"lastFetchAt,omitempty"`
	Conditions            []state.Condition `json:"conditions"`
	Errors                []string          `json:"errors"`
	Alerts                []alert.Alert     `json:"alerts"`
}

// Condition returns the condition of type t, and whether there is one.
func (s Status) Condition(t state.ConditionType) (state.Condition, bool) {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return state.Condition{}, false
}

// Object is a stored object of the desired state as the API shows it: its
// metadata, its spec as committed (canonical JSON), where it came from.
type Object struct {
	Kind        spec.Kind         `json:"kind"`
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Spec        json.RawMessage   `json:"spec"`
	Hash        string            `json:"hash"`
	Generation  int64             `json:"generation"`
	SourceFile  string            `json:"sourceFile,omitempty"`
	SourceLine  int               `json:"sourceLine,omitempty"`
	RevisionID  int64             `json:"revisionID,omitempty"`
	CreatedAt   time.Time         `json:"createdAt"`
	UpdatedAt   time.Time         `json:"updatedAt"`
}

// DeploymentSummary is the compact status of a certificate in a list.
type DeploymentSummary struct {
	Deployments int            `json:"deployments"`
	States      map[string]int `json:"states,omitempty"`
	// EarliestNotAfter is the soonest expiry of what is installed.
	EarliestNotAfter *time.Time `json:"earliestNotAfter,omitempty"`
}

// CertificateSummary is a certificate in GET /api/v1/certificates.
type CertificateSummary struct {
	Object
	Status DeploymentSummary `json:"status"`
}

// CertificateList is a page of GET /api/v1/certificates; Next, when not
// empty, is the `after` of the next page.
type CertificateList struct {
	Items []CertificateSummary `json:"items"`
	Next  string               `json:"next"`
}

// Liveness is an agent's state and when it was last heard from.
type Liveness struct {
	State    string     `json:"state"` // online | offline
	LastSeen *time.Time `json:"lastSeen,omitempty"`
}

// Agent liveness states.
const (
	Online  = "online"
	Offline = "offline"
)

// AgentSummary is an agent in GET /api/v1/agents.
type AgentSummary struct {
	Object
	Status Liveness `json:"status"`
}

// AgentList is a page of GET /api/v1/agents.
type AgentList struct {
	Items []AgentSummary `json:"items"`
	Next  string         `json:"next"`
}

// Certificate is the body of GET /api/v1/certificates/{name}.
type Certificate struct {
	Object
	Status *CertificateStatus `json:"status"`
}

// CertificateStatus is a certificate's status block.
type CertificateStatus struct {
	Ready    bool   `json:"ready"`
	Reason   string `json:"reason"`
	SpecHash string `json:"specHash"`
	// Suspended: the certificate has spec.suspend (no renewals, no
	// deployments); Reason then starts with "Suspended".
	Suspended bool `json:"suspended,omitempty"`
	// NotAfter is the earliest expiry of what the agents have installed;
	// RenewAt the earliest renewal time of the current certificates.
	NotAfter *time.Time `json:"notAfter,omitempty"`
	RenewAt  *time.Time `json:"renewAt,omitempty"`
	// IssuerError says why the issuer cannot sign the certificate's names
	// (a local CA's name constraints), before any agent asks.
	IssuerError string       `json:"issuerError,omitempty"`
	Deployments []Deployment `json:"deployments"`
	// Revocations are the certificate's serials revoked by Revocations
	// from Git, oldest first; absent when none.
	Revocations []Revocation `json:"revocations,omitempty"`
}

// Revocation is one revoked serial of a certificate.
type Revocation struct {
	Serial string `json:"serial"`
	Issuer string `json:"issuer"`
	// Revocation is the name of the Revocation object that revoked it.
	Revocation string `json:"revocation"`
	// Reason is the RFC 5280 reason name (spec.reason).
	Reason    string    `json:"reason"`
	RevokedAt time.Time `json:"revokedAt"`
	// ACME is, for an ACME issuer, the revocation at the CA: pending,
	// revoked or failed; ACMEError the last attempt's error. Absent for a
	// local CA (its CRL and OCSP publish the revocation).
	ACME      string `json:"acme,omitempty"`
	ACMEError string `json:"acmeError,omitempty"`
}

// Deployment is the certificate's state on one agent.
type Deployment struct {
	Agent string `json:"agent"`
	// State is pending (nothing asked yet), issued, issue-failed,
	// installed, failed or rolled-back, for the current spec (see
	// assign.CurrentState), and LastError its error.
	State state.DeploymentState `json:"state"`
	// Suspended: the agent has spec.suspend, so this deployment is frozen.
	Suspended bool `json:"suspended,omitempty"`
	// Serial and NotAfter are what the agent reported installed.
	Serial   string     `json:"serial,omitempty"`
	NotAfter *time.Time `json:"notAfter,omitempty"`
	// CurrentSerial is the newest certificate issued to the agent.
	CurrentSerial string     `json:"currentSerial,omitempty"`
	RenewAt       *time.Time `json:"renewAt,omitempty"`
	LastError     string     `json:"lastError,omitempty"`
	LastAttempt   *time.Time `json:"lastAttempt,omitempty"`
	Failures      int        `json:"failures,omitempty"`
	// RetryAfter is when the server accepts the next issue request.
	RetryAfter *time.Time `json:"retryAfter,omitempty"`
	// Waiting says why no certificate is ordered before RetryAfter when
	// that is no failure's backoff: "waiting for the CA's rate limit until
	// T (…)". Absent otherwise.
	Waiting string `json:"waiting,omitempty"`
	// Served* are what the agent's latest served check found at the
	// certificate's verify address: the serial and expiry last served
	// (kept through failed checks), when it checked, the latest check's
	// error, and since when the served serial has differed from the
	// installed one (Serial). Absent until the agent checks.
	ServedSerial        string     `json:"servedSerial,omitempty"`
	ServedNotAfter      *time.Time `json:"servedNotAfter,omitempty"`
	ServedCheckedAt     *time.Time `json:"servedCheckedAt,omitempty"`
	ServedError         string     `json:"servedError,omitempty"`
	ServedMismatchSince *time.Time `json:"servedMismatchSince,omitempty"`
	// Revoked: the serial installed or served is revoked by a Revocation
	// from Git; a new certificate is due at once. Absent otherwise.
	Revoked bool `json:"revoked,omitempty"`
}

// Agent is the body of GET /api/v1/agents/{name}.
type Agent struct {
	Object
	Status *AgentStatus `json:"status"`
}

// AgentStatus is an agent's status block.
type AgentStatus struct {
	State    string     `json:"state"` // online | offline
	LastSeen *time.Time `json:"lastSeen,omitempty"`
	// Suspended: the agent has spec.suspend; its assignments are frozen.
	Suspended   bool     `json:"suspended,omitempty"`
	Version     string   `json:"version,omitempty"`
	Hostname    string   `json:"hostname,omitempty"`
	Assignments []string `json:"assignments"`
	// PolicyRefusals are the assignments the agent's host policy refused
	// (reported with stage policy and reason HostPolicyRefused), with the
	// rule that refused each.
	PolicyRefusals []PolicyRefusal `json:"policyRefusals"`
}

// PolicyRefusal is one assignment an agent's host policy refused.
type PolicyRefusal struct {
	Certificate string     `json:"certificate"`
	Error       string     `json:"error"`
	At          *time.Time `json:"at,omitempty"`
}

// RevisionList is a page of GET /api/v1/revisions, newest first.
type RevisionList struct {
	Items []state.RevisionRecord `json:"items"`
}

// ListQuery selects a page of a list: at most Limit objects (DefaultLimit
// when 0) whose names sort after After, start with Prefix and carry every
// label of Labels.
type ListQuery struct {
	Limit  int
	After  string
	Prefix string
	Labels map[string]string
}

// Pagination limits of list endpoints.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Overview is the fleet in aggregate, as the dashboard's overview shows it:
// computed by the database in one snapshot, so it stays cheap at tens of
// thousands of certificates. Deployments count only when their certificate
// and agent are both applied.
type Overview struct {
	GeneratedAt  time.Time `json:"generatedAt"`
	Certificates int       `json:"certificates"`
	Agents       int       `json:"agents"`
	// CertificatesByState counts certificates by the worst recorded state
	// of their deployments (failed, rolled-back, issue-failed, issued,
	// installed), and those without any as pending.
	CertificatesByState map[state.DeploymentState]int `json:"certificatesByState"`
	// ExpiringBefore bounds Expiring: installed certificates that end
	// before it, soonest first; ExpiringTotal counts them all.
	ExpiringBefore time.Time            `json:"expiringBefore"`
	Expiring       []ExpiringDeployment `json:"expiring"`
	ExpiringTotal  int                  `json:"expiringTotal"`
	// Failing are the deployments whose last attempt failed, newest first.
	Failing      []FailingDeployment `json:"failing"`
	FailingTotal int                 `json:"failingTotal"`
	// Offline are the agents not heard from within the offline threshold,
	// those never seen first.
	Offline      []OfflineAgent `json:"offline"`
	OfflineTotal int            `json:"offlineTotal"`
	// Timeline counts installed certificates by the week (from Monday,
	// UTC) they end in, from the current week.
	Timeline []WeekCount `json:"timeline"`
}

// ExpiringDeployment is an installed certificate that ends soon.
type ExpiringDeployment struct {
	Certificate string    `json:"certificate"`
	Agent       string    `json:"agent"`
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"notAfter"`
}

// FailingDeployment is a deployment whose last attempt failed.
type FailingDeployment struct {
	Certificate string                `json:"certificate"`
	Agent       string                `json:"agent"`
	State       state.DeploymentState `json:"state"`
	LastError   string                `json:"lastError"`
	LastAttempt *time.Time            `json:"lastAttempt,omitempty"`
}

// OfflineAgent is an agent not heard from recently (LastSeen nil: never).
type OfflineAgent struct {
	Name     string     `json:"name"`
	LastSeen *time.Time `json:"lastSeen,omitempty"`
}

// WeekCount is how many installed certificates end in the week from Week.
type WeekCount struct {
	Week  time.Time `json:"week"`
	Count int       `json:"count"`
}

// OverviewQuery shapes an Overview: zero fields take the defaults below.
type OverviewQuery struct {
	ExpiringWithin time.Duration
	Weeks          int
	Limit          int
}

// Defaults of OverviewQuery.
const (
	DefaultExpiringWithin = 30 * 24 * time.Hour
	DefaultTimelineWeeks  = 12
	DefaultOverviewLimit  = 10
)

// CertificateVersion is one certificate issued to one agent (without its
// PEM), as a certificate's history lists it.
type CertificateVersion struct {
	ID        int64     `json:"id"`
	Agent     string    `json:"agent"`
	SpecHash  string    `json:"specHash"`
	Serial    string    `json:"serial"`
	SHA256    string    `json:"sha256"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	Issuer    string    `json:"issuer"`
	IssuedAt  time.Time `json:"issuedAt"`
	// RenewalWindow is the window the CA suggests renewing in (ACME
	// Renewal Information), as last asked; absent when it offered none.
	RenewalWindow *state.RenewalWindow `json:"renewalWindow,omitempty"`
	// ARIRenewal: this certificate renewed the previous one inside the
	// CA's suggested window (exempt from Let's Encrypt's rate limits).
	ARIRenewal bool `json:"ariRenewal,omitempty"`
}

// ReconcileRequest is the 202 answer of POST /hooks/reconcile: the
// reconciler was asked to fetch now. The pass that answers it fetched
// after RequestedAt: the status's lastFetchAt (any fetch that read the
// head, unchanged or not) or lastAttemptedAt (a new revision applied or
// refused) is then later than RequestedAt.
type ReconcileRequest struct {
	Status      string    `json:"status"` // accepted
	RequestedAt time.Time `json:"requestedAt"`
}
