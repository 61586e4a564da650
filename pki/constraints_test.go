package pki

import (
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
)

// countingSigner counts the signatures made with the CA key.
type countingSigner struct {
	crypto.Signer
	n atomic.Int32
}

func (c *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, digest, opts)
}

// A CA made with --permitted-dns signs names under its domains only: no
// name of another kind (IP, email, URI) and no DNS name or host-name common
// name outside them. Each is refused before anything is signed, as
// name_not_permitted; what it does sign verifies with Go and OpenSSL.
func TestDNSConstrainedCASignsNothingElse(t *testing.T) {
	ca, caPEM, _ := newCA(t, CAOptions{PermittedDNSDomains: []string{"example.com"}})
	counter := &countingSigner{Signer: ca.key}
	ca.key = counter
	csr := shopCSR(t, ecKey(t, elliptic.P256()))
	for _, tc := range []struct {
		name string
		edit func(*spec.CertificateSpec)
		want string
	}{
		{"IP address", func(s *spec.CertificateSpec) { s.IPAddresses = []string{"8.8.8.8"} }, `IP address "8.8.8.8"`},
		{"IPv6 address", func(s *spec.CertificateSpec) { s.IPAddresses = []string{"2001:db8::1"} }, `IP address "2001:db8::1"`},
		{"email address", func(s *spec.CertificateSpec) { s.EmailAddresses = []string{"ceo@evil.org"} }, `email address "ceo@evil.org"`},
		{"email address in the domain", func(s *spec.CertificateSpec) { s.EmailAddresses = []string{"ceo@example.com"} }, `email address "ceo@example.com"`},
		{"URI", func(s *spec.CertificateSpec) { s.URIs = []string{"https://evil.org/x"} }, `URI "https://evil.org/x"`},
		{"URI in the domain", func(s *spec.CertificateSpec) { s.URIs = []string{"spiffe://example.com/shop"} }, `URI "spiffe://example.com/shop"`},
		{"DNS name", func(s *spec.CertificateSpec) { s.DNSNames = append(s.DNSNames, "shop.example.org") }, `DNS name "shop.example.org"`},
		{"lookalike DNS name", func(s *spec.CertificateSpec) { s.DNSNames = []string{"evilexample.com"} }, `DNS name "evilexample.com"`},
		{"common name", func(s *spec.CertificateSpec) { s.CommonName = "evil.org" }, `DNS name "evil.org"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := shopSpec()
			tc.edit(s)
			issued, err := ca.Sign(csr, s, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "not permitted") {
				t.Fatalf("Sign: %v, %v; want a refusal naming %s", issued, err, tc.want)
			}
			if failure.KindOf(err) != failure.Rejected || failure.CodeOf(err) != agentproto.CodeNameNotPermitted {
				t.Errorf("error %v is %v/%s, want rejected/name_not_permitted", err, failure.KindOf(err), failure.CodeOf(err))
			}
			if n := counter.n.Load(); n != 0 {
				t.Errorf("the CA key signed %d time(s) before the refusal", n)
			}
		})
	}

	issued, err := ca.Sign(csr, shopSpec(), time.Now())
	if err != nil {
		t.Fatalf("Sign within the constraints: %v", err)
	}
	verifyBoth(t, caPEM, issued.CertPEM, true)
}

// The constraints are in the CA certificate, not only in certops' signer:
// leaves with an IP address, an email address or a URI signed with the CA's
// key by other means fail Go's and OpenSSL's verification.
func TestDNSConstrainedCAConstrainsEveryKind(t *testing.T) {
	ca, caPEM, _ := newCA(t, CAOptions{PermittedDNSDomains: []string{"example.com"}})
	evil, _ := url.Parse("https://evil.org/x")
	inDomain, _ := url.Parse("spiffe://example.com/shop")
	for name, tmpl := range map[string]*x509.Certificate{
		"IPv4":            {IPAddresses: []net.IP{net.ParseIP("8.8.8.8").To4()}},
		"IPv6":            {IPAddresses: []net.IP{net.ParseIP("2001:db8::1")}},
		"email":           {EmailAddresses: []string{"ceo@evil.org"}},
		"email in domain": {EmailAddresses: []string{"ceo@example.com"}},
		"URI":             {URIs: []*url.URL{evil}},
		"URI in domain":   {URIs: []*url.URL{inDomain}},
	} {
		t.Run(name, func(t *testing.T) {
			tmpl.DNSNames = []string{"shop.example.com"}
			tmpl.SerialNumber = big.NewInt(2)
			tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
			leafKey := ecKey(t, elliptic.P256())
			der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, leafKey.Public(), ca.key)
			if err != nil {
				t.Fatal(err)
			}
			verifyBoth(t, caPEM, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), false)
		})
	}
}

// A CA made before NewCA closed the other kinds (permitted DNS domains
// only: RFC 5280 leaves IPs, emails and URIs unconstrained) still signs no
// name of those kinds.
func TestOlderDNSConstrainedCARefusesOtherKinds(t *testing.T) {
	key := ecKey(t, elliptic.P256())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "old CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		PermittedDNSDomains: []string{"example.com"}, PermittedDNSDomainsCritical: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := MarshalKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s := shopSpec()
	s.IPAddresses, s.EmailAddresses, s.URIs = []string{"8.8.8.8"}, []string{"ceo@example.com"}, []string{"https://example.com/x"}
	err = ca.CheckNames(s)
	for _, want := range []string{`IP address "8.8.8.8"`, `email address "ceo@example.com"`, `URI "https://example.com/x"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckNames = %v, want it to refuse %s", err, want)
		}
	}
	if failure.CodeOf(err) != agentproto.CodeNameNotPermitted {
		t.Errorf("code %s, want name_not_permitted", failure.CodeOf(err))
	}
}

