package reconcile

import (
	"fmt"
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

// Condition types shown in the status.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
)

// Condition is one status condition in the Kubernetes style.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"` // "True", "False" or "Unknown"
	Reason             string    `json:"reason"`
	Message            string    `json:"message"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// Status is the reconciler's view of the source, shared by every replica through the store.
type Status struct {
	LastAppliedRevision   string         `json:"lastAppliedRevision"`
	LastAppliedAt         *time.Time     `json:"lastAppliedAt,omitempty"`
	LastAttemptedRevision string         `json:"lastAttemptedRevision"`
	LastAttemptedAt       *time.Time     `json:"lastAttemptedAt,omitempty"`
	LastFetchAt           *time.Time     `json:"lastFetchAt,omitempty"`
	Errors                spec.ErrorList `json:"errors"`
	Conditions            []Condition    `json:"conditions"`
}

// RevisionRecord is the history entry written with every applied (or refused) revision.
type RevisionRecord struct {
	ID        int64          `json:"id"`
	Revision  Revision       `json:"revision"`
	AppliedAt time.Time      `json:"appliedAt"`
	Outcome   string         `json:"outcome"` // "applied", "invalid", "prune-blocked", "failed"
	Errors    spec.ErrorList `json:"errors,omitempty"`
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
