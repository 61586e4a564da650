package reconcile

import (
	"sort"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// Compute is the plan: a pure function of the desired objects and the stored
// content hashes (kind/name → hash). Objects whose hash matches are left alone.
// Creates and updates come in apply order (issuers before certificates);
// deletes come last, in reverse order.
func Compute(desired map[spec.Key]*spec.Object, stored map[spec.Key]string) state.Plan {
	var upserts, deletes []state.Change
	for k, o := range desired {
		h := o.Hash()
		old, ok := stored[k]
		switch {
		case !ok:
			upserts = append(upserts, state.Change{Action: state.ActionCreate, Key: k, Object: o, NewHash: h})
		case old != h:
			upserts = append(upserts, state.Change{Action: state.ActionUpdate, Key: k, Object: o, OldHash: old, NewHash: h})
		}
	}
	for k, h := range stored {
		if _, ok := desired[k]; !ok {
			deletes = append(deletes, state.Change{Action: state.ActionDelete, Key: k, OldHash: h})
		}
	}
	sort.Slice(upserts, func(i, j int) bool { return spec.KeyLess(upserts[i].Key, upserts[j].Key) })
	sort.Slice(deletes, func(i, j int) bool { return spec.KeyLess(deletes[j].Key, deletes[i].Key) })
	return state.Plan{Changes: append(upserts, deletes...)}
}