// A CA's other constraints, of every kind, are honoured as RFC 5280 says.
func TestCheckNamesEveryKind(t *testing.T) {
	_, v4, _ := net.ParseCIDR("10.0.0.0/8")
	_, v6, _ := net.ParseCIDR("fd00::/8")
	_, bad, _ := net.ParseCIDR("10.66.0.0/16")
	ca := &CA{cert: &x509.Certificate{
		Subject:                 pkix.Name{CommonName: "ca"},
		PermittedDNSDomains:     []string{"example.com", ".example.net"},
		ExcludedDNSDomains:      []string{"secret.example.com"},
		PermittedIPRanges:       []*net.IPNet{v4, v6},
		ExcludedIPRanges:        []*net.IPNet{bad},
		PermittedEmailAddresses: []string{"example.com", "ops@example.org"},
		PermittedURIDomains:     []string{".example.com"},
	}}
	for _, tc := range []struct {
		spec spec.CertificateSpec
		ok   bool
	}{
		{spec.CertificateSpec{DNSNames: []string{"example.com", "a.b.example.com", "x.example.net"}}, true},
		{spec.CertificateSpec{DNSNames: []string{"example.net"}}, false}, // leading dot: subdomains only
		{spec.CertificateSpec{DNSNames: []string{"x.secret.example.com"}}, false},
		{spec.CertificateSpec{IPAddresses: []string{"10.1.2.3", "fd00::1", "::ffff:10.1.2.3"}}, true},
		{spec.CertificateSpec{IPAddresses: []string{"10.66.1.1"}}, false},
		{spec.CertificateSpec{IPAddresses: []string{"192.168.1.1"}}, false},
		{spec.CertificateSpec{EmailAddresses: []string{"a@example.com", "ops@EXAMPLE.org"}}, true},
		{spec.CertificateSpec{EmailAddresses: []string{"a@sub.example.com"}}, false}, // a host, not a domain
		{spec.CertificateSpec{EmailAddresses: []string{"dev@example.org"}}, false},
		{spec.CertificateSpec{URIs: []string{"spiffe://prod.example.com/shop"}}, true},
		{spec.CertificateSpec{URIs: []string{"spiffe://example.com/shop"}}, false},
		{spec.CertificateSpec{URIs: []string{"https://10.1.2.3/"}}, false},
	} {
		err := ca.CheckNames(&tc.spec)
		if (err == nil) != tc.ok {
			t.Errorf("CheckNames(%+v) = %v, want ok %v", tc.spec, err, tc.ok)
		}
	}
}

// verifyBoth verifies leafPEM against caPEM with Go's x509.Verify and with
// `openssl verify`; ok says whether both must accept it or both refuse it.
func verifyBoth(t *testing.T, caPEM []byte, leafPEM string, ok bool) {
	t.Helper()
	block, _ := pem.Decode([]byte(leafPEM))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	var invalid x509.CertificateInvalidError
	switch {
	case ok && err != nil:
		t.Errorf("Go's verifier refuses the leaf: %v", err)
	case !ok && (!errors.As(err, &invalid) || invalid.Reason != x509.CANotAuthorizedForThisName):
		t.Errorf("Go's verifier: %v, want the CA not authorized for this name", err)
	}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("no openssl: skipping its verification")
		return
	}
	dir := t.TempDir()
	caFile, leafFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "leaf.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(leafFile, []byte(leafPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "verify", "-CAfile", caFile, leafFile).CombinedOutput()
	switch {
	case ok && err != nil:
		t.Errorf("openssl verify refuses the leaf: %v\n%s", err, out)
	case !ok && (err == nil || !strings.Contains(string(out), "subtree violation")):
		t.Errorf("openssl verify: %v\n%s, want a subtree violation", err, out)
	}
}
