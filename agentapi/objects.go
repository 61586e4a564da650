package agentapi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
)

// objects is the applied desired state as the agent API needs it, as of
// one revision. It is immutable: with makes the next revision's from the
// objects that changed, sharing every entry that did not.
type objects struct {
	revision int64
	tokens   map[[sha256.Size]byte]string // SHA-256 of a token → agent name
	agents   map[string]*agentEntry
	certs    map[string]*certEntry
	issuers  map[string]*spec.Object
	bundles  map[string]*bundleEntry // TrustBundles (see bundles.go)
	index    *assign.Index           // the agents, for targeting
}

type agentEntry struct {
	labels    map[string]string
	token     [sha256.Size]byte // the decoded tokenSHA256
	suspended bool              // spec.suspend: its assignments are frozen
	certs     []string          // assigned certificates, sorted
	bundles   []string          // assigned trust bundles, sorted
}

type certEntry struct {
	spec     *spec.CertificateSpec
	specHash string
	targets  []string // agents deploying it, sorted
}

// assignment is the part of the certificate's assignment common to every
// agent (made when asked: kept for every certificate it would double the
// snapshot).
func (c *certEntry) assignment(name string) agentproto.Assignment {
	a := baseAssignment(name, c.spec)
	a.SpecHash = c.specHash
	return a
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

// suspension says why nothing may be issued or deployed for cert on
// agent: the certificate or the agent is suspended (spec.suspend); "" when
// neither is.
func (o *objects) suspension(cert, agent string) string {
	switch {
	case o.certs[cert] != nil && o.certs[cert].spec.Suspend:
		return "certificate " + cert + " is suspended (spec.suspend); remove the field to resume it"
	case o.agents[agent] != nil && o.agents[agent].suspended:
		return "agent " + agent + " is suspended (spec.suspend); remove the field to resume it"
	}
	return ""
}

// issuerList returns the Issuer objects, by name.
func (o *objects) issuerList() []*spec.Object {
	return slices.SortedFunc(maps.Values(o.issuers), func(a, b *spec.Object) int { return strings.Compare(a.Name, b.Name) })
}

// with returns the objects of revision: o's, less deleted, with written
// added or replaced (rows that do not decode are skipped and returned as
// errors; the reconciler only stores validated specs). Entries nothing
// changed are shared with o. When no Agent changed, only the certificates
// written or deleted are targeted again and only their agents' entries are
// rebuilt; otherwise every certificate is targeted again (from its decoded
// spec: nothing is decoded or hashed again).
//
// A written row whose object shared holds with the same hash takes that
// object instead of decoding its own copy (rows that came without their
// content must be there).
func (o *objects) with(revision int64, written []store.AssignmentObject, deleted []spec.Key, shared *spec.State) (*objects, []error) {
	n := &objects{revision: revision, tokens: o.tokens, agents: o.agents, index: o.index,
		certs: maps.Clone(o.certs), issuers: maps.Clone(o.issuers), bundles: maps.Clone(o.bundles)}
	if n.certs == nil {
		n.certs, n.issuers = map[string]*certEntry{}, map[string]*spec.Object{}
	}
	if n.bundles == nil {
		n.bundles = map[string]*bundleEntry{}
	}
	var errs []error
	var agents map[string]*agentEntry // the new agent set, when an Agent changed
	changeAgents := func() {
		if agents == nil {
			agents = make(map[string]*agentEntry, len(o.agents))
			for name, a := range o.agents {
				agents[name] = &agentEntry{labels: a.labels, token: a.token, suspended: a.suspended}
			}
		}
	}
	if o.index == nil {
		changeAgents() // the first load: the agent set is new
	}
	touched := map[string]bool{}        // certificates written or deleted
	touchedBundles := map[string]bool{} // trust bundles written or deleted
	drop := func(k spec.Key) {
		switch k.Kind {
		case spec.KindIssuer:
			delete(n.issuers, k.Name)
		case spec.KindAgent:
			changeAgents()
			delete(agents, k.Name)
		case spec.KindCertificate:
			delete(n.certs, k.Name)
			touched[k.Name] = true
		case spec.KindTrustBundle:
			delete(n.bundles, k.Name)
			touchedBundles[k.Name] = true
		}
	}
	for _, k := range deleted {
		drop(k)
	}
	for i, r := range resolve(written, shared) {
		row, obj := written[i], r.obj
		if r.err != nil { // skipped: whatever o had under that name goes too
			errs = append(errs, r.err)
			drop(spec.Key{Kind: row.Kind, Name: row.Name})
			continue
		}
		switch sp := obj.Spec.(type) {
		case *spec.IssuerSpec:
			n.issuers[row.Name] = obj
		case *spec.AgentSpec:
			changeAgents()
			a := &agentEntry{labels: obj.Labels, suspended: sp.Suspend}
			if k, err := hex.Decode(a.token[:], []byte(sp.TokenSHA256)); err != nil || k != sha256.Size {
				errs = append(errs, fmt.Errorf("agent %s: tokenSHA256 is not 64 hex digits", row.Name))
				drop(spec.Key{Kind: row.Kind, Name: row.Name})
				continue
			}
			agents[row.Name] = a
		case *spec.CertificateSpec:
			n.certs[row.Name] = &certEntry{spec: sp, specHash: r.specHash}
			touched[row.Name] = true
		case *spec.TrustBundleSpec:
			n.bundles[row.Name] = &bundleEntry{spec: sp}
			touchedBundles[row.Name] = true
		}
	}
	if agents != nil {
		errs = append(errs, n.setAgents(agents)...)
		return n, errs
	}
	n.retarget(o, touched, touchedBundles)
	return n, errs
}

// resolved is a written row's object (shared or decoded) and, for a
// certificate, its spec hash; or why it could not be decoded.
type resolved struct {
	obj      *spec.Object
	specHash string
	err      error
}

// resolve takes each row's object from shared or decodes it, and hashes
// certificate specs, on one goroutine per CPU for many rows (a replica's
// first load decodes every object).
func resolve(rows []store.AssignmentObject, shared *spec.State) []resolved {
	out := make([]resolved, len(rows))
	one := func(i int) {
		row := rows[i]
		r := &out[i]
		if r.obj = shared.WithHash(spec.Key{Kind: row.Kind, Name: row.Name}, row.Hash); r.obj == nil {
			if r.obj, r.err = row.Decode(); r.err != nil {
				return
			}
		}
		if c := r.obj.Certificate(); c != nil {
			r.specHash = assign.SpecHash(c)
		}
	}
	const chunk = 512
	if len(rows) <= chunk {
		for i := range rows {
			one(i)
		}
		return out
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for start := range next {
				for i := start; i < min(start+chunk, len(rows)); i++ {
					one(i)
				}
			}
		})
	}
	for start := 0; start < len(rows); start += chunk {
		next <- start
	}
	close(next)
	wg.Wait()
	return out
}

