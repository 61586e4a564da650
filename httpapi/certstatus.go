package httpapi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/apiv1"
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
	CertificateRevocations(ctx context.Context, certificate string) ([]store.RevokedSerial, error)
	DeploymentSummaries(ctx context.Context, certificates []string) (map[string]store.DeploymentSummary, error)
	AgentsSeen(ctx context.Context, names []string) (map[string]store.AgentSeen, error)
	AgentAssignments(ctx context.Context, agent string, labels map[string]string) ([]string, error)
}

// DefaultAgentOfflineAfter is Config.AgentOfflineAfter's default.
const DefaultAgentOfflineAfter = 5 * time.Minute

func (a *Service) certificateStatus(ctx context.Context, o store.StoredObject) (*apiv1.CertificateStatus, error) {
	obj, err := o.Decode()
	if err != nil {
		return nil, err
	}
	c := obj.Spec.(*spec.CertificateSpec) // Decode gives each kind its spec type
	targets, suspendedAgents, err := a.targets(ctx, c.Deploy)
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
	now := time.Now()
	r := assign.Assess(hash, targets, func(agent string) *state.Deployment { return byAgent[agent] }, now)
	st := &apiv1.CertificateStatus{Ready: r.Ready, Reason: r.Reason, SpecHash: hash,
		NotAfter: timePtr(r.Expiration), RenewAt: timePtr(r.Renewal), Deployments: []apiv1.Deployment{}}
	if c.Suspend {
		st.Suspended, st.Reason = true, "Suspended (spec.suspend): no renewals or deployments until the field is removed; "+r.Reason
	}
	revoked, err := a.r.CertificateRevocations(ctx, o.Name)
	if err != nil {
		return nil, err
	}
	for _, rv := range revoked {
		st.Revocations = append(st.Revocations, apiv1.Revocation{Serial: rv.Serial, Issuer: rv.Issuer, Revocation: rv.Revocation,
			Reason: spec.RevocationReasonName(rv.Reason), RevokedAt: rv.RevokedAt, ACME: rv.ACMEState, ACMEError: rv.ACMEError})
	}
	if a.issuers != nil && !c.Suspend {
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
			st.Deployments = append(st.Deployments, apiv1.Deployment{Agent: agent, State: state.DeploymentPending, Suspended: suspendedAgents[agent]})
			continue
		}
		ds := apiv1.Deployment{Agent: agent, Suspended: suspendedAgents[agent], Serial: d.InstalledSerial, NotAfter: timePtr(d.InstalledNotAfter),
			LastAttempt: timePtr(d.LastAttempt), Revoked: d.Revoked}
		ds.State, ds.LastError = assign.CurrentState(hash, d)
		if d.SpecHash == hash { // the failures and backoff of an older spec do not hold for this one
			ds.Failures, ds.RetryAfter = d.Failures, timePtr(d.NotBefore)
		}
		ds.Waiting = d.WaitingNow(hash, now)
		if d.Current != nil {
			ds.CurrentSerial, ds.RenewAt = d.Current.Serial, timePtr(d.RenewAt)
		}
		if sv := d.Served; sv != nil {
			ds.ServedSerial, ds.ServedNotAfter, ds.ServedCheckedAt = sv.Serial, timePtr(sv.NotAfter), timePtr(sv.CheckedAt)
			ds.ServedError, ds.ServedMismatchSince = sv.Error, timePtr(sv.MismatchSince)
		}
		st.Deployments = append(st.Deployments, ds)
	}
	return st, nil
}

// targets lists the existing agents a deploy block names or selects, and
// which of them are suspended: the candidates are read from the store (by
// name, and by the selector's labels), and assign decides.
func (a *Service) targets(ctx context.Context, d *spec.Deployment) ([]string, map[string]bool, error) {
	if d == nil {
		return nil, nil, nil
	}
	ix := assign.NewIndex()
	suspended := map[string]bool{}
	add := func(o store.StoredObject) error {
		obj, err := o.Decode()
		if err != nil {
			return err
		}
		ix.Add(o.Name, o.Labels)
		if obj.Agent().Suspend {
			suspended[o.Name] = true
		}
		return nil
	}
	for _, name := range d.Agents {
		o, err := a.r.GetObject(ctx, spec.KindAgent, name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err == nil {
			err = add(o)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if sel := d.AgentSelector; sel != nil && len(sel.MatchLabels) > 0 {
		q := store.ObjectQuery{Kind: spec.KindAgent, Labels: sel.MatchLabels, Limit: store.MaxPageSize}
		for {
			page, next, err := a.r.ListObjects(ctx, q)
			if err != nil {
				return nil, nil, err
			}
			for _, o := range page {
				if ix.Has(o.Name) {
					continue
				}
				if err := add(o); err != nil {
					return nil, nil, err
				}
			}
			if next == "" {
				break
			}
			q.After = next
		}
	}
	return ix.Targets(d), suspended, nil
}

func (a *Service) agentStatus(ctx context.Context, o store.StoredObject) (*apiv1.AgentStatus, error) {
	seen, err := a.r.AgentsSeen(ctx, []string{o.Name})
	if err != nil {
		return nil, err
	}
	assignments, err := a.r.AgentAssignments(ctx, o.Name, o.Labels)
	if err != nil {
		return nil, err
	}
	obj, err := o.Decode()
	if err != nil {
		return nil, err
	}
	st := &apiv1.AgentStatus{State: apiv1.Offline, Suspended: obj.Agent().Suspend, Assignments: assignments}
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
	st.PolicyRefusals = []apiv1.PolicyRefusal{}
	for _, d := range deps {
		if d.State == state.DeploymentFailed && slices.Contains(st.Assignments, d.Certificate) &&
			strings.HasPrefix(d.LastError, agentproto.StagePolicy+": "+agentproto.ReasonHostPolicyRefused) {
			st.PolicyRefusals = append(st.PolicyRefusals, apiv1.PolicyRefusal{Certificate: d.Certificate, Error: d.LastError,
				At: timePtr(d.LastAttempt)})
		}
	}
	return st, nil
}

// liveness is whether an agent last heard from at lastSeen is online.
func (a *Service) liveness(lastSeen time.Time) string {
	if time.Since(lastSeen) <= a.offlineAfter {
		return apiv1.Online
	}
	return apiv1.Offline
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
