package reconcile

import (
	"sort"

	"github.com/certops/certops/spec"
)

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

// Compute is the plan: a pure function of the desired objects and the stored
// content hashes (kind/name → hash). Objects whose hash matches are left alone.
// Creates and updates come in apply order (issuers before certificates);
// deletes come last, in reverse order.
func Compute(desired map[spec.Key]*spec.Object, stored map[spec.Key]string) Plan {
	var upserts, deletes []Change
	for k, o := range desired {
		h := o.Hash()
		old, ok := stored[k]
		switch {
		case !ok:
			upserts = append(upserts, Change{Action: ActionCreate, Key: k, Object: o, NewHash: h})
		case old != h:
			upserts = append(upserts, Change{Action: ActionUpdate, Key: k, Object: o, OldHash: old, NewHash: h})
		}
	}
	for k, h := range stored {
		if _, ok := desired[k]; !ok {
			deletes = append(deletes, Change{Action: ActionDelete, Key: k, OldHash: h})
		}
	}
	sort.Slice(upserts, func(i, j int) bool { return spec.KeyLess(upserts[i].Key, upserts[j].Key) })
	sort.Slice(deletes, func(i, j int) bool { return spec.KeyLess(deletes[j].Key, deletes[i].Key) })
	return Plan{Changes: append(upserts, deletes...)}
}
