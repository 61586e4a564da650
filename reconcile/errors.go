package reconcile

import (
	"fmt"

	"github.com/certops/certops/redact"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// StalledError is a revision that needs a human: it is refused whole, the
// last applied revision keeps serving, and the same commit is not tried
// again until the next commit (or the next full compare).
type StalledError struct {
	Outcome state.RevisionOutcome // recorded in the revision history
	Reason  state.Reason
	Message string
	Errors  spec.ErrorList // every error of the revision
}

func (e *StalledError) Error() string {
	return fmt.Sprintf("%s: %s", e.Reason, e.Message)
}

// TransientError is a failure worth retrying with backoff: the source or the
// database could not be reached, or the apply transaction failed.
type TransientError struct {
	Reason state.Reason
	Err    error
}

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

func transient(reason state.Reason, format string, args ...any) *TransientError {
	return &TransientError{Reason: reason, Err: redact.Error(fmt.Errorf(format, args...))}
}
