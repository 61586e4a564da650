package review

import (
	"fmt"
	"slices"
	"strings"

	"github.com/certops/certops/spec"
)

// rateLimitWarnings warns when head makes more agents order certificates
// for one set of names from one ACME issuer than the issuer's
// certificates per name set per week (spec.ACMEIssuer
// .CertificatesPerNameSetPerWeek): every (certificate, agent) pair is its
// own order, so the orders beyond the limit wait, up to 7 days. The
// orders a change causes are those of its new certificates, of the
// certificates whose spec hash changed (every agent reissues), and of the
// agents a certificate newly targets. Certificates the CA issued in the
// last 7 days count too at the CA; plan cannot see them (the deployments'
// status can), so a warning is a lower bound.
//
// before and after are the certificates' effects at base and at head
// (hostEffects); head is the desired state at head.
func rateLimitWarnings(before, after map[string]hostEffect, head map[spec.Key]*spec.Object) []string {
	limits := map[string]int{}
	for k, o := range head {
		if k.Kind != spec.KindIssuer || o.Issuer().ACME == nil {
			continue
		}
		if n := o.Issuer().ACME.CertificatesPerNameSetPerWeek(); n > 0 {
			limits[k.Name] = n
		}
	}
	if len(limits) == 0 {
		return nil
	}
	type group struct {
		issuer, names string
		orders        int
		certs         []string // "Certificate/NAME (N agents)"
	}
	groups := map[[2]string]*group{}
	for name, e := range after {
		c := head[spec.Key{Kind: spec.KindCertificate, Name: name}].Certificate()
		limit := limits[c.IssuerRef]
		if limit == 0 || e.suspended {
			continue
		}
		ordering := e.agents
		if b, ok := before[name]; ok && b.specHash == e.specHash {
			ordering = nil // only the agents it newly targets
			for _, a := range e.agents {
				if !slices.Contains(b.agents, a) {
					ordering = append(ordering, a)
				}
			}
		}
		if len(ordering) == 0 {
			continue
		}
		key := [2]string{c.IssuerRef, c.NameSet()}
		g := groups[key]
		if g == nil {
			g = &group{issuer: c.IssuerRef, names: key[1]}
			groups[key] = g
		}
		g.orders += len(ordering)
		g.certs = append(g.certs, fmt.Sprintf("%s/%s (%s)", spec.KindCertificate, name, plural(len(ordering), "agent")))
	}
	var out []string
	for _, g := range groups {
		limit := limits[g.issuer]
		if g.orders <= limit {
			continue
		}
		slices.Sort(g.certs)
		out = append(out, fmt.Sprintf("issuer %s allows %d certificates per week for one set of names, and this change orders %d for %s "+
			"(%s): at least %d will wait for the CA's rate limit, up to 7 days (their status says "+
			"\"waiting for the CA's rate limit until …\"; certificates issued in the last 7 days count too). "+
			"Roll out in steps, or give each host its own names",
			g.issuer, limit, g.orders, g.names, strings.Join(g.certs, ", "), g.orders-limit))
	}
	slices.Sort(out)
	return out
}
