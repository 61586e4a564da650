package review

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/certops/certops/spec"
)

// Trust bundles in review: the host entries of TrustBundles (agents, the
// bundle path, reload, and "sources" when their CA certificates change),
// and a reviewer's summary of each committed PEM source instead of its
// base64.

// bundleEffect is what one trust bundle makes its agents do.
type bundleEffect struct {
	agents, paths, reload []string
	sources               string // the sources, canonical JSON
}

func bundleEffects(objs map[spec.Key]*spec.Object) map[string]bundleEffect {
	ix := spec.NewAgentIndex()
	for _, o := range objs {
		if o.Kind == spec.KindAgent {
			ix.Add(o.Name, o.Labels)
		}
	}
	out := map[string]bundleEffect{}
	for _, o := range objs {
		b := o.TrustBundle()
		if b == nil {
			continue
		}
		sources, _ := spec.CanonicalJSON(b.Sources)
		out[o.Name] = bundleEffect{agents: ix.Targets(b.Deploy.Targeting()), paths: []string{b.Deploy.Files.Bundle},
			reload: b.Deploy.Reload, sources: string(sources)}
	}
	return out
}

// bundleChanges lists, by name, the trust bundles of head whose sources,
// file, reload or agents differ from base (all of them for new ones).
func bundleChanges(base, head map[spec.Key]*spec.Object) []HostChange {
	before, after := bundleEffects(base), bundleEffects(head)
	var out []HostChange
	for _, name := range slices.Sorted(maps.Keys(after)) {
		e := after[name]
		var changed []string
		if b, ok := before[name]; !ok {
			changed = []string{"new"}
		} else {
			changed = placementChanges(b.agents, e.agents, b.paths, e.paths, b.reload, e.reload)
			if b.sources != e.sources {
				changed = append(changed, "sources")
			}
		}
		if len(changed) == 0 {
			continue
		}
		out = append(out, HostChange{Bundle: name, Agents: nonNil(e.agents), Paths: nonNil(e.paths),
			Reload: nonNil(e.reload), Changed: changed})
	}
	return out
}

// summarizePEMSources replaces each spec.sources[i].pem leaf by what a
// reviewer checks: per certificate its subject, SHA-256 fingerprint and
// end of validity.
func summarizePEMSources(leaves map[string]leaf) {
	for p, l := range leaves {
		if !strings.HasPrefix(p, "spec.sources[") || !strings.HasSuffix(p, "].pem") {
			continue
		}
		var text string
		if err := json.Unmarshal([]byte(l.value), &text); err != nil {
			continue
		}
		l.value = renderJSON(describePEM(text))
		leaves[p] = l
	}
}

// describePEM is "CN=Root (SHA-256 ab…, until 2036-01-01); …" for the
// certificates of text.
func describePEM(text string) string {
	var parts []string
	rest := []byte(text)
	for {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			parts = append(parts, "("+block.Type+" block that does not parse)")
			continue
		}
		sum := sha256.Sum256(c.Raw)
		parts = append(parts, fmt.Sprintf("%s (SHA-256 %s, until %s)", c.Subject, hex.EncodeToString(sum[:]), c.NotAfter.UTC().Format("2006-01-02")))
	}
	if len(parts) == 0 {
		return "(no certificate)"
	}
	return strings.Join(parts, "; ")
}
