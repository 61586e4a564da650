package assign

import (
	"slices"

	"github.com/certops/certops/spec"
)

// Index finds the agents a deploy block targets among a set of agents,
// without visiting every agent for a selector.
type Index struct {
	labels  map[string]map[string]string // agent → labels
	byLabel map[string][]string          // "key=value" → agents carrying it
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{labels: map[string]map[string]string{}, byLabel: map[string][]string{}}
}

// Add adds an agent with its labels. Adding the same agent twice is a bug.
func (ix *Index) Add(agent string, labels map[string]string) {
	ix.labels[agent] = labels
	for k, v := range labels {
		ix.byLabel[k+"="+v] = append(ix.byLabel[k+"="+v], agent)
	}
}

// Has reports whether the agent is in the index.
func (ix *Index) Has(agent string) bool {
	_, ok := ix.labels[agent]
	return ok
}

// Len is the number of agents in the index.
func (ix *Index) Len() int { return len(ix.labels) }

// Targets lists, sorted and without duplicates, the indexed agents the
// deploy block selects (see spec.Deployment.Selects).
func (ix *Index) Targets(d *spec.Deployment) []string {
	if d == nil {
		return nil
	}
	var candidates []string
	for _, a := range d.Agents {
		if ix.Has(a) {
			candidates = append(candidates, a)
		}
	}
	if sel := d.AgentSelector; sel != nil && len(sel.MatchLabels) > 0 {
		// The agents carrying the rarest of the selector's labels.
		var fewest []string
		first := true
		for k, v := range sel.MatchLabels {
			if l := ix.byLabel[k+"="+v]; first || len(l) < len(fewest) {
				fewest, first = l, false
			}
		}
		candidates = append(candidates, fewest...)
	}
	var out []string
	for _, a := range candidates {
		if d.Selects(a, ix.labels[a]) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
