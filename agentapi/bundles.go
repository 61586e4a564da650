package agentapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/alert"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
)

// Trust bundles: the TrustBundle objects are part of the immutable objects
// (spec and targets, retargeted like certificates); their content — the
// PEM computed from the sources — is part of the snapshot, recomputed when
// a source may have changed (see Snapshot.refreshBundles).

// bundleEntry is one TrustBundle of the objects.
type bundleEntry struct {
	spec    *spec.TrustBundleSpec
	targets []string // agents installing it, sorted
}

// bundleContent is a bundle's computed PEM and its hex SHA-256; an empty
// PEM (no source has a certificate yet) is not sent to agents.
type bundleContent struct {
	pem    string
	sha256 string
}

// CASource gives the CA certificates an issuer's certificates chain to: a
// local CA's certificate, an external or vault issuer's caBundleFile (nil
// for other issuers); *issuer.Registry implements it. NewSnapshot takes it
// from the IssuerSync when that implements it too.
type CASource interface {
	CACertificates(name string) []*x509.Certificate
}

// retargetBundles targets the touched bundles among the unchanged agents
// and returns the agents they leave or reach.
func (n *objects) retargetBundles(o *objects, touched map[string]bool) map[string]bool {
	moved := map[string]bool{}
	for name := range touched {
		if old := o.bundles[name]; old != nil {
			for _, a := range old.targets {
				moved[a] = true
			}
		}
		if b := n.bundles[name]; b != nil {
			b.targets = n.index.Targets(b.spec.Deploy.Targeting()) // a new entry: not shared yet
			for _, a := range b.targets {
				moved[a] = true
			}
		}
	}
	return moved
}

