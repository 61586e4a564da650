package state

import "github.com/certops/certops/spec"

// Result sorts the outcome of one reconcile, as counted in
// certops_reconcile_total.
type Result string

// The results of a reconcile.
const (
	ResultSuccess   Result = "success"   // a revision was applied (or drift repaired)
	ResultUnchanged Result = "unchanged" // nothing new; next interval
	ResultStalled   Result = "stalled"   // needs a human: invalid revision, prune guard
	ResultTransient Result = "transient" // fetch or database trouble; retry with backoff
)

// Outcome is what one reconcile did.
type Outcome struct {
	Result   Result
	Revision Revision
	Plan     Plan
	// Reason and Message explain a stalled or transient outcome.
	Reason  Reason
	Message string
	Errors  spec.ErrorList // for stalled outcomes: every error of the revision
	Err     error          // for transient outcomes
	// Repeat marks a stalled outcome for a head that was refused before and
	// polled again: nothing new to record or announce.
	Repeat bool
}
