package agentapi

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// SnapshotStore is what the snapshot reads; *store.Store implements it.
type SnapshotStore interface {
	AgentChanges(ctx context.Context) (revision, seq int64, err error)
	AssignmentObjects(ctx context.Context, since int64, known func(k spec.Key, hash string) bool) (store.AssignmentChanges, error)
	DeploymentsSince(ctx context.Context, seq int64) ([]state.Deployment, int64, error)
	ACMEChallenges(ctx context.Context, now time.Time) ([]store.ACMEChallenge, error)
}

// IssuerSync is told the Issuer objects of every revision the snapshot
// loads; *issuer.Registry implements it.
type IssuerSync interface {
	Sync(issuers []*spec.Object)
}

// Snapshot is this replica's in-memory copy of what agents see: the
// applied Agent and Certificate objects (immutable, replaced whole on a new
// revision), every deployment row, the published http-01 challenges, and
// each agent's cached ETag. Refresh brings it up to date with Postgres; the
// parts that write to Postgres apply their own writes at once.
type Snapshot struct {
	store    SnapshotStore
	issuers  IssuerSync // nil: no issuer registry to sync
	cas      CASource   // the issuers when they give CA certificates; else nil
	now      func() time.Time
	interval time.Duration
	log      *slog.Logger

	// objs is the applied desired state as agents see it; nil until the
	// first load. It is replaced whole, never modified.
	objs atomic.Pointer[objects]

	mu sync.RWMutex
	// deps holds every deployment row, keyed by certificate and agent.
	deps map[depKey]*state.Deployment
	// mark is where the next read of changed deployments starts (see
	// store.DeploymentsSince).
	mark int64
	// challengeSeq is the challenge change counter the challenges are
	// loaded at (-1 before the first load).
	challengeSeq int64
	// etags caches each agent's current ETag; gen counts invalidations, so
	// an ETag computed before one is not cached after it.
	etags map[string]string
	gen   uint64
	// challenges are the published http-01 challenges by agent.
	challenges map[string][]agentproto.Challenge
	// bundles is each trust bundle's content (see refreshBundles);
	// acmeRoots the ACME issuers' roots it used; depsMoved says a
	// deployment changed since (an ACME root may have too).
	bundles   map[string]bundleContent
	acmeRoots map[string][]byte
	depsMoved bool

	chains interner
	// shared, when set, has this process's loaded objects, which the
	// snapshot takes instead of decoding copies (see ShareObjects).
	shared *spec.Latest
	// loaded is closed by the first load of the objects.
	loaded     chan struct{}
	loadedOnce sync.Once
}

type depKey struct{ cert, agent string }

// NewSnapshot returns an empty snapshot; Ready fails until the first
// Refresh. issuers may be nil; when it is a CASource too (as
// *issuer.Registry is), trust bundles take the local CAs' certificates
// from it. cfg.RefreshInterval and cfg.Now are used.
func NewSnapshot(st SnapshotStore, issuers IssuerSync, cfg Config, logger *slog.Logger) *Snapshot {
	cfg = cfg.withDefaults()
	cas, _ := issuers.(CASource)
	return &Snapshot{cas: cas, store: st, issuers: issuers, now: cfg.Now, interval: cfg.RefreshInterval, log: orDiscard(logger),
		deps: map[depKey]*state.Deployment{}, etags: map[string]string{},
		challenges: map[string][]agentproto.Challenge{}, chains: interner{m: map[string]string{}}, challengeSeq: -1,
		loaded: make(chan struct{})}
}

// Loaded is closed once the objects are first loaded: from then on the
// snapshot serves agents.
func (s *Snapshot) Loaded() <-chan struct{} { return s.loaded }

// ShareObjects makes the snapshot take the objects latest holds (the
// reconciler's loaded revision, on the replica that leads) instead of
// decoding copies of the same content. Call it before Run.
func (s *Snapshot) ShareObjects(latest *spec.Latest) { s.shared = latest }

// Ready returns an error until the first snapshot is loaded (for /readyz).
func (s *Snapshot) Ready() error {
	if s.objs.Load() == nil {
		return errors.New("agent API: desired state not loaded yet")
	}
	return nil
}

// Authenticate returns the agent whose token this is: a failure error
// (Unavailable) before the first load, Unauthorized for a token no single
// agent holds.
func (s *Snapshot) Authenticate(token string) (string, error) {
	objs := s.objs.Load()
	if objs == nil {
		return "", failure.WithRetryAfter(failure.New(failure.Unavailable, "starting: desired state not loaded yet"), time.Second)
	}
	agent := ""
	if token != "" {
		agent = objs.tokens[sha256.Sum256([]byte(token))]
	}
	if agent == "" {
		return "", failure.New(failure.Unauthorized, "unauthorized")
	}
	return agent, nil
}

