package review

import (
	"slices"

	"github.com/certops/certops/assign"
	"github.com/certops/certops/spec"
)

// HostChange is what a certificate makes its agents write and run, when that
// changes between base and head: the files, the reload argv, the agents,
// whether they get new certificates (reissue) and whether the certificate
// is suspended or resumed.
// It is the reviewer's view of what a merge does on the hosts (where each
// agent's host policy has the last word; `certops validate` cannot see it).
type HostChange struct {
	// Certificate or Bundle names the object: a Certificate, or a
	// TrustBundle (whose Paths is its bundle file).
	Certificate string   `json:"certificate,omitempty"`
	Bundle      string   `json:"bundle,omitempty"`
	Agents      []string `json:"agents"` // the agents deploying it at head, sorted
	Paths       []string `json:"paths"`  // the files written, at head
	Reload      []string `json:"reload"` // the argv run after an install, at head
	// Changed lists what differs from base: "new", or any of "agents",
	// "paths", "reload", "reissue" (the agents at head get a new
	// certificate: spec.reissue or another field of the spec hash changed),
	// "suspend", "resume"; for a bundle, "sources" (its CA certificates
	// change: the agents install a new bundle and reload).
	Changed []string `json:"changed"`
}

// Title names the object the entry is about: Certificate/NAME or
// TrustBundle/NAME.
func (h HostChange) Title() string {
	if h.Bundle != "" {
		return string(spec.KindTrustBundle) + "/" + h.Bundle
	}
	return string(spec.KindCertificate) + "/" + h.Certificate
}

// hostEffect is what one certificate makes its agents do.
type hostEffect struct {
	agents, paths, reload []string
	specHash              string
	suspended             bool
}

// hostEffects computes every certificate's effect on the hosts in a state.
func hostEffects(objs map[spec.Key]*spec.Object) map[string]hostEffect {
	ix := spec.NewAgentIndex()
	for _, o := range objs {
		if o.Kind == spec.KindAgent {
			ix.Add(o.Name, o.Labels)
		}
	}
	out := map[string]hostEffect{}
	for _, o := range objs {
		c := o.Certificate()
		if c == nil || c.Deploy == nil {
			continue
		}
		f := c.Deploy.Files
		var paths []string
		for _, p := range []string{f.Cert, f.Chain, f.Fullchain, f.Key, f.Combined, f.DER, f.PKCS12, f.JKS} {
			if p != "" {
				paths = append(paths, p)
			}
		}
		out[o.Name] = hostEffect{agents: ix.Targets(c.Deploy), paths: paths, reload: c.Deploy.Reload,
			specHash: assign.SpecHash(c), suspended: c.Suspend}
	}
	return out
}

// hostChanges lists, by certificate name, the certificates whose files,
// reload or agents differ between the effects before (base's) and after
// (head's), all of them for new ones, then likewise the trust bundles of
// base and head.
func hostChanges(before, after map[string]hostEffect, base, head map[spec.Key]*spec.Object) []HostChange {
	out := []HostChange{}
	for name, e := range after {
		var changed []string
		if b, ok := before[name]; !ok {
			changed = []string{"new"}
		} else {
			changed = placementChanges(b.agents, e.agents, b.paths, e.paths, b.reload, e.reload)
			if b.specHash != e.specHash {
				changed = append(changed, "reissue")
			}
			switch {
			case !b.suspended && e.suspended:
				changed = append(changed, "suspend")
			case b.suspended && !e.suspended:
				changed = append(changed, "resume")
			}
		}
		if len(changed) == 0 {
			continue
		}
		out = append(out, HostChange{Certificate: name, Agents: nonNil(e.agents), Paths: nonNil(e.paths),
			Reload: nonNil(e.reload), Changed: changed})
	}
	slices.SortFunc(out, func(a, b HostChange) int {
		switch {
		case a.Certificate < b.Certificate:
			return -1
		case a.Certificate > b.Certificate:
			return 1
		}
		return 0
	})
	return append(out, bundleChanges(base, head)...)
}

// placementChanges names what differs between two placements of an object
// on the hosts: "agents", "paths", "reload" (certificates and trust bundles
// alike).
func placementChanges(bAgents, eAgents, bPaths, ePaths, bReload, eReload []string) []string {
	var changed []string
	if !slices.Equal(bAgents, eAgents) {
		changed = append(changed, "agents")
	}
	if !slices.Equal(bPaths, ePaths) {
		changed = append(changed, "paths")
	}
	if !slices.Equal(bReload, eReload) {
		changed = append(changed, "reload")
	}
	return changed
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
