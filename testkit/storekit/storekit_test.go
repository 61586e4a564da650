package storekit_test

import (
	"context"
	"strings"
	"testing"

	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/testkit/storekit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestApplyPlansAgainstTheStore(t *testing.T) {
	st := storekit.Open(t)
	agent := &spec.Object{Kind: spec.KindAgent, Name: "web-01", Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("a", 64)}}
	cert := &spec.Object{Kind: spec.KindCertificate, Name: "shop", Spec: &spec.CertificateSpec{IssuerRef: "ca", CommonName: "shop.example.com"}}
	rev := state.Revision{Ref: "main", Commit: strings.Repeat("1", 40)}
	plan, id := storekit.Apply(t, st, rev, state.Status{LastAppliedRevision: rev.String()}, storekit.Desired(agent, cert))
	if got := len(plan.Changes); got != 2 || id == 0 {
		t.Fatalf("first apply: %d changes, revision id %d; want 2 creates and an id", got, id)
	}

	// The second revision is planned against what the first stored.
	rev2 := state.Revision{Ref: "main", Commit: strings.Repeat("2", 40)}
	plan, _ = storekit.Apply(t, st, rev2, state.Status{LastAppliedRevision: rev2.String()}, storekit.Desired(agent))
	if len(plan.Changes) != 1 || plan.Changes[0].Action != state.ActionDelete || plan.Changes[0].Key != cert.Key() {
		t.Errorf("second apply: %+v, want only the delete of %s", plan.Changes, cert.Key())
	}
	hashes, err := st.StoredHashes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := hashes[agent.Key()]; len(hashes) != 1 || !ok {
		t.Errorf("stored after the second apply: %v, want only %s", hashes, agent.Key())
	}
	status, err := st.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if status.LastAppliedRevision != rev2.String() {
		t.Errorf("status: lastAppliedRevision %q, want %q", status.LastAppliedRevision, rev2.String())
	}
}