// assigned returns the certificate if it is assigned to agent, else nil.
func (s *Snapshot) assigned(cert, agent string) *certEntry {
	if c, ok := s.objs.Load().assigned(cert, agent); ok {
		return c
	}
	return nil
}

// targets returns the agents deploying cert, sorted (nil for an unknown
// certificate); the caller may modify the slice.
func (s *Snapshot) targets(cert string) []string {
	if c := s.objs.Load().certs[cert]; c != nil {
		return slices.Clone(c.targets)
	}
	return nil
}

// agentNames lists the agents of the desired state.
func (s *Snapshot) agentNames() iter.Seq[string] { return maps.Keys(s.objs.Load().agents) }

// ETag returns the agent's cached ETag, or "" when it is to be computed.
func (s *Snapshot) ETag(agent string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.etags[agent]
}

// Assignments returns the agent's assignments document and its ETag, which
// it caches until something the agent sees changes.
func (s *Snapshot) Assignments(agent string) (body []byte, etag string, err error) {
	s.mu.RLock()
	gen := s.gen
	a := s.assignmentsLocked(s.objs.Load(), agent)
	s.mu.RUnlock()
	body, err = json.Marshal(a)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(body)
	etag = fmt.Sprintf(`"%x"`, sum[:16])
	s.mu.Lock()
	if s.gen == gen {
		s.etags[agent] = etag
	}
	s.mu.Unlock()
	return body, etag, nil
}

// assignmentsLocked builds an agent's assignments; s.mu is held (read).
func (s *Snapshot) assignmentsLocked(o *objects, agent string) agentproto.Assignments {
	out := agentproto.Assignments{Agent: agent, Certificates: []agentproto.Assignment{}}
	ae := o.agents[agent]
	if ae == nil {
		return out
	}
	for _, name := range ae.certs {
		c := o.certs[name]
		a := c.assignment(name)
		a.Suspended = a.Suspended || ae.suspended
		if d := s.deps[depKey{name, agent}]; d != nil {
			if v := d.Current; v != nil && v.SpecHash == c.specHash {
				a.Current = &agentproto.Issued{Serial: v.Serial, SHA256: v.SHA256, NotBefore: v.NotBefore,
					NotAfter: v.NotAfter, CertPEM: v.CertPEM, ChainPEM: v.ChainPEM}
				a.RenewAt = d.RenewAt
			}
			if d.SpecHash == c.specHash {
				a.NotBefore = d.NotBefore
			}
		}
		out.Certificates = append(out.Certificates, a)
	}
	out.Bundles = s.bundleAssignmentsLocked(o, ae)
	out.Challenges = s.challenges[agent]
	return out
}

// suspension says why nothing may be issued for cert on agent, or "".
func (s *Snapshot) suspension(cert, agent string) string {
	return s.objs.Load().suspension(cert, agent)
}

// deployment returns the in-memory deployment of cert on agent, or nil.
func (s *Snapshot) deployment(cert, agent string) *state.Deployment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.deps[depKey{cert, agent}]
}

// applyDeployments merges rows read from or written to Postgres into the
// snapshot, keeping the newer of two versions of a row, and invalidates the
// cached ETag of every agent concerned.
func (s *Snapshot) applyDeployments(rows []state.Deployment) {
	if len(rows) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for i := range rows {
		d := &rows[i]
		k := depKey{d.Certificate, d.Agent}
		if old := s.deps[k]; old != nil && old.ChangeSeq >= d.ChangeSeq {
			continue // older, or this very version read again
		}
		if d.Current != nil {
			d.Current.ChainPEM = s.chains.intern(d.Current.ChainPEM)
		}
		s.deps[k] = d
		delete(s.etags, d.Agent)
		changed = true
	}
	if changed {
		s.depsMoved = true
		s.gen++
	}
}

