package spec

import "slices"

// AgentIndex finds the agents a deploy block targets among a set of agents
// without visiting every agent for a selector; Deployment.Selects decides.
// The whole-revision validation, the agent API's snapshot and the read API
// all target through it.
type AgentIndex struct {
	labels  map[string]map[string]string // agent → labels
	byLabel map[string][]string          // "key=value" → agents carrying it, in the order added
}

// NewAgentIndex returns an empty index.
func NewAgentIndex() *AgentIndex {
	return &AgentIndex{labels: map[string]map[string]string{}, byLabel: map[string][]string{}}
}

// Add adds an agent with its labels. Adding the same agent twice is a bug.
func (ix *AgentIndex) Add(agent string, labels map[string]string) {
	ix.labels[agent] = labels
	for k, v := range labels {
		ix.byLabel[k+"="+v] = append(ix.byLabel[k+"="+v], agent)
	}
}

// Has reports whether the agent is in the index.
func (ix *AgentIndex) Has(agent string) bool {
	_, ok := ix.labels[agent]
	return ok
}

// Len is the number of agents in the index.
func (ix *AgentIndex) Len() int { return len(ix.labels) }

// Targets lists, sorted and without duplicates, the indexed agents the
// deploy block selects (see Deployment.Selects).
func (ix *AgentIndex) Targets(d *Deployment) []string {
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
