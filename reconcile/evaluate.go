package reconcile

import (
	"fmt"
	"io/fs"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// Desired is one revision loaded and validated whole.
type Desired struct {
	State spec.State
	// AllowPrune is what the revision's AllowPruneFile allows (see ReadAllowPrune).
	AllowPrune int
}

// LoadRevision loads the revision commit from fsys (re-reading only changed,
// see Load) and validates it whole, with its AllowPruneFile. An invalid
// revision is a *StalledError (ValidationFailed) listing every error. It is
// the first step of every reconcile and of `certops plan`.
func (l *Loader) LoadRevision(fsys fs.FS, rev state.Revision, changed []string) (Desired, error) {
	st, errs := l.Load(fsys, rev.Commit, changed)
	allowed, err := ReadAllowPrune(fsys)
	if err != nil {
		errs = append(errs, spec.Error{File: AllowPruneFile, Message: err.Error()})
	}
	if len(errs) > 0 {
		return Desired{}, &StalledError{Outcome: state.OutcomeInvalid, Reason: state.ReasonValidationFailed,
			Message: fmt.Sprintf("revision %s has %d validation error(s)", rev, len(errs)), Errors: errs}
	}
	return Desired{State: st, AllowPrune: allowed}, nil
}

// Plan computes the plan of d against the stored hashes and checks it with
// the prune guard. It always returns the plan; when the guard refuses it the
// error is a *StalledError (PruneBlocked) with one error per kind over the
// limit. It is the second step of every reconcile and of `certops plan`.
func (g PruneGuard) Plan(rev state.Revision, d Desired, stored map[spec.Key]string) (state.Plan, error) {
	plan := Compute(d.State.Objects, stored)
	over := g.Check(plan, stored, d.AllowPrune)
	if over == nil {
		return plan, nil
	}
	errs := make(spec.ErrorList, len(over))
	for i, o := range over {
		errs[i] = spec.Error{File: AllowPruneFile, Message: "prune guard: " + o +
			"; to allow it, commit " + AllowPruneFile + " containing the number of deletions or \"all\""}
	}
	return plan, &StalledError{Outcome: state.OutcomePruneBlocked, Reason: state.ReasonPruneBlocked,
		Message: fmt.Sprintf("revision %s would delete too many objects", rev), Errors: errs}
}