// reloadChallenges loads the published challenges into the snapshot and
// invalidates the ETag of every agent whose list changed. A failure is
// logged and reported as false: the next Refresh retries.
func (s *Snapshot) reloadChallenges(ctx context.Context) bool {
	rows, err := s.store.ACMEChallenges(ctx, s.now())
	if err != nil {
		s.log.Warn("agent API: load ACME challenges", "err", err)
		return false
	}
	next := map[string][]agentproto.Challenge{}
	for _, c := range rows {
		for _, a := range c.Agents {
			next[a] = append(next[a], agentproto.Challenge{Token: c.Token, KeyAuth: c.KeyAuth, Webroot: c.Webroot,
				Certificate: c.Certificate, Ready: slices.Contains(c.Ready, a)})
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for a, list := range next {
		if !slices.Equal(list, s.challenges[a]) {
			delete(s.etags, a)
			changed = true
		}
	}
	for a := range s.challenges {
		if _, ok := next[a]; !ok {
			delete(s.etags, a)
			changed = true
		}
	}
	if changed {
		s.challenges = next
		s.gen++
	}
	return true
}

// CertificateState is one certificate's readiness, for the metrics.
type CertificateState struct {
	Name string
	assign.Readiness
}

// certificateStates assesses every certificate of the snapshot, and
// returns the generation it read them at (see generation).
func (s *Snapshot) certificateStates(now time.Time) ([]CertificateState, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o := s.objs.Load() // under s.mu: loadObjects stores it and counts gen in one critical section
	out := make([]CertificateState, 0, len(o.certs))
	for name, c := range o.certs {
		r := assign.Assess(c.specHash, c.targets, func(agent string) *state.Deployment { return s.deps[depKey{name, agent}] }, now)
		out = append(out, CertificateState{Name: name, Readiness: r})
	}
	return out, s.gen
}

// generation counts the changes of what agents see: the objects, the
// deployments, the challenges, the bundles. Two equal generations mean
// the same certificate states, apart from the passing of time.
func (s *Snapshot) generation() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

// interner shares equal strings (every leaf of a CA has the same chain).
type interner struct {
	mu sync.Mutex
	m  map[string]string
}

func (in *interner) intern(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.m[s]; ok {
		return v
	}
	in.m[s] = s
	return s
}

// Run refreshes the snapshot every RefreshInterval until ctx ends. Requests
// get 503 until the first load.
func (s *Snapshot) Run(ctx context.Context) error {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		if err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("agent API: refresh snapshot", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Refresh brings the snapshot up to date with Postgres: the deployments
// written since the last refresh (one indexed query, usually empty), the
// challenges when their counter moved, and the objects after a new
// revision.
func (s *Snapshot) Refresh(ctx context.Context) error {
	revision, challengeSeq, err := s.store.AgentChanges(ctx)
	if err != nil {
		return err
	}
	// Deployments first: agents must never see an assignment without the
	// certificate already issued for it.
	s.mu.RLock()
	mark, loadedChallenges := s.mark, s.challengeSeq
	s.mu.RUnlock()
	rows, next, err := s.store.DeploymentsSince(ctx, mark)
	if err != nil {
		return err
	}
	s.applyDeployments(rows)
	s.mu.Lock()
	s.mark = max(s.mark, next)
	s.mu.Unlock()
	if challengeSeq != loadedChallenges && s.reloadChallenges(ctx) {
		s.mu.Lock()
		s.challengeSeq = challengeSeq
		s.mu.Unlock()
	}
	reloaded := false
	if o := s.objs.Load(); o == nil || o.revision != revision {
		if err := s.loadObjects(ctx, o); err != nil {
			return err
		}
		reloaded = true
	}
	s.mu.Lock()
	depsMoved := s.depsMoved
	s.depsMoved = false
	s.mu.Unlock()
	s.refreshBundles(s.objs.Load(), reloaded || depsMoved)
	return nil
}

// loadObjects brings the objects from o's revision (all of them when o is
// nil, or when the database went back to an earlier revision, as after a
// restore) to the newest one: it reads and decodes only what the
// revisions since wrote or deleted, and keeps the rest. Only the agents
// whose assignments may have changed lose their cached ETag.
func (s *Snapshot) loadObjects(ctx context.Context, o *objects) error {
	start := time.Now()
	var since int64
	if o != nil {
		since = o.revision
	}
	// The objects this process loaded come without their content: the
	// snapshot takes them from that State.
	shared := s.shared.Current()
	known := func(k spec.Key, hash string) bool { return shared.WithHash(k, hash) != nil }
	ch, err := s.store.AssignmentObjects(ctx, since, known)
	if err != nil {
		return err
	}
	if ch.Revision < since {
		o, since = nil, 0
		if ch, err = s.store.AssignmentObjects(ctx, 0, known); err != nil {
			return err
		}
	}
	if o == nil {
		o = &objects{}
	}
	n, errs := o.with(ch.Revision, ch.Objects, ch.Deleted, shared)
	for _, err := range errs {
		s.log.Warn("agent API: skipping object", "err", err)
	}
	if s.issuers != nil {
		s.issuers.Sync(n.issuerList())
	}
	s.mu.Lock()
	s.objs.Store(n)
	for name, a := range o.agents {
		if n.agents[name] != a {
			delete(s.etags, name)
		}
	}
	for name := range n.agents {
		if o.agents[name] == nil {
			delete(s.etags, name)
		}
	}
	s.gen++
	s.mu.Unlock()
	s.loadedOnce.Do(func() { close(s.loaded) })
	s.log.Debug("agent API: snapshot loaded", "revision", ch.Revision, "since", since, "written", len(ch.Objects),
		"deleted", len(ch.Deleted), "agents", len(n.agents), "certificates", len(n.certs), "took", time.Since(start))
	return nil
}
