package assign

import "github.com/certops/certops/spec"

// Index finds the agents a deploy block targets among a set of agents; it
// is spec.AgentIndex, the index the whole-revision validation targets with,
// so that validation and deployment agree by construction. The rule itself
// is spec.Deployment.Selects.
type Index = spec.AgentIndex

// NewIndex returns an empty index.
func NewIndex() *Index { return spec.NewAgentIndex() }
