package agentapi

import (
	"context"
	"sync"
	"time"

	"github.com/certops/certops/store"
)

// presence is what this replica heard from agents — last seen, version,
// hostname — and what the fleet's replicas last flushed to Postgres. Polls
// update it in memory; flush writes the changes in one batch.
type presence struct {
	mu    sync.Mutex
	local map[string]*seenEntry
	// fleet is agent_status as last read, for metrics across replicas.
	fleet map[string]time.Time
}

type seenEntry struct {
	store.AgentSeen
	dirty bool
}

func newPresence() *presence {
	return &presence{local: map[string]*seenEntry{}, fleet: map[string]time.Time{}}
}

func (p *presence) entry(agent string) *seenEntry {
	e := p.local[agent]
	if e == nil {
		e = &seenEntry{AgentSeen: store.AgentSeen{Name: agent}}
		p.local[agent] = e
	}
	return e
}

// seen records a request from agent.
func (p *presence) seen(agent string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entry(agent)
	if now.After(e.LastSeen) {
		e.LastSeen = now
	}
	e.dirty = true
}

// heartbeat records a heartbeat's version and hostname.
func (p *presence) heartbeat(agent string, now time.Time, version, hostname string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entry(agent)
	e.LastSeen, e.Version, e.Hostname, e.dirty = later(e.LastSeen, now), version, hostname, true
}

// lastSeen is when agent was last heard of, by this replica or any other.
func (p *presence) lastSeen(agent string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.fleet[agent]
	if e := p.local[agent]; e != nil {
		t = later(t, e.LastSeen)
	}
	return t
}

// takeDirty returns the changed entries and marks them clean.
func (p *presence) takeDirty() []store.AgentSeen {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []store.AgentSeen
	for _, e := range p.local {
		if e.dirty {
			out = append(out, e.AgentSeen)
			e.dirty = false
		}
	}
	return out
}

// markDirty marks entries dirty again after a failed flush.
func (p *presence) markDirty(seen []store.AgentSeen) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range seen {
		p.entry(a.Name).dirty = true
	}
}

func (p *presence) setFleet(m map[string]store.AgentSeen) {
	fleet := make(map[string]time.Time, len(m))
	for name, a := range m {
		fleet[name] = a.LastSeen
	}
	p.mu.Lock()
	p.fleet = fleet
	p.mu.Unlock()
}

// Flush writes the liveness this replica collected in one statement and
// reads back the whole fleet's. Run does it every FlushInterval and on
// shutdown.
func (s *Server) Flush(ctx context.Context) error {
	dirty := s.presence.takeDirty()
	if err := s.store.RecordAgentsSeen(ctx, dirty); err != nil {
		s.presence.markDirty(dirty)
		return err
	}
	fleet, err := s.store.AgentsSeen(ctx, nil)
	if err != nil {
		return err
	}
	s.presence.setFleet(fleet)
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
