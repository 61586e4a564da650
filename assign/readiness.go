package assign

import (
	"fmt"
	"time"

	"github.com/certops/certops/state"
)

// Readiness is a certificate's state across the agents that deploy it.
type Readiness struct {
	// Ready: every agent has a certificate for the current spec installed
	// and unexpired (a failed renewal leaves it ready until expiry).
	Ready bool
	// Reason says why, for people: the first agent with a problem.
	Reason string
	// Expiration is the earliest expiry of what the agents have installed.
	Expiration time.Time
	// NotBefore is the start of validity of that installed certificate
	// (zero when unknown), for the fraction of lifetime left.
	NotBefore time.Time
	// Renewal is the earliest renewal time of the current certificates.
	Renewal time.Time
}

// Assess computes a certificate's readiness from its spec hash, the agents
// that deploy it (sorted) and their deployments (nil when an agent has none).
func Assess(specHash string, targets []string, deployment func(agent string) *state.Deployment, now time.Time) Readiness {
	var r Readiness
	if len(targets) == 0 {
		r.Reason = "no agent deploys it: deploy names or selects no existing agent"
		return r
	}
	var problems []string
	for _, agent := range targets {
		d := deployment(agent)
		if d != nil {
			if !d.InstalledNotAfter.IsZero() && (r.Expiration.IsZero() || d.InstalledNotAfter.Before(r.Expiration)) {
				r.Expiration, r.NotBefore = d.InstalledNotAfter, installedNotBefore(d)
			}
			if d.Current != nil && d.Current.SpecHash == specHash && !d.RenewAt.IsZero() &&
				(r.Renewal.IsZero() || d.RenewAt.Before(r.Renewal)) {
				r.Renewal = d.RenewAt
			}
		}
		if p := agentProblem(specHash, agent, d, now); p != "" {
			problems = append(problems, p)
		}
	}
	switch len(problems) {
	case 0:
		r.Ready, r.Reason = true, fmt.Sprintf("installed on %d agent(s)", len(targets))
	case 1:
		r.Reason = problems[0]
	default:
		r.Reason = fmt.Sprintf("%s (and %d more agent(s) not ready)", problems[0], len(problems)-1)
	}
	return r
}

// installedNotBefore is the notBefore of the certificate d has installed:
// the current version's when it is the installed one; otherwise (a newer
// version issued, not installed yet) the installed expiry minus the current
// version's lifetime, since versions of a spec share their duration.
func installedNotBefore(d *state.Deployment) time.Time {
	if d.Current == nil {
		return time.Time{}
	}
	if d.Current.Serial == d.InstalledSerial {
		return d.Current.NotBefore
	}
	return d.InstalledNotAfter.Add(-d.Current.NotAfter.Sub(d.Current.NotBefore))
}

// CurrentState is the state of deployment d (nil: none) for the
// certificate's current spec specHash, and the error that goes with it.
// The recorded state holds when it was recorded for specHash. A state
// recorded for another spec (a failure of a commit since reverted, say)
// says nothing of this one: then d is installed when it has a certificate
// of specHash installed, issued when one was issued but not installed, and
// pending otherwise, without an error.
func CurrentState(specHash string, d *state.Deployment) (state.DeploymentState, string) {
	switch {
	case d == nil:
		return state.DeploymentPending, ""
	case d.StateSpecHash == specHash:
		return d.State, d.LastError
	case d.InstalledSerial != "" && d.InstalledSpecHash == specHash:
		return state.DeploymentInstalled, ""
	case d.Current != nil && d.Current.SpecHash == specHash:
		return state.DeploymentIssued, ""
	default:
		return state.DeploymentPending, ""
	}
}

// agentProblem says why a certificate is not ready on one agent, or "".
func agentProblem(specHash, agent string, d *state.Deployment, now time.Time) string {
	if d == nil {
		return fmt.Sprintf("waiting for agent %s to request issuance", agent)
	}
	installed := d.InstalledSerial != "" && d.InstalledSpecHash == specHash
	if installed && d.InstalledNotAfter.After(now) {
		return ""
	}
	current := d.Current != nil && d.Current.SpecHash == specHash
	st, lastError := CurrentState(specHash, d)
	switch {
	case st == state.DeploymentIssueFailed:
		return fmt.Sprintf("issuance for agent %s failed: %s", agent, lastError)
	case st.Failed():
		return fmt.Sprintf("deployment on agent %s %s: %s", agent, st, lastError)
	case d.WaitingNow(specHash, now) != "":
		return fmt.Sprintf("agent %s: %s", agent, d.WaitingNow(specHash, now))
	case installed && !d.InstalledNotAfter.IsZero():
		return fmt.Sprintf("certificate on agent %s expired at %s", agent, d.InstalledNotAfter.UTC().Format(time.RFC3339))
	case current:
		return fmt.Sprintf("waiting for agent %s to install serial %s", agent, d.Current.Serial)
	case d.Current != nil || d.InstalledSpecHash != "":
		return fmt.Sprintf("spec changed; waiting for agent %s to request a new certificate", agent)
	default:
		return fmt.Sprintf("waiting for agent %s to request issuance", agent)
	}
}
