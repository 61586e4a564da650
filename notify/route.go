package notify

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
)

// Alert labels that name an alert's subjects: the Certificate and the
// Agent whose labels (from the applied desired state) route the alert.
const (
	SubjectCertificateLabel = "certificate"
	SubjectAgentLabel       = "agent"
)

// router returns, for each of alerts, the channels of policy that get it
// (spec.AlertPolicySpec.ChannelsFor its subject labels). The labels of the
// certificates and agents the alerts name are read from the store only when
// the policy has routes; without routes every alert goes to spec.notify.
func (n *Notifier) router(ctx context.Context, policy *spec.AlertPolicySpec, alerts []alert.Alert) (func(alert.Alert) []string, error) {
	if policy == nil || len(policy.Routes) == 0 {
		return func(alert.Alert) []string { return policy.ChannelsFor(nil) }, nil
	}
	var certs, agents []string
	for _, a := range alerts {
		if c := a.Labels[SubjectCertificateLabel]; c != "" && !slices.Contains(certs, c) {
			certs = append(certs, c)
		}
		if g := a.Labels[SubjectAgentLabel]; g != "" && !slices.Contains(agents, g) {
			agents = append(agents, g)
		}
	}
	certLabels, err := n.st.ObjectLabels(ctx, spec.KindCertificate, certs)
	if err != nil {
		return nil, fmt.Errorf("route alerts: %w", err)
	}
	agentLabels, err := n.st.ObjectLabels(ctx, spec.KindAgent, agents)
	if err != nil {
		return nil, fmt.Errorf("route alerts: %w", err)
	}
	return func(a alert.Alert) []string {
		return policy.ChannelsFor(subjectLabels(certLabels[a.Labels[SubjectCertificateLabel]], agentLabels[a.Labels[SubjectAgentLabel]]))
	}, nil
}

// subjectLabels are the labels an alert is routed by: its agent's labels
// and its certificate's, the certificate's value winning for a key both
// have (an alert about a deployment names both). Nil when neither has labels.
func subjectLabels(certificate, agent map[string]string) map[string]string {
	if len(certificate) == 0 && len(agent) == 0 {
		return nil
	}
	out := maps.Clone(agent)
	if out == nil {
		out = make(map[string]string, len(certificate))
	}
	maps.Copy(out, certificate)
	return out
}
