package issuer

import (
	"testing"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/issuer/acmetest"
	"github.com/certops/certops/spec"
)

// An ACME certificate is revoked at Pebble with the reason given; revoking
// it again is not an error; a local CA and an unknown issuer have no
// Revoker.
func TestACMERevokeAtPebble(t *testing.T) {
	e := newACMEEnv(t, acmetest.Options{})
	obj := e.issuerObject("pebble", scriptsChallenge(helperScript(t, e.pebble, "set"), helperScript(t, e.pebble, "clear")), "")
	e.r.Sync([]*spec.Object{obj, {Kind: spec.KindIssuer, Name: "local",
		Spec: &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{CertFile: "/nonexistent/ca.crt", KeyFile: "/nonexistent/ca.key"}}}})
	c := acmeSpec("revoked.certops.test")
	res, err := e.orderer(t, "pebble").Order(t.Context(), Order{Certificate: "shop", Agent: "web-01", Spec: c, CSR: csrFor(t, c)})
	if err != nil {
		t.Fatalf("Order: %v\nlogs:\n%s", err, e.logs)
	}
	if st := e.pebble.CertStatus(t, res.Issued.Serial); st.Status != "Valid" {
		t.Fatalf("before revoking Pebble says %+v", st)
	}
	rv, err := e.r.Revoker("pebble")
	if err != nil {
		t.Fatal(err)
	}
	if err := rv.Revoke(t.Context(), res.Issued.CertPEM+res.Issued.ChainPEM, spec.RevocationReasons["keyCompromise"]); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	st := e.pebble.CertStatus(t, res.Issued.Serial)
	if st.Status != "Revoked" || st.Reason == nil || *st.Reason != 1 {
		t.Errorf("after revoking Pebble says %+v; want Revoked, reason 1 (keyCompromise)", st)
	}
	if err := rv.Revoke(t.Context(), res.Issued.CertPEM, 1); err != nil {
		t.Errorf("revoking again: %v; want nil (already revoked)", err)
	}
	for _, name := range []string{"local", "nope"} {
		if _, err := e.r.Revoker(name); failure.KindOf(err) != failure.NotFound {
			t.Errorf("Revoker(%s) = %v; want NotFound", name, err)
		}
	}
}