// setAgents makes agents (with empty certificate lists) the agent set:
// tokens, the targeting index, every certificate's targets and every
// agent's certificates are made anew.
func (n *objects) setAgents(agents map[string]*agentEntry) []error {
	var errs []error
	n.agents, n.tokens, n.index = agents, map[[sha256.Size]byte]string{}, assign.NewIndex()
	shared := map[[sha256.Size]byte]bool{} // token hashes of more than one agent
	for _, name := range slices.Sorted(maps.Keys(agents)) {
		a := agents[name]
		n.index.Add(name, a.labels)
		// A token shared by two agents would let either act as the other:
		// it authenticates neither.
		if other, dup := n.tokens[a.token]; dup || shared[a.token] {
			if dup {
				errs = append(errs, fmt.Errorf("agents %s and %s have the same tokenSHA256: neither is let in until each has its own token", other, name))
			} else {
				errs = append(errs, fmt.Errorf("agent %s shares its tokenSHA256 with other agents: it is not let in until it has its own token", name))
			}
			delete(n.tokens, a.token)
			shared[a.token] = true
			continue
		}
		n.tokens[a.token] = name
	}
	for _, name := range slices.Sorted(maps.Keys(n.certs)) {
		c := n.certs[name]
		if targets := n.index.Targets(c.spec.Deploy); !slices.Equal(targets, c.targets) {
			c = &certEntry{spec: c.spec, specHash: c.specHash, targets: targets}
			n.certs[name] = c
		}
		for _, a := range c.targets {
			n.agents[a].certs = append(n.agents[a].certs, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(n.bundles)) {
		b := n.bundles[name]
		if targets := n.index.Targets(b.spec.Deploy.Targeting()); !slices.Equal(targets, b.targets) {
			b = &bundleEntry{spec: b.spec, targets: targets}
			n.bundles[name] = b
		}
		for _, a := range b.targets {
			n.agents[a].bundles = append(n.agents[a].bundles, name)
		}
	}
	return errs
}

// retarget targets the touched certificates and trust bundles (written or
// deleted since o) among the unchanged agents, and rebuilds the entries of
// the agents they leave or reach.
func (n *objects) retarget(o *objects, touched, touchedBundles map[string]bool) {
	moved := n.retargetBundles(o, touchedBundles) // agents whose lists may change
	for name := range touched {
		if old := o.certs[name]; old != nil {
			for _, a := range old.targets {
				moved[a] = true
			}
		}
		if c := n.certs[name]; c != nil {
			c.targets = n.index.Targets(c.spec.Deploy) // a new entry: not shared yet
			for _, a := range c.targets {
				moved[a] = true
			}
		}
	}
	if len(moved) == 0 {
		return
	}
	n.agents = maps.Clone(o.agents)
	for a := range moved {
		old := o.agents[a]
		certs := slices.DeleteFunc(slices.Clone(old.certs), func(c string) bool { return touched[c] })
		for name := range touched {
			if _, ok := n.assigned(name, a); ok {
				certs = append(certs, name)
			}
		}
		slices.Sort(certs)
		n.agents[a] = &agentEntry{labels: old.labels, token: old.token, suspended: old.suspended, certs: certs,
			bundles: n.bundlesOf(a, old.bundles, touchedBundles)}
	}
}

// baseAssignment is the part of an assignment common to every agent
// (SpecHash is set by the caller).
func baseAssignment(name string, c *spec.CertificateSpec) agentproto.Assignment {
	a := agentproto.Assignment{
		Name: name, CommonName: c.CommonName, DNSNames: c.DNSNames,
		IPAddresses: c.IPAddresses, URIs: c.URIs, EmailAddresses: c.EmailAddresses,
		Key:     agentproto.KeySpec{Algorithm: c.PrivateKey.Algorithm, Size: c.PrivateKey.Size, RotationPolicy: c.PrivateKey.RotationPolicy},
		Reissue: c.Reissue, Suspended: c.Suspend,
	}
	if d := c.Deploy; d != nil {
		f := d.Files
		a.Files = agentproto.Files{Cert: f.Cert, Chain: f.Chain, Fullchain: f.Fullchain, Key: f.Key,
			Combined: f.Combined, DER: f.DER,
			PKCS12: f.PKCS12, PKCS12PasswordFile: f.PKCS12PasswordFile, PKCS12FriendlyName: f.PKCS12FriendlyName,
			JKS: f.JKS, JKSPasswordFile: f.JKSPasswordFile, JKSAlias: f.JKSAlias,
			Mode: f.Mode, Owner: f.Owner, Group: f.Group, Layout: f.Layout}
		a.Reload = d.Reload
		if d.Verify != nil {
			a.Verify = &agentproto.Verify{Address: d.Verify.Address, ServerName: d.Verify.ServerName}
		}
	}
	return a
}
