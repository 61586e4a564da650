package state

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
