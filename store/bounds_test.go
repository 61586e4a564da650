package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/textlimit"
)

// A revision with thousands of long errors, NUL bytes among them, is
// stored bounded: the revision's errors, the status's and its conditions.
func TestRevisionErrorsAreBounded(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	huge := strings.Repeat("x", 200_000) + "\x00"
	var errs spec.ErrorList
	for i := range 5000 {
		errs = append(errs, spec.Error{File: fmt.Sprintf("certs/%d.yaml", i), Line: 1, Message: huge})
	}
	rev := revision("bad")
	rev.Message = huge
	status := state.Status{LastAttemptedRevision: rev.String(), Errors: errs,
		Conditions: []state.Condition{{Type: state.ConditionStalled, Status: "True", Reason: "Invalid", Message: huge}}}
	if _, err := s.RecordAttempt(ctx, leader(t, s), rev, state.OutcomeInvalid, errs, status); err != nil {
		t.Fatalf("RecordAttempt: %v", err)
	}
	revs, err := s.ListRevisions(ctx, 1, 0)
	if err != nil || len(revs) != 1 {
		t.Fatalf("ListRevisions: %v %v", len(revs), err)
	}
	got, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for what, list := range map[string]spec.ErrorList{"revision": revs[0].Errors, "status": got.Errors} {
		if len(list) > 201 || !strings.Contains(list[len(list)-1].Message, "more errors") {
			t.Errorf("%s: %d errors stored, last %q", what, len(list), list[len(list)-1].Message)
		}
		for _, e := range list {
			if len(e.Message) > textlimit.MaxMessage || strings.ContainsRune(e.Message, 0) {
				t.Fatalf("%s: an error of %d bytes", what, len(e.Message))
			}
		}
	}
	if m := got.Conditions[0].Message; len(m) > textlimit.MaxMessage {
		t.Errorf("condition message is %d bytes", len(m))
	}
	if m := revs[0].Revision.Message; len(m) > textlimit.MaxMessage {
		t.Errorf("revision message is %d bytes", len(m))
	}
}
