package reconcile

import (
	"context"
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

// VerifyRevision checks with v that head and every commit new since base
// (the last applied commit; "" before the first apply, when head alone is
// checked) are signed by trusted keys. Untrusted commits make the revision
// a *StalledError (UntrustedCommit) naming each commit and why; a history
// that cannot be read is a *TransientError (FetchFailed). It comes before
// LoadRevision in every reconcile with verification on, and in `certops plan
// --verify-commits`.
func VerifyRevision(ctx context.Context, v CommitVerifier, base string, head state.Revision) error {
	errs, err := v.VerifyCommits(ctx, base, head.Commit)
	if err != nil {
		return transient(state.ReasonFetchFailed, "verify commit signatures: %w", err)
	}
	if len(errs) > 0 {
		return &StalledError{Outcome: state.OutcomeUntrusted, Reason: state.ReasonUntrustedCommit,
			Message: fmt.Sprintf("revision %s has %d commit(s) not signed by a trusted key", head, len(errs)), Errors: errs}
	}
	return nil
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
