package spec

import (
	"slices"
	"time"
)

// Typed views of objects and states for the code that consumes them.

// Issuer returns the object's spec if it is an Issuer, else nil.
func (o *Object) Issuer() *IssuerSpec { s, _ := o.Spec.(*IssuerSpec); return s }

// Agent returns the object's spec if it is an Agent, else nil.
func (o *Object) Agent() *AgentSpec { s, _ := o.Spec.(*AgentSpec); return s }

// Certificate returns the object's spec if it is a Certificate, else nil.
func (o *Object) Certificate() *CertificateSpec { s, _ := o.Spec.(*CertificateSpec); return s }

// AlertPolicy returns the object's spec if it is an AlertPolicy, else nil.
func (o *Object) AlertPolicy() *AlertPolicySpec { s, _ := o.Spec.(*AlertPolicySpec); return s }

// NotificationChannel returns the object's spec if it is a NotificationChannel, else nil.
func (o *Object) NotificationChannel() *NotificationChannelSpec {
	s, _ := o.Spec.(*NotificationChannelSpec)
	return s
}

// BackupPolicy returns the object's spec if it is a BackupPolicy, else nil.
func (o *Object) BackupPolicy() *BackupPolicySpec { s, _ := o.Spec.(*BackupPolicySpec); return s }

// Get returns the object of the given kind and name, or nil.
func (s State) Get(kind Kind, name string) *Object { return s.Objects[Key{Kind: kind, Name: name}] }

// DurationValue is the requested certificate lifetime: spec.duration, or
// DefaultDuration when it is empty (or, for an unvalidated spec, invalid).
func (s *CertificateSpec) DurationValue() time.Duration {
	if d, err := time.ParseDuration(s.Duration); err == nil && d > 0 {
		return d
	}
	return DefaultDuration
}

// RenewBeforeValue is how long before expiry of a certificate with the
// requested lifetime renewal starts: spec.renewBefore, or
// renewBeforePercentage of the lifetime, or by default one third of it
// (renewal at two thirds of the lifetime).
func (s *CertificateSpec) RenewBeforeValue() time.Duration {
	return s.renewBefore(s.DurationValue())
}

// RenewalTime is when a certificate valid from notBefore to notAfter should
// be renewed, applying the spec's renewal setting to the actual lifetime
// (renewBefore as an absolute duration, a percentage or the 2/3 default).
func (s *CertificateSpec) RenewalTime(notBefore, notAfter time.Time) time.Time {
	lifetime := notAfter.Sub(notBefore)
	rb := s.renewBefore(lifetime)
	if rb >= lifetime {
		rb = lifetime / 3
	}
	return notAfter.Add(-rb)
}

func (s *CertificateSpec) renewBefore(lifetime time.Duration) time.Duration {
	if d, err := time.ParseDuration(s.RenewBefore); err == nil && d > 0 {
		return d
	}
	if p := s.RenewBeforePercentage; p != nil && *p > 0 && *p < 100 {
		return lifetime * time.Duration(*p) / 100
	}
	return lifetime / 3
}

// Matches reports whether labels carry every matchLabels entry. A nil or
// empty selector matches nothing: selecting every agent must be explicit.
func (sel *LabelSelector) Matches(labels map[string]string) bool {
	if sel == nil || len(sel.MatchLabels) == 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Selects is the one rule for which agents get a certificate: it reports
// whether the deploy block targets the agent with this name and labels —
// the agent is listed in agents, or agentSelector's matchLabels are all
// among its labels. A selector without matchLabels selects nothing (it
// would otherwise select every agent), and a nil deploy block selects no
// agent.
func (d *Deployment) Selects(agent string, labels map[string]string) bool {
	if d == nil {
		return false
	}
	return slices.Contains(d.Agents, agent) || d.AgentSelector.Matches(labels)
}
