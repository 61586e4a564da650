package state

import (
	"time"

	"github.com/certops/certops/spec"
)

// ConditionType names a status condition.
type ConditionType string

// Condition types shown in the status.
const (
	ConditionReady       ConditionType = "Ready"
	ConditionReconciling ConditionType = "Reconciling"
	ConditionStalled     ConditionType = "Stalled"
)

// ConditionStatus is a condition's value, in the Kubernetes style.
type ConditionStatus string

// The values of a condition.
const (
	True    ConditionStatus = "True"
	False   ConditionStatus = "False"
	Unknown ConditionStatus = "Unknown"
)

// Reason is the machine-readable cause shown with the conditions.
type Reason string

// The reasons the reconciler gives.
const (
	ReasonSucceeded        Reason = "ReconciliationSucceeded"
	ReasonValidationFailed Reason = "ValidationFailed" // stalled: the revision is invalid
	ReasonPruneBlocked     Reason = "PruneBlocked"     // stalled: the prune guard refused it
	ReasonUntrustedCommit  Reason = "UntrustedCommit"  // stalled: a new commit is not signed by a trusted key
	ReasonFetchFailed      Reason = "FetchFailed"      // transient: the source could not be read
	ReasonStoreUnavailable Reason = "StoreUnavailable" // transient: the database could not be read or written
	ReasonApplyFailed      Reason = "ApplyFailed"      // transient: the apply transaction failed
	ReasonRetrying         Reason = "RetryingAfterFailure"
	ReasonProgressing      Reason = "Progressing" // an apply is running
	ReasonLeaseLost        Reason = "LeaseLost"   // this replica lost the reconcile lease mid-pass
)

// Condition is one status condition in the Kubernetes style.
type Condition struct {
	Type               ConditionType   `json:"type"`
	Status             ConditionStatus `json:"status"`
	Reason             Reason          `json:"reason"`
	Message            string          `json:"message"`
	LastTransitionTime time.Time       `json:"lastTransitionTime"`
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

// Clone returns a copy of s that shares no slices with it.
func (s Status) Clone() Status {
	s.Conditions = append([]Condition(nil), s.Conditions...)
	s.Errors = append(spec.ErrorList(nil), s.Errors...)
	return s
}

// Condition returns the condition of type t, if it is set.
func (s Status) Condition(t ConditionType) (Condition, bool) {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return Condition{}, false
}

// MarkApplied records head as applied and ready.
func (s *Status) MarkApplied(head Revision, now time.Time) {
	s.LastAppliedRevision, s.LastAppliedAt = head.String(), &now
	s.LastAttemptedRevision, s.LastAttemptedAt = head.String(), &now
	s.Errors = nil
	s.MarkReady("Applied revision "+head.String(), now)
}

// MarkReady sets the conditions of an applied head.
func (s *Status) MarkReady(msg string, now time.Time) {
	s.SetCondition(ConditionReady, True, ReasonSucceeded, msg, now)
	s.SetCondition(ConditionReconciling, False, ReasonSucceeded, msg, now)
	s.SetCondition(ConditionStalled, False, ReasonSucceeded, msg, now)
}

// MarkRefused records head as attempted and refused with errs: it needs a
// human, and the last applied revision keeps serving.
func (s *Status) MarkRefused(head Revision, reason Reason, msg string, errs spec.ErrorList, now time.Time) {
	s.LastAttemptedRevision, s.LastAttemptedAt, s.Errors = head.String(), &now, errs
	s.MarkStalled(reason, msg, now)
}

// MarkStalled sets the conditions of a head that needs a human.
func (s *Status) MarkStalled(reason Reason, msg string, now time.Time) {
	s.SetCondition(ConditionReady, False, reason, msg, now)
	s.SetCondition(ConditionReconciling, False, reason, msg, now)
	s.SetCondition(ConditionStalled, True, reason, msg, now)
}

// MarkRetrying sets the conditions of a failure that is retried with backoff.
func (s *Status) MarkRetrying(reason Reason, msg string, now time.Time) {
	s.SetCondition(ConditionReady, False, reason, msg, now)
	s.SetCondition(ConditionReconciling, True, ReasonRetrying, msg, now)
	s.SetCondition(ConditionStalled, False, reason, msg, now)
}

// SetCondition sets a condition, keeping its transition time unless its status changes.
func (s *Status) SetCondition(typ ConditionType, status ConditionStatus, reason Reason, msg string, now time.Time) {
	for i := range s.Conditions {
		c := &s.Conditions[i]
		if c.Type != typ {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message = status, reason, msg
		return
	}
	s.Conditions = append(s.Conditions, Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: now})
}
