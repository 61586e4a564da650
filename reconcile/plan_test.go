package reconcile

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

func obj(kind spec.Kind, name, cn string) *spec.Object {
	return &spec.Object{Kind: kind, Name: name, Spec: &spec.CertificateSpec{IssuerRef: "ca", CommonName: cn}}
}

func TestComputeIsAPureDiff(t *testing.T) {
	same := obj(spec.KindCertificate, "same", "a.example.com")
	changed := obj(spec.KindCertificate, "changed", "new.example.com")
	created := obj(spec.KindCertificate, "created", "c.example.com")
	issuer := &spec.Object{Kind: spec.KindIssuer, Name: "ca", Spec: &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{CertFile: "/c", KeyFile: "/k"}}}
	desired := map[spec.Key]*spec.Object{}
	for _, o := range []*spec.Object{same, changed, created, issuer} {
		desired[o.Key()] = o
	}
	stored := map[spec.Key]string{
		same.Key():                           same.Hash(),
		changed.Key():                        obj(spec.KindCertificate, "changed", "old.example.com").Hash(),
		{Kind: spec.KindAgent, Name: "gone"}: "x",
		{Kind: spec.KindCertificate, Name: "gone-too"}: "y",
	}
	plan := Compute(desired, stored)
	var got []string
	for _, c := range plan.Changes {
		got = append(got, string(c.Action)+" "+c.Key.String())
	}
	want := []string{
		"create Issuer/ca", "update Certificate/changed", "create Certificate/created",
		"delete Certificate/gone-too", "delete Agent/gone",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if c := plan.Counts()[spec.KindCertificate]; c != (state.Counts{Create: 1, Update: 1, Delete: 1}) {
		t.Errorf("certificate counts: got %+v", c)
	}
	// Same inputs, same plan; planning again over the result changes nothing.
	if diff := cmp.Diff(plan, Compute(desired, stored), cmp.Comparer(func(a, b *spec.Object) bool { return a == b })); diff != "" {
		t.Errorf("Compute is not deterministic:\n%s", diff)
	}
	if p := Compute(desired, plan.Applied(stored)); !p.Empty() {
		t.Errorf("re-planning after apply: got %d changes, want none", len(p.Changes))
	}
}

func TestPruneGuardThresholds(t *testing.T) {
	stored := map[spec.Key]string{}
	for i := range 40 {
		stored[spec.Key{Kind: spec.KindCertificate, Name: string(rune('a'+i%26)) + string(rune('a'+i/26))}] = "h"
	}
	planDeleting := func(n int) state.Plan {
		var p state.Plan
		i := 0
		for k := range stored {
			if i == n {
				break
			}
			p.Changes = append(p.Changes, state.Change{Action: state.ActionDelete, Key: k})
			i++
		}
		return p
	}
	var g PruneGuard
	for _, tt := range []struct {
		deletes, allowed int
		refused          bool
	}{
		{5, -1, false},  // a handful is always fine
		{10, -1, false}, // 25% of 40
		{11, -1, true},  // over 25% and over a handful
		{11, 10, true},  // allowed too few
		{11, 11, false}, // allowed enough
		{40, 1 << 30, false},
	} {
		got := g.Check(planDeleting(tt.deletes), stored, tt.allowed) != nil
		if got != tt.refused {
			t.Errorf("%d deletes of 40, allowed %d: refused=%v, want %v", tt.deletes, tt.allowed, got, tt.refused)
		}
	}
}
