package agentapi

import (
	"context"
	"iter"
	"log/slog"
	"sync"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/store"
)

// PresenceStore is what Presence writes and reads; *store.Store implements
// it.
type PresenceStore interface {
	RecordAgentsSeen(ctx context.Context, seen []store.AgentSeen) error
	AgentsSeen(ctx context.Context, names []string) (map[string]store.AgentSeen, error)
}

// Presence is what this replica heard from agents — last seen, version,
// hostname — and what the fleet's replicas last flushed to Postgres.
// Requests update it in memory; Flush writes the changes in one batch.
type Presence struct {
	store        PresenceStore
	now          func() time.Time
	interval     time.Duration // of Run's flushes
	offlineAfter time.Duration
	log          *slog.Logger

	mu    sync.Mutex
	local map[string]*seenEntry
	// fleet is agent_status as last read, for metrics across replicas.
	fleet map[string]time.Time
}

type seenEntry struct {
	store.AgentSeen
	dirty bool
}

// NewPresence returns an empty Presence; cfg.FlushInterval,
// cfg.OfflineAfter and cfg.Now are used.
func NewPresence(st PresenceStore, cfg Config, logger *slog.Logger) *Presence {
	cfg = cfg.withDefaults()
	return &Presence{store: st, now: cfg.Now, interval: cfg.FlushInterval, offlineAfter: cfg.OfflineAfter, log: orDiscard(logger),
		local: map[string]*seenEntry{}, fleet: map[string]time.Time{}}
}

func (p *Presence) entry(agent string) *seenEntry {
	e := p.local[agent]
	if e == nil {
		e = &seenEntry{AgentSeen: store.AgentSeen{Name: agent}}
		p.local[agent] = e
	}
	return e
}

// Seen records a request from agent.
func (p *Presence) Seen(agent string) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entry(agent)
	if now.After(e.LastSeen) {
		e.LastSeen = now
	}
	e.dirty = true
}

// Heartbeat records a heartbeat's version and hostname (checked by the
// Handler, as every string an agent sends).
func (p *Presence) Heartbeat(agent string, hb agentproto.Heartbeat) error {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entry(agent)
	e.LastSeen, e.Version, e.Hostname, e.dirty = later(e.LastSeen, now), hb.Version, hb.Hostname, true
	return nil
}

// lastSeen is when agent was last heard of, by this replica or any other.
func (p *Presence) lastSeen(agent string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.fleet[agent]
	if e := p.local[agent]; e != nil {
		t = later(t, e.LastSeen)
	}
	return t
}

// counts counts agents by liveness: online when heard of within
// OfflineAfter.
func (p *Presence) counts(agents iter.Seq[string], now time.Time) (online, offline int) {
	for name := range agents {
		if now.Sub(p.lastSeen(name)) <= p.offlineAfter {
			online++
		} else {
			offline++
		}
	}
	return online, offline
}

// takeDirty returns the changed entries and marks them clean.
func (p *Presence) takeDirty() []store.AgentSeen {
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
func (p *Presence) markDirty(seen []store.AgentSeen) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range seen {
		p.entry(a.Name).dirty = true
	}
}

func (p *Presence) setFleet(m map[string]store.AgentSeen) {
	fleet := make(map[string]time.Time, len(m))
	for name, a := range m {
		fleet[name] = a.LastSeen
	}
	p.mu.Lock()
	p.fleet = fleet
	p.mu.Unlock()
}

// Run flushes every FlushInterval until ctx ends, then once more.
func (p *Presence) Run(ctx context.Context) error {
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := p.Flush(fctx); err != nil {
				p.log.Warn("agent API: final flush of agent liveness", "err", err)
			}
			return nil
		case <-tick.C:
			if err := p.Flush(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("agent API: flush agent liveness", "err", err)
			}
		}
	}
}

// Flush writes the liveness this replica collected in one statement and
// reads back the whole fleet's.
func (p *Presence) Flush(ctx context.Context) error {
	dirty := p.takeDirty()
	if err := p.store.RecordAgentsSeen(ctx, dirty); err != nil {
		p.markDirty(dirty)
		return err
	}
	fleet, err := p.store.AgentsSeen(ctx, nil)
	if err != nil {
		return err
	}
	p.setFleet(fleet)
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
