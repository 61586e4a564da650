package httpapi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// StatusReader is what the certificate and agent status blocks read;
// *store.Store implements it.
type StatusReader interface {
	CertificateDeployments(ctx context.Context, certificate string) ([]state.Deployment, error)
	AgentDeployments(ctx context.Context, agent string) ([]state.Deployment, error)
	DeploymentSummaries(ctx context.Context, certificates []string) (map[string]store.DeploymentSummary, error)
	AgentsSeen(ctx context.Context, names []string) (map[string]store.AgentSeen, error)
	AgentAssignments(ctx context.Context, agent string, labels map[string]string) ([]string, error)
}

// DefaultAgentOfflineAfter is Config.AgentOfflineAfter's default.
const DefaultAgentOfflineAfter = 5 * time.Minute

// certificateStatus is the status block of GET /api/v1/certificates/{name}.
type certificateStatus struct {
	Ready    bool   `json:"ready"`
	Reason   string `json:"reason"`
	SpecHash string `json:"specHash"`
	// NotAfter is the earliest expiry of what the agents have installed;
	// RenewAt the earliest renewal time of the current certificates.
	NotAfter *time.Time `json:"notAfter,omitempty"`
	RenewAt  *time.Time `json:"renewAt,omitempty"`
	// IssuerError says why the issuer cannot sign the certificate's names
	// (a local CA's name constraints), before any agent asks.
	IssuerError string             `json:"issuerError,omitempty"`
	Deployments []deploymentStatus `json:"deployments"`
}

// deploymentStatus is the certificate's state on one agent.
type deploymentStatus struct {
	Agent string `json:"agent"`
	// State is pending (nothing asked yet), issued, issue-failed,
	// installed, failed or rolled-back, for the current spec (see
	// assign.CurrentState), and LastError its error.
	State state.DeploymentState `json:"state"`
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
}

// certificateWithStatus is a stored certificate with its status block.
type certificateWithStatus struct {
	store.StoredObject
	Status *certificateStatus `json:"status"`
}

// agentStatus is the status block of GET /api/v1/agents/{name}.
type agentStatus struct {
	State       string     `json:"state"` // online | offline
	LastSeen    *time.Time `json:"lastSeen,omitempty"`
	Version     string     `json:"version,omitempty"`
	Hostname    string     `json:"hostname,omitempty"`
	Assignments []string   `json:"assignments"`
	// PolicyRefusals are the assignments the agent's host policy refused
	// (reported with stage policy and reason HostPolicyRefused), with the
	// rule that refused each.
	PolicyRefusals []policyRefusal `json:"policyRefusals"`
}

// policyRefusal is one assignment an agent's host policy refused.
type policyRefusal struct {
	Certificate string     `json:"certificate"`
	Error       string     `json:"error"`
	At          *time.Time `json:"at,omitempty"`
}

type agentWithStatus struct {
	store.StoredObject
	Status *agentStatus `json:"status"`
}

// withStatus adds the status block to one object.
func (a *api) withStatus(ctx context.Context, o store.StoredObject) (any, error) {
	switch o.Kind {
	case spec.KindCertificate:
		st, err := a.certificateStatus(ctx, o)
		return certificateWithStatus{o, st}, err
	case spec.KindAgent:
		st, err := a.agentStatus(ctx, o)
		return agentWithStatus{o, st}, err
	}
	return o, nil
}

func (a *api) certificateStatus(ctx context.Context, o store.StoredObject) (*certificateStatus, error) {
	obj, err := o.Decode()
	if err != nil {
		return nil, err
	}
	c := obj.Spec.(*spec.CertificateSpec) // Decode gives each kind its spec type
	targets, err := a.targets(ctx, c.Deploy)
	if err != nil {
		return nil, err
	}
	deps, err := a.r.CertificateDeployments(ctx, o.Name)
	if err != nil {
		return nil, err
	}
	byAgent := make(map[string]*state.Deployment, len(deps))
	for i := range deps {
		byAgent[deps[i].Agent] = &deps[i]
	}
	hash := assign.SpecHash(c)
	r := assign.Assess(hash, targets, func(agent string) *state.Deployment { return byAgent[agent] }, time.Now())
	st := &certificateStatus{Ready: r.Ready, Reason: r.Reason, SpecHash: hash,
		NotAfter: timePtr(r.Expiration), RenewAt: timePtr(r.Renewal), Deployments: []deploymentStatus{}}
	if a.issuers != nil {
		if err := a.issuers.CheckNames(c.IssuerRef, c); err != nil {
			// No agent can get it issued (or renewed): say so first.
			st.IssuerError = err.Error()
			if !st.Ready {
				st.Reason = err.Error()
			}
		}
	}
	for _, agent := range targets {
		d := byAgent[agent]
		if d == nil {
			st.Deployments = append(st.Deployments, deploymentStatus{Agent: agent, State: state.DeploymentPending})
			continue
		}
		ds := deploymentStatus{Agent: agent, Serial: d.InstalledSerial, NotAfter: timePtr(d.InstalledNotAfter),
			LastAttempt: timePtr(d.LastAttempt)}
		ds.State, ds.LastError = assign.CurrentState(hash, d)
		if d.SpecHash == hash { // the failures and backoff of an older spec do not hold for this one
			ds.Failures, ds.RetryAfter = d.Failures, timePtr(d.NotBefore)
		}
		if d.Current != nil {
			ds.CurrentSerial, ds.RenewAt = d.Current.Serial, timePtr(d.RenewAt)
		}
		st.Deployments = append(st.Deployments, ds)
	}
	return st, nil
}

