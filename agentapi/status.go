package agentapi

import (
	"time"

	"github.com/certops/certops/assign"
	"github.com/certops/certops/state"
)

// CertificateState is one certificate's readiness, for the metrics.
type CertificateState struct {
	Name string
	assign.Readiness
}

// certificateStates assesses every certificate of the snapshot.
func (s *Server) certificateStates(now time.Time) []CertificateState {
	o := s.objs.Load()
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]CertificateState, 0, len(o.certs))
	for name, c := range o.certs {
		r := assign.Assess(c.specHash, c.targets, func(agent string) *state.Deployment { return s.deps[depKey{name, agent}] }, now)
		out = append(out, CertificateState{Name: name, Readiness: r})
	}
	return out
}

// agentCounts counts the desired state's agents by liveness.
func (s *Server) agentCounts(now time.Time) (online, offline int) {
	for name := range s.objs.Load().agents {
		if now.Sub(s.presence.lastSeen(name)) <= s.cfg.OfflineAfter {
			online++
		} else {
			offline++
		}
	}
	return online, offline
}
