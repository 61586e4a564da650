package agentapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// objects is the applied desired state as the agent API needs it, built
// from one revision. It is immutable.
type objects struct {
	revision int64
	tokens   map[[sha256.Size]byte]string // SHA-256 of a token → agent name
	agents   map[string]*agentEntry
	certs    map[string]*certEntry
}

type agentEntry struct {
	labels map[string]string
	certs  []string // assigned certificates, sorted
}

type certEntry struct {
	spec     *spec.CertificateSpec
	specHash string
	base     agentproto.Assignment // without the per-agent fields
	targets  []string              // agents deploying it, sorted
}

// assigned returns the certificate if it is assigned to agent.
func (o *objects) assigned(cert, agent string) (*certEntry, bool) {
	c := o.certs[cert]
	if c == nil {
		return nil, false
	}
	_, ok := slices.BinarySearch(c.targets, agent)
	return c, ok
}

// buildObjects indexes the Agent and Certificate objects of a revision and
// returns its Issuer objects. Objects that do not decode are skipped and logged by the caller (the
// reconciler only stores validated specs).
func buildObjects(revision int64, rows []store.AssignmentObject) (*objects, []*spec.Object, []error) {
	o := &objects{revision: revision, tokens: map[[sha256.Size]byte]string{},
		agents: map[string]*agentEntry{}, certs: map[string]*certEntry{}}
	var errs []error
	var issuers []*spec.Object
	index := assign.NewIndex() // the agents, for targeting
	var certNames []string
	shared := map[[sha256.Size]byte]bool{} // token hashes of more than one agent
	for _, row := range rows {
		obj, err := row.Decode()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch sp := obj.Spec.(type) {
		case *spec.IssuerSpec:
			issuers = append(issuers, obj)
		case *spec.AgentSpec:
			var sum [sha256.Size]byte
			if n, err := hex.Decode(sum[:], []byte(sp.TokenSHA256)); err != nil || n != sha256.Size {
				errs = append(errs, fmt.Errorf("agent %s: tokenSHA256 is not 64 hex digits", row.Name))
				continue
			}
			// A token shared by two agents would let either act as the
			// other: it authenticates neither.
			if other, dup := o.tokens[sum]; dup || shared[sum] {
				if dup {
					errs = append(errs, fmt.Errorf("agents %s and %s have the same tokenSHA256: neither is let in until each has its own token", other, row.Name))
				} else {
					errs = append(errs, fmt.Errorf("agent %s shares its tokenSHA256 with other agents: it is not let in until it has its own token", row.Name))
				}
				delete(o.tokens, sum)
				shared[sum] = true
			} else {
				o.tokens[sum] = row.Name
			}
			o.agents[row.Name] = &agentEntry{labels: row.Labels}
			index.Add(row.Name, row.Labels)
		case *spec.CertificateSpec:
			base := baseAssignment(row.Name, sp)
			base.SpecHash = assign.SpecHash(sp)
			o.certs[row.Name] = &certEntry{spec: sp, specHash: base.SpecHash, base: base}
			certNames = append(certNames, row.Name)
		}
	}
	slices.Sort(certNames)
	for _, name := range certNames {
		c := o.certs[name]
		c.targets = index.Targets(c.spec.Deploy)
		for _, a := range c.targets {
			o.agents[a].certs = append(o.agents[a].certs, name)
		}
	}
	return o, issuers, errs
}

// baseAssignment is the part of an assignment common to every agent
// (SpecHash is set by the caller).
func baseAssignment(name string, c *spec.CertificateSpec) agentproto.Assignment {
	a := agentproto.Assignment{
		Name: name, CommonName: c.CommonName, DNSNames: c.DNSNames,
		IPAddresses: c.IPAddresses, URIs: c.URIs, EmailAddresses: c.EmailAddresses,
		Key: agentproto.KeySpec{Algorithm: c.PrivateKey.Algorithm, Size: c.PrivateKey.Size, RotationPolicy: c.PrivateKey.RotationPolicy},
	}
	if d := c.Deploy; d != nil {
		f := d.Files
		a.Files = agentproto.Files{Cert: f.Cert, Chain: f.Chain, Fullchain: f.Fullchain, Key: f.Key, Mode: f.Mode, Owner: f.Owner, Group: f.Group}
		a.Reload = d.Reload
		if d.Verify != nil {
			a.Verify = &agentproto.Verify{Address: d.Verify.Address, ServerName: d.Verify.ServerName}
		}
	}
	return a
}

