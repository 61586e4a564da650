package state

import "github.com/certops/certops/spec"

// Action is what a plan does to one object.
type Action string

// The actions of a plan.
const (
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
)

// Change is one planned action. Object is nil for deletes.
type Change struct {
	Action  Action       `json:"action"`
	Key     spec.Key     `json:"key"`
	Object  *spec.Object `json:"-"`
	OldHash string       `json:"oldHash,omitempty"`
	NewHash string       `json:"newHash,omitempty"`
}

// Plan is the ordered list of changes that turns the stored state into the desired one.
type Plan struct {
	Changes []Change `json:"changes"`
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Changes) == 0 }

// Counts are per-kind numbers of creates, updates and deletes.
type Counts struct {
	Create int `json:"create"`
	Update int `json:"update"`
	Delete int `json:"delete"`
}

// Counts tallies the plan per kind.
func (p Plan) Counts() map[spec.Kind]Counts {
	out := map[spec.Kind]Counts{}
	for _, c := range p.Changes {
		n := out[c.Key.Kind]
		switch c.Action {
		case ActionCreate:
			n.Create++
		case ActionUpdate:
			n.Update++
		case ActionDelete:
			n.Delete++
		}
		out[c.Key.Kind] = n
	}
	return out
}

// Applied returns the stored hashes (kind/name → content hash) as they are
// after the plan is applied to stored. stored is not modified.
func (p Plan) Applied(stored map[spec.Key]string) map[spec.Key]string {
	out := make(map[spec.Key]string, len(stored)+len(p.Changes))
	for k, v := range stored {
		out[k] = v
	}
	for _, c := range p.Changes {
		if c.Action == ActionDelete {
			delete(out, c.Key)
		} else {
			out[c.Key] = c.NewHash
		}
	}
	return out
}
