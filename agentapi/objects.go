package agentapi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/spec"
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
		a.Files = agentproto.Files{Cert: f.Cert, Chain: f.Chain, Fullchain: f.Fullchain, Key: f.Key, Mode: f.Mode, Owner: f.Owner, Group: f.Group, Layout: f.Layout}
		a.Reload = d.Reload
		if d.Verify != nil {
			a.Verify = &agentproto.Verify{Address: d.Verify.Address, ServerName: d.Verify.ServerName}
		}
	}
	return a
}