// assignmentsLocked builds an agent's assignments; s.mu is held (read).
func (s *Server) assignmentsLocked(o *objects, agent string) agentproto.Assignments {
	out := agentproto.Assignments{Agent: agent, Certificates: []agentproto.Assignment{}}
	ae := o.agents[agent]
	if ae == nil {
		return out
	}
	for _, name := range ae.certs {
		c := o.certs[name]
		a := c.base
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
	out.Challenges = s.challenges[agent]
	return out
}

// deployment returns the in-memory deployment of cert on agent, or nil.
func (s *Server) deployment(cert, agent string) *state.Deployment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.deps[depKey{cert, agent}]
}

// applyDeployments merges rows read from or written to Postgres into the
// snapshot, keeping the newer of two versions of a row, and invalidates the
// cached ETag of every agent concerned.
func (s *Server) applyDeployments(rows []state.Deployment) {
	if len(rows) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range rows {
		d := &rows[i]
		k := depKey{d.Certificate, d.Agent}
		if old := s.deps[k]; old != nil && old.ChangeSeq > d.ChangeSeq {
			continue
		}
		if d.Current != nil {
			d.Current.ChainPEM = s.chains.intern(d.Current.ChainPEM)
		}
		s.deps[k] = d
		delete(s.etags, d.Agent)
	}
	s.gen++
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

// Run keeps the snapshot fresh and flushes agent liveness until ctx ends,
// then flushes one last time. Requests get 503 until the first load.
func (s *Server) Run(ctx context.Context) error {
	refresh := time.NewTicker(s.cfg.RefreshInterval)
	defer refresh.Stop()
	flush := time.NewTicker(s.cfg.FlushInterval)
	defer flush.Stop()
	for {
		if err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("agent API: refresh snapshot", "err", err)
		}
		select {
		case <-ctx.Done():
			s.stopBackground()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := s.Flush(fctx); err != nil {
				s.log.Warn("agent API: final flush of agent liveness", "err", err)
			}
			return nil
		case <-refresh.C:
		case <-flush.C:
			if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("agent API: flush agent liveness", "err", err)
			}
		}
	}
}

// Refresh brings the snapshot up to date with Postgres: one query when
// nothing changed; the objects are reloaded after a new revision, and the
// deployments changed since the last refresh are loaded.
func (s *Server) Refresh(ctx context.Context) error {
	revision, seq, err := s.store.AgentChanges(ctx)
	if err != nil {
		return err
	}
	// Deployments first: agents must never see an assignment without the
	// certificate already issued for it.
	s.mu.RLock()
	loaded := s.seq
	s.mu.RUnlock()
	if seq != loaded {
		rows, now, err := s.store.DeploymentsSince(ctx, loaded)
		if err != nil {
			return err
		}
		s.applyDeployments(rows)
		s.reloadChallenges(ctx)
		s.mu.Lock()
		s.seq = max(s.seq, now)
		s.mu.Unlock()
	}
	if o := s.objs.Load(); o == nil || o.revision != revision {
		return s.reloadObjects(ctx)
	}
	return nil
}

func (s *Server) reloadObjects(ctx context.Context) error {
	start := time.Now()
	revision, rows, err := s.store.AssignmentObjects(ctx)
	if err != nil {
		return err
	}
	o, issuers, errs := buildObjects(revision, rows)
	for _, err := range errs {
		s.log.Warn("agent API: skipping object", "err", err)
	}
	if s.issuers != nil {
		s.issuers.Sync(issuers)
	}
	s.mu.Lock()
	s.objs.Store(o)
	clear(s.etags)
	s.gen++
	s.mu.Unlock()
	s.log.Debug("agent API: snapshot loaded", "revision", revision, "agents", len(o.agents),
		"certificates", len(o.certs), "took", time.Since(start))
	return nil
}