// bundlesOf is agent's bundle list: old less the touched bundles, plus the
// touched bundles that now target it.
func (n *objects) bundlesOf(agent string, old []string, touched map[string]bool) []string {
	out := slices.DeleteFunc(slices.Clone(old), func(b string) bool { return touched[b] })
	for name := range touched {
		if b := n.bundles[name]; b != nil {
			if _, ok := slices.BinarySearch(b.targets, agent); ok {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// bundleAssigned reports whether the bundle is assigned to agent.
func (o *objects) bundleAssigned(bundle, agent string) bool {
	b := o.bundles[bundle]
	if b == nil {
		return false
	}
	_, ok := slices.BinarySearch(b.targets, agent)
	return ok
}

// refreshBundles recomputes every bundle's content from its sources and
// invalidates the ETags of the agents of each bundle whose content
// changed. A local CA's certificate, and an external or vault issuer's
// caBundleFile, come from the CASource (a rotated file shows within a
// refresh); an ACME issuer's is the last certificate
// of the chain of the newest certificate issued through it, looked for
// among the deployments only when acme is true (objects or deployments
// changed), else the one found last time.
func (s *Snapshot) refreshBundles(o *objects, acme bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(o.bundles) == 0 && len(s.bundles) == 0 {
		return
	}
	if acme {
		s.acmeRoots = s.acmeRootsLocked(o)
	}
	next := make(map[string]bundleContent, len(o.bundles))
	changed := false
	for name, b := range o.bundles {
		c := s.bundleContentLocked(o, b.spec)
		next[name] = c
		if old, ok := s.bundles[name]; !ok || old != c {
			for _, a := range b.targets {
				delete(s.etags, a)
			}
			changed = true
		}
	}
	for name := range s.bundles {
		if _, ok := next[name]; !ok {
			changed = true // its agents lost it with the objects already
		}
	}
	if changed {
		s.bundles = next
		s.gen++
	}
}

// bundleContentLocked computes a bundle's PEM: each source's certificates
// in source order, each certificate (by DER) once.
func (s *Snapshot) bundleContentLocked(o *objects, b *spec.TrustBundleSpec) bundleContent {
	var buf bytes.Buffer
	seen := map[[sha256.Size]byte]bool{}
	add := func(der []byte) {
		sum := sha256.Sum256(der)
		if seen[sum] {
			return
		}
		seen[sum] = true
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	for _, src := range b.Sources {
		switch {
		case src.PEM != "":
			for _, der := range certificateBlocks(src.PEM) {
				add(der)
			}
		case src.Issuer != "":
			if s.cas != nil {
				if cs := s.cas.CACertificates(src.Issuer); len(cs) > 0 {
					for _, c := range cs {
						add(c.Raw)
					}
					continue
				}
			}
			if der := s.acmeRoots[src.Issuer]; der != nil {
				add(der)
			}
		}
	}
	if buf.Len() == 0 {
		return bundleContent{}
	}
	sum := sha256.Sum256(buf.Bytes())
	return bundleContent{pem: buf.String(), sha256: hex.EncodeToString(sum[:])}
}

// certificateBlocks returns the DER of every CERTIFICATE block of text
// (validated by spec when the revision was loaded).
func certificateBlocks(text string) [][]byte {
	var out [][]byte
	rest := []byte(text)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return out
		}
		if block.Type == "CERTIFICATE" {
			out = append(out, block.Bytes)
		}
	}
}

// acmeRootsLocked finds, for each ACME issuer a bundle names, the last
// certificate of the chain of the newest certificate issued through it.
func (s *Snapshot) acmeRootsLocked(o *objects) map[string][]byte {
	wanted := map[string]bool{}
	for _, b := range o.bundles {
		for _, src := range b.spec.Sources {
			if iss := o.issuers[src.Issuer]; iss != nil && iss.Issuer().ACME != nil {
				wanted[src.Issuer] = true
			}
		}
	}
	if len(wanted) == 0 {
		return nil
	}
	type newest struct {
		chain string
		at    int64
	}
	found := map[string]newest{}
	for name, c := range o.certs {
		if !wanted[c.spec.IssuerRef] {
			continue
		}
		for _, a := range c.targets {
			d := s.deps[depKey{name, a}]
			if d == nil || d.Current == nil || d.Current.ChainPEM == "" {
				continue
			}
			at := d.Current.NotBefore.Unix()
			// The newest; between equals, the same one on every refresh.
			if f, ok := found[c.spec.IssuerRef]; !ok || at > f.at || at == f.at && d.Current.ChainPEM < f.chain {
				found[c.spec.IssuerRef] = newest{d.Current.ChainPEM, at}
			}
		}
	}
	out := map[string][]byte{}
	for iss, f := range found {
		if blocks := certificateBlocks(f.chain); len(blocks) > 0 {
			out[iss] = blocks[len(blocks)-1]
		}
	}
	return out
}

// bundleAssignmentsLocked lists the agent's bundles that have content;
// s.mu is held (read).
func (s *Snapshot) bundleAssignmentsLocked(o *objects, ae *agentEntry) []agentproto.Bundle {
	var out []agentproto.Bundle
	for _, name := range ae.bundles {
		c := s.bundles[name]
		if c.pem == "" {
			continue
		}
		f := o.bundles[name].spec.Deploy.Files
		out = append(out, agentproto.Bundle{Name: name, PEM: c.pem, SHA256: c.sha256,
			Files:  agentproto.BundleFiles{Bundle: f.Bundle, Mode: f.Mode, Owner: f.Owner, Group: f.Group},
			Reload: o.bundles[name].spec.Deploy.Reload})
	}
	return out
}

// bundleReport takes a trust bundle's report (Report.Bundle set): checked
// like a certificate's (result, time, the bundle assigned to the agent),
// then logged, counted in the deployment metrics and, unless installed,
// announced as a failed deployment. It is not stored: the status API shows
// no bundle installs yet.
func (l *Ledger) bundleReport(agent string, rep agentproto.Report) error {
	switch {
	case rep.Certificate != "" || rep.Serial != "" || rep.SpecHash != "":
		return failure.New(failure.Invalid, "a bundle report has no certificate, specHash or serial")
	case !knownResult(rep.Result):
		return badResult()
	case rep.Result == agentproto.ResultInstalled && !isHex64(rep.SHA256):
		return failure.New(failure.Invalid, "an installed bundle report needs the bundle's sha256 (64 hex digits)")
	}
	if !l.snapshot.objs.Load().bundleAssigned(rep.Bundle, agent) {
		return failure.New(failure.NotFound, "trust bundle "+strconv.Quote(rep.Bundle)+" is not assigned to this agent")
	}
	at, err := reportTime("at", rep.At, l.now())
	if err != nil {
		return err
	}
	msg := reportMessage(rep)
	l.metrics.report(rep)
	if rep.Result == agentproto.ResultInstalled {
		l.log.Info("trust bundle installed", "bundle", rep.Bundle, "agent", agent, "sha256", rep.SHA256)
		return nil
	}
	l.log.Warn("trust bundle not installed", "bundle", rep.Bundle, "agent", agent, "result", rep.Result, "err", msg)
	l.events.Announce(alert.Alert{Name: alert.DeployFailed, Severity: alert.Warning,
		Subject:     "bundle/" + rep.Bundle + "@" + agent,
		Summary:     fmt.Sprintf("Trust bundle %s on %s %s", rep.Bundle, agent, rep.Result),
		Description: msg, Labels: map[string]string{"bundle": rep.Bundle, "agent": agent}, Since: at})
	return nil
}

func isHex64(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 64 && err == nil && s == strings.ToLower(s)
}
