package agentapi_test

import (
	"net/http"
	"testing"

	"github.com/certops/certops/spec"
)

// A Revocation of a serial an agent deploys makes the renewal due at
// once: the assignment's renewAt is now (not the usual 2/3 of the life),
// and the issue request the reissue limit held back is answered with a
// new certificate. Another agent's deployment is left alone.
func TestRevokedSerialIsReissuedAtOnce(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	if r := e.issue("web-01", "pool"); r.status != http.StatusOK {
		t.Fatalf("first issue: %d %s", r.status, r.body)
	}
	if r := e.issue("web-02", "pool"); r.status != http.StatusOK {
		t.Fatalf("first issue on web-02: %d %s", r.status, r.body)
	}
	e.refresh()
	before := e.assignment("web-01", "pool")
	other := e.assignment("web-02", "pool")
	if before.Current == nil || !before.RenewAt.After(e.clock.Now()) {
		t.Fatalf("before the revocation: current %v, renewAt %s", before.Current, before.RenewAt)
	}
	if r := e.issue("web-01", "pool"); r.status != http.StatusTooManyRequests {
		t.Fatalf("a second certificate before renewal: %d %s, want 429", r.status, r.body)
	}

	e.apply(&spec.Object{Kind: spec.KindRevocation, Name: "leak", Spec: &spec.RevocationSpec{
		Certificate: "pool", Serials: []string{before.Current.Serial}, Reason: "keyCompromise"}})
	e.refresh()

	after := e.assignment("web-01", "pool")
	if after.RenewAt.After(e.clock.Now()) {
		t.Errorf("after the revocation renewAt is %s, after now %s; want due", after.RenewAt, e.clock.Now())
	}
	if o := e.assignment("web-02", "pool"); !o.RenewAt.Equal(other.RenewAt) {
		t.Errorf("web-02's renewAt moved from %s to %s", other.RenewAt, o.RenewAt)
	}
	r := e.issue("web-01", "pool")
	if r.status != http.StatusOK {
		t.Fatalf("issue after the revocation: %d %s", r.status, r.body)
	}
	e.refresh()
	if now := e.assignment("web-01", "pool"); now.Current == nil || now.Current.Serial == before.Current.Serial || !now.RenewAt.After(e.clock.Now()) {
		t.Errorf("after reissue: current %v, renewAt %s; want a new serial, renewal later", now.Current, now.RenewAt)
	}
}
