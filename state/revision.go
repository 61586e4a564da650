// Package state holds the domain types of what certops has applied and
// observed, shared by the reconciler, the store and the read API: revisions
// and their history records, plans and their changes, the reconcile status
// with its conditions and the typed outcome of a reconcile, and the states
// of deployments and issuances. It is pure data with the rules that belong
// to the data; it imports nothing of certops but spec.
package state

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/certops/certops/spec"
)

// Revision identifies one commit of the config repository.
type Revision struct {
	// Ref is the branch, tag or "HEAD" the commit was resolved from.
	Ref     string    `json:"ref"`
	Commit  string    `json:"commit"` // 40 hex digits
	Author  string    `json:"author,omitempty"`
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// String renders the revision the way the status API does: BRANCH@sha1:<40 hex>.
func (r Revision) String() string {
	if r.Commit == "" {
		return ""
	}
	return fmt.Sprintf("%s@sha1:%s", r.Ref, r.Commit)
}

// CommitOf returns the commit of a revision rendered by Revision.String
// (BRANCH@sha1:<40 hex>), or "" when s is not one.
func CommitOf(s string) string {
	i := strings.LastIndex(s, "@sha1:")
	if i < 0 {
		return ""
	}
	return s[i+len("@sha1:"):]
}

// RevisionOutcome is what became of a revision, as recorded in its history
// entry.
type RevisionOutcome string

// The outcomes of a revision.
const (
	OutcomeApplied      RevisionOutcome = "applied"       // the plan was applied
	OutcomeInvalid      RevisionOutcome = "invalid"       // validation failed; nothing applied
	OutcomePruneBlocked RevisionOutcome = "prune-blocked" // the prune guard refused it; nothing applied
	OutcomeFailed       RevisionOutcome = "failed"        // the apply transaction failed; retried
	OutcomeUntrusted    RevisionOutcome = "untrusted"     // a new commit is not signed by a trusted key; nothing applied
)

// Refused reports whether o is the outcome of a revision that was not
// applied (the outcomes RecordAttempt takes).
func (o RevisionOutcome) Refused() bool {
	switch o {
	case OutcomeInvalid, OutcomePruneBlocked, OutcomeFailed, OutcomeUntrusted:
		return true
	}
	return false
}

// RevisionRecord is the history entry written with every applied (or refused) revision.
type RevisionRecord struct {
	ID        int64           `json:"id"`
	Revision  Revision        `json:"revision"`
	AppliedAt time.Time       `json:"appliedAt"`
	Outcome   RevisionOutcome `json:"outcome"`
	Errors    spec.ErrorList  `json:"errors,omitempty"`
	// Counts are the per-kind creates, updates and deletes of the revision.
	Counts map[spec.Kind]Counts `json:"counts,omitempty"`
	// ActionCount is the number of per-object actions; Actions holds at most
	// the first 1000 of them.
	ActionCount int            `json:"actionCount"`
	Actions     []ActionRecord `json:"actions"`
}

// ActionRecord is one per-object action of a revision.
type ActionRecord struct {
	Action Action    `json:"action"`
	Kind   spec.Kind `json:"kind"`
	Name   string    `json:"name"`
}

// Fence is the fencing token of a reconcile lease: who holds it and the
// epoch of the term. Every write of desired state carries it, and the store
// refuses the write unless the token is still the current, unexpired lease
// when the write commits, so a replica that lost leadership can never write.
type Fence struct {
	Holder string
	Epoch  int64
}

// ErrFenced is the error of a write whose fence is no longer the current
// lease: the writer lost leadership, and the write changed nothing.
var ErrFenced = errors.New("this replica no longer holds the reconcile lease (fenced)")

func (f Fence) String() string { return fmt.Sprintf("%s#%d", f.Holder, f.Epoch) }
