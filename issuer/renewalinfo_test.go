package issuer

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/issuer/acmetest"
	"github.com/certops/certops/spec"
)

// Renewal information of a Pebble certificate, asked again after
// issuance: the window of the order, with Pebble's Retry-After (6h); a
// window set at Pebble, with its explanation URL; a past window once the
// certificate is revoked. A local CA and an unknown issuer have no
// RenewalInfoer; an ACME issuer whose directory is unreachable fails
// (Unavailable), and is unavailable while its setup failure is recent.
func TestACMERenewalInfo(t *testing.T) {
	e := newACMEEnv(t, acmetest.Options{})
	obj := e.issuerObject("pebble", scriptsChallenge(helperScript(t, e.pebble, "set"), helperScript(t, e.pebble, "clear")), "")
	e.r.Sync([]*spec.Object{obj,
		{Kind: spec.KindIssuer, Name: "local", Spec: &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{CertFile: "/nonexistent/ca.crt", KeyFile: "/nonexistent/ca.key"}}},
		{Kind: spec.KindIssuer, Name: "down", Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{
			DirectoryURL: "https://127.0.0.1:1/dir", AccountKeyFile: filepath.Join(e.dir, "down.key"),
			Challenge: scriptsChallenge("/bin/true", "")}}},
	})
	c := acmeSpec("ari.certops.test")
	res, err := e.orderer(t, "pebble").Order(t.Context(), Order{Certificate: "shop", Agent: "web-01", Spec: c, CSR: csrFor(t, c)})
	if err != nil {
		t.Fatalf("Order: %v\nlogs:\n%s", err, e.logs)
	}
	leaf := verifyIssued(t, e.pebble, res.Issued, c.DNSNames...)
	ri, err := e.r.RenewalInfoer("pebble")
	if err != nil {
		t.Fatal(err)
	}

	info, err := ri.RenewalInfo(t.Context(), leaf)
	if err != nil {
		t.Fatalf("RenewalInfo: %v", err)
	}
	if w := res.RenewalWindow; w == nil || !info.Window.Start.Equal(w.Start) || !info.Window.End.Equal(w.End) {
		t.Errorf("window %+v; want the order's %+v", info.Window, w)
	}
	if info.RetryAfter != 6*time.Hour || info.ExplanationURL != "" {
		t.Errorf("RetryAfter %s, explanation %q; want Pebble's 6h and none", info.RetryAfter, info.ExplanationURL)
	}
	if n := testutil.ToFloat64(e.opts().Metrics.requests.WithLabelValues("renewalInfo", "200")); n != 2 {
		t.Errorf("renewalInfo requests answered 200: %v; want 2 (the order's, this one)", n)
	}

	// The CA moves the window and says why.
	start, end := time.Now().Add(time.Hour).UTC().Truncate(time.Second), time.Now().Add(3*time.Hour).UTC().Truncate(time.Second)
	e.pebble.SetRenewalInfo(t, res.Issued.CertPEM, start, end, "https://ca.example/incident")
	info, err = ri.RenewalInfo(t.Context(), leaf)
	if err != nil || !info.Window.Start.Equal(start) || !info.Window.End.Equal(end) || info.ExplanationURL != "https://ca.example/incident" {
		t.Fatalf("RenewalInfo after the CA moved the window: %+v, %v; want %s–%s with its explanation", info, err, start, end)
	}

	// Revoked at the CA: Pebble asks for a renewal now (a window that
	// ended in the past).
	c2 := acmeSpec("ari-revoked.certops.test")
	res2, err := e.orderer(t, "pebble").Order(t.Context(), Order{Certificate: "api", Agent: "web-01", Spec: c2, CSR: csrFor(t, c2)})
	if err != nil {
		t.Fatalf("Order: %v", err)
	}
	rv, err := e.r.Revoker("pebble")
	if err != nil {
		t.Fatal(err)
	}
	if err := rv.Revoke(t.Context(), res2.Issued.CertPEM, spec.RevocationReasons["keyCompromise"]); err != nil {
		t.Fatal(err)
	}
	info, err = ri.RenewalInfo(t.Context(), verifyIssued(t, e.pebble, res2.Issued, c2.DNSNames...))
	if err != nil || !info.Window.End.Before(time.Now()) {
		t.Fatalf("RenewalInfo of a revoked certificate: %+v, %v; want a window in the past", info, err)
	}

	for _, name := range []string{"local", "nope"} {
		if _, err := e.r.RenewalInfoer(name); failure.KindOf(err) != failure.NotFound {
			t.Errorf("RenewalInfoer(%s) = %v; want NotFound", name, err)
		}
	}
	down, err := e.r.RenewalInfoer("down")
	if err != nil {
		t.Fatalf("RenewalInfoer(down) before any use: %v", err)
	}
	_, err = down.RenewalInfo(t.Context(), leaf)
	if failure.KindOf(err) != failure.Unavailable || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("RenewalInfo of an unreachable CA: %v; want Unavailable naming the directory", err)
	}
	if _, err := e.r.RenewalInfoer("down"); failure.KindOf(err) != failure.Unavailable {
		t.Errorf("RenewalInfoer(down) right after its setup failed: %v; want Unavailable", err)
	}
}
