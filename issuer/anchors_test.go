package issuer

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
)

// The CA certificates a TrustBundle source naming an issuer deploys: an
// external issuer's caBundleFile (its CA certificates only), re-read when
// the file changes but looked at at most every ReloadCheckInterval, kept
// when the file turns bad; nothing for unknown and acme issuers.
func TestCACertificatesOfCABundleFile(t *testing.T) {
	dir := t.TempDir()
	newCA := func(cn string) []byte {
		certPEM, _, err := pki.NewCA(pki.CAOptions{CommonName: cn})
		if err != nil {
			t.Fatal(err)
		}
		return certPEM
	}
	ca1, ca2 := newCA("Corporate Root 1"), newCA("Corporate Root 2")
	leaf := issuedPEM(t) // a certificate that is no CA: left out
	bundle := filepath.Join(dir, "ca.pem")
	write := func(data ...[]byte) {
		t.Helper()
		var all []byte
		for _, d := range data {
			all = append(all, d...)
		}
		if err := os.WriteFile(bundle, all, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	names := func(cs []*x509.Certificate) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Subject.CommonName)
		}
		return out
	}
	write(ca1, leaf)
	r, clock, _ := newTestRegistry(t)
	r.Sync([]*spec.Object{
		externalObject("corporate", spec.ExternalIssuer{Command: []string{"/bin/true"}, CABundleFile: bundle}),
		{Kind: spec.KindIssuer, Name: "le", Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{DirectoryURL: "https://127.0.0.1:1/dir",
			AccountKeyFile: filepath.Join(dir, "acct.key"), Challenge: spec.ACMEChallenge{HTTP01: &spec.HTTP01Challenge{Webroot: dir}}}}},
	})
	if got := names(r.CACertificates("corporate")); len(got) != 1 || got[0] != "Corporate Root 1" {
		t.Fatalf("CACertificates = %v, want [Corporate Root 1]", got)
	}
	write(ca1, ca2)
	if got := names(r.CACertificates("corporate")); len(got) != 1 {
		t.Errorf("re-read before ReloadCheckInterval: %v", got)
	}
	clock.Advance(ReloadCheckInterval)
	if got := names(r.CACertificates("corporate")); len(got) != 2 || got[1] != "Corporate Root 2" {
		t.Errorf("after a rotation: %v, want both roots", got)
	}
	write([]byte("not PEM at all"))
	clock.Advance(ReloadCheckInterval)
	if got := names(r.CACertificates("corporate")); len(got) != 2 {
		t.Errorf("after the file turned bad: %v, want the roots read before", got)
	}
	if got := r.CACertificates("le"); got != nil {
		t.Errorf("an acme issuer: %v, want none (the agent API takes its root from the chains)", got)
	}
	if got := r.CACertificates("nope"); got != nil {
		t.Errorf("an unknown issuer: %v", got)
	}
}

// issuedPEM is a leaf certificate (no CA) as PEM.
func issuedPEM(t *testing.T) []byte {
	t.Helper()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{CommonName: "Signing CA"})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	issued, err := ca.Sign(shopCSR(t), shopSpec(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return []byte(issued.CertPEM)
}