// targets lists the existing agents a deploy block names or selects: the
// candidates are read from the store (by name, and by the selector's labels),
// and assign decides.
func (a *api) targets(ctx context.Context, d *spec.Deployment) ([]string, error) {
	if d == nil {
		return nil, nil
	}
	ix := assign.NewIndex()
	for _, name := range d.Agents {
		o, err := a.r.GetObject(ctx, spec.KindAgent, name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ix.Add(o.Name, o.Labels)
	}
	if sel := d.AgentSelector; sel != nil && len(sel.MatchLabels) > 0 {
		q := store.ObjectQuery{Kind: spec.KindAgent, Labels: sel.MatchLabels, Limit: store.MaxPageSize}
		for {
			page, next, err := a.r.ListObjects(ctx, q)
			if err != nil {
				return nil, err
			}
			for _, o := range page {
				if !ix.Has(o.Name) {
					ix.Add(o.Name, o.Labels)
				}
			}
			if next == "" {
				break
			}
			q.After = next
		}
	}
	return ix.Targets(d), nil
}

func (a *api) agentStatus(ctx context.Context, o store.StoredObject) (*agentStatus, error) {
	seen, err := a.r.AgentsSeen(ctx, []string{o.Name})
	if err != nil {
		return nil, err
	}
	assignments, err := a.r.AgentAssignments(ctx, o.Name, o.Labels)
	if err != nil {
		return nil, err
	}
	st := &agentStatus{State: "offline", Assignments: assignments}
	if s, ok := seen[o.Name]; ok {
		st.LastSeen, st.Version, st.Hostname = timePtr(s.LastSeen), s.Version, s.Hostname
		st.State = a.liveness(s.LastSeen)
	}
	if st.Assignments == nil {
		st.Assignments = []string{}
	}
	deps, err := a.r.AgentDeployments(ctx, o.Name)
	if err != nil {
		return nil, err
	}
	st.PolicyRefusals = []policyRefusal{}
	for _, d := range deps {
		if d.State == state.DeploymentFailed && slices.Contains(st.Assignments, d.Certificate) &&
			strings.HasPrefix(d.LastError, agentproto.StagePolicy+": "+agentproto.ReasonHostPolicyRefused) {
			st.PolicyRefusals = append(st.PolicyRefusals, policyRefusal{Certificate: d.Certificate, Error: d.LastError,
				At: timePtr(d.LastAttempt)})
		}
	}
	return st, nil
}

func (a *api) liveness(lastSeen time.Time) string {
	if time.Since(lastSeen) <= a.offlineAfter {
		return "online"
	}
	return "offline"
}

// certificateSummary is the compact status of a certificate in a list.
type certificateSummary struct {
	store.StoredObject
	Status store.DeploymentSummary `json:"status"`
}

// agentSummary is the compact status of an agent in a list.
type agentSummary struct {
	store.StoredObject
	Status struct {
		State    string     `json:"state"`
		LastSeen *time.Time `json:"lastSeen,omitempty"`
	} `json:"status"`
}

// listWithStatus adds a compact status to a page of a list, with one query.
func (a *api) listWithStatus(ctx context.Context, kind spec.Kind, objs []store.StoredObject) ([]any, error) {
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.Name
	}
	out := make([]any, len(objs))
	switch kind {
	case spec.KindCertificate:
		sums, err := a.r.DeploymentSummaries(ctx, names)
		if err != nil {
			return nil, err
		}
		for i, o := range objs {
			out[i] = certificateSummary{o, sums[o.Name]}
		}
	case spec.KindAgent:
		seen, err := a.r.AgentsSeen(ctx, names)
		if err != nil {
			return nil, err
		}
		for i, o := range objs {
			s := agentSummary{StoredObject: o}
			s.Status.State = "offline"
			if v, ok := seen[o.Name]; ok {
				s.Status.State, s.Status.LastSeen = a.liveness(v.LastSeen), timePtr(v.LastSeen)
			}
			out[i] = s
		}
	default:
		for i, o := range objs {
			out[i] = o
		}
	}
	return out, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
