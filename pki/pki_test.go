package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
)

// ---- helpers ----

func newCA(t testing.TB, opts CAOptions) (*CA, []byte, []byte) {
	t.Helper()
	certPEM, keyPEM, err := NewCA(opts)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("ParseCA: %v", err)
	}
	return ca, certPEM, keyPEM
}

// shopSpec is the certificate spec most tests sign for.
func shopSpec() *spec.CertificateSpec {
	return &spec.CertificateSpec{
		IssuerRef:  "internal-ca",
		CommonName: "shop.example.com",
		DNSNames:   []string{"shop.example.com", "www.shop.example.com"},
		PrivateKey: spec.PrivateKey{Algorithm: spec.AlgorithmECDSA, Size: 256},
		Duration:   "2160h",
	}
}

func ecKey(t testing.TB, curve elliptic.Curve) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB, bits int) crypto.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// makeCSR signs a CSR for tmpl with key and parses it back.
func makeCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// shopCSR is a CSR that matches shopSpec exactly.
func shopCSR(t testing.TB, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	return makeCSR(t, key, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "shop.example.com"},
		DNSNames: []string{"shop.example.com", "www.shop.example.com"},
	})
}

func parseCertPEM(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", s)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// selfSigned creates a certificate from tmpl signed by key (self-signed).
func selfSigned(t *testing.T, tmpl *x509.Certificate, key crypto.Signer) []byte {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(1)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	b, err := MarshalKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ---- NewCA, LoadCA, ParseCA ----

func TestNewCA(t *testing.T) {
	ca, _, keyPEM := newCA(t, CAOptions{})
	c := ca.Certificate()
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("IsCA=%v BasicConstraintsValid=%v, want both true", c.IsCA, c.BasicConstraintsValid)
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("MaxPathLen=%d MaxPathLenZero=%v, want 0 and true", c.MaxPathLen, c.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
		t.Errorf("KeyUsage=%v, want %v", c.KeyUsage, want)
	}
	if len(c.SubjectKeyId) == 0 {
		t.Error("SubjectKeyId is empty")
	}
	if got, want := c.Subject.CommonName, DefaultCACommonName; got != want {
		t.Errorf("CommonName=%q, want %q", got, want)
	}
	if got, want := describeKey(c.PublicKey), "ECDSA P-256"; got != want {
		t.Errorf("key is %s, want %s", got, want)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() < 100 {
		t.Errorf("serial %x: want positive and over 100 bits", c.SerialNumber)
	}
	if got, want := c.NotAfter.Sub(c.NotBefore), DefaultCAValidity+clockSkew; got < want-time.Second || got > want+time.Second {
		t.Errorf("validity %s, want %s", got, want)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "PRIVATE KEY" {
		t.Errorf("key PEM is not PKCS#8: %q", keyPEM)
	}
}

func TestNewCAOptions(t *testing.T) {
	ca, _, _ := newCA(t, CAOptions{
		CommonName:          "ACME Corp CA",
		KeyType:             "rsa",
		Validity:            48 * time.Hour,
		PermittedDNSDomains: []string{"example.com", "example.net"},
	})
	c := ca.Certificate()
	if got, want := c.Subject.CommonName, "ACME Corp CA"; got != want {
		t.Errorf("CommonName=%q, want %q", got, want)
	}
	if got, want := describeKey(c.PublicKey), "RSA 3072"; got != want {
		t.Errorf("key is %s, want %s", got, want)
	}
	if got, want := c.NotAfter.Sub(c.NotBefore), 48*time.Hour+clockSkew; got != want {
		t.Errorf("validity %s, want %s", got, want)
	}
	if diff := cmp.Diff(c.PermittedDNSDomains, []string{"example.com", "example.net"}); diff != "" {
		t.Errorf("PermittedDNSDomains (-got +want):\n%s", diff)
	}
	if !c.PermittedDNSDomainsCritical {
		t.Error("name constraints are not critical")
	}
}

func TestNewCAErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts CAOptions
		want string
	}{
		{"key type", CAOptions{KeyType: "dsa"}, `CA key type "dsa"`},
		{"validity", CAOptions{Validity: -time.Hour}, "negative"},
		{"domain", CAOptions{PermittedDNSDomains: []string{"*.example.com"}}, "not a domain name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := NewCA(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewCA: got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	_, certPEM, keyPEM := newCA(t, CAOptions{})
	ca, err := LoadCA(writeFile(t, dir, "ca.crt", certPEM), writeFile(t, dir, "ca.key", keyPEM))
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if got, want := ca.Certificate().Subject.CommonName, DefaultCACommonName; got != want {
		t.Errorf("CommonName=%q, want %q", got, want)
	}
}

func TestLoadCAErrors(t *testing.T) {
	dir := t.TempDir()
	_, certPEM, caKeyPEM := newCA(t, CAOptions{})
	_, _, otherKeyPEM := newCA(t, CAOptions{})

	leafKey := ecKey(t, elliptic.P256())
	leafPEM := selfSigned(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
	}, leafKey)
	expiredKey := ecKey(t, elliptic.P256())
	expiredPEM := selfSigned(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "old CA"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, expiredKey)
	noSignKey := ecKey(t, elliptic.P256())
	noSignPEM := selfSigned(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "odd CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
	}, noSignKey)

	caCrt := writeFile(t, dir, "ca.crt", certPEM)
	caKey := writeFile(t, dir, "ca.key", caKeyPEM)
	for _, tc := range []struct {
		name, certFile, keyFile, want string
	}{
		{"missing cert", filepath.Join(dir, "nope.crt"), caKey, "read CA certificate"},
		{"missing key", caCrt, filepath.Join(dir, "nope.key"), "read CA key"},
		{"cert not PEM", writeFile(t, dir, "garbage.crt", []byte("hello")), caKey, "no PEM certificate found"},
		{"cert is a key", caKey, caKey, `PEM block "PRIVATE KEY", want "CERTIFICATE"`},
		{"key not PEM", caCrt, writeFile(t, dir, "garbage.key", []byte("hello")), "no PEM private key found"},
		{"key is a cert", caCrt, caCrt, `PEM block "CERTIFICATE" is not a private key`},
		{"not a CA", writeFile(t, dir, "leaf.crt", leafPEM), writeFile(t, dir, "leaf.key", keyPEM(t, leafKey)), "is not a CA"},
		{"no cert sign", writeFile(t, dir, "nosign.crt", noSignPEM), writeFile(t, dir, "nosign.key", keyPEM(t, noSignKey)), "may not sign certificates"},
		{"key mismatch", caCrt, writeFile(t, dir, "other.key", otherKeyPEM), "CA key does not match the CA certificate"},
		{"expired", writeFile(t, dir, "old.crt", expiredPEM), writeFile(t, dir, "old.key", keyPEM(t, expiredKey)), "expired at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := LoadCA(tc.certFile, tc.keyFile)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadCA: got %v, %v; want an error containing %q", ca, err, tc.want)
			}
		})
	}
}

func TestParseCAKeyFormats(t *testing.T) {
	now := time.Now()
	caTmpl := func() *x509.Certificate {
		return &x509.Certificate{
			Subject: pkix.Name{CommonName: "operator CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
	}
	rsaCA := rsaKey(t, 2048).(*rsa.PrivateKey)
	ecCA := ecKey(t, elliptic.P384()).(*ecdsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ecCA)
	if err != nil {
		t.Fatal(err)
	}
	_, edCA, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		key    crypto.Signer
		keyPEM []byte
	}{
		{"PKCS#1 RSA", rsaCA, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaCA)})},
		{"SEC1 EC with parameters", ecCA, append(
			pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)},
		{"PKCS#8 Ed25519", edCA, keyPEM(t, edCA)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := ParseCA(selfSigned(t, caTmpl(), tc.key), tc.keyPEM)
			if err != nil {
				t.Fatalf("ParseCA: %v", err)
			}
			issued, err := ca.Sign(shopCSR(t, ecKey(t, elliptic.P256())), shopSpec(), now)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if err := parseCertPEM(t, issued.CertPEM).CheckSignatureFrom(ca.Certificate()); err != nil {
				t.Errorf("leaf signature: %v", err)
			}
		})
	}
}

func TestLoadCertPool(t *testing.T) {
	dir := t.TempDir()
	a, certA, _ := newCA(t, CAOptions{CommonName: "a"})
	b, certB, _ := newCA(t, CAOptions{CommonName: "b"})
	_, certC, _ := newCA(t, CAOptions{CommonName: "c"})
	pool, err := LoadCertPool(writeFile(t, dir, "bundle.pem", append(certA, certB...)))
	if err != nil {
		t.Fatalf("LoadCertPool: %v", err)
	}
	for _, ca := range []*CA{a, b} {
		if _, err := ca.Certificate().Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s is not trusted by the pool: %v", ca.Certificate().Subject, err)
		}
	}
	other := parseCertPEM(t, string(certC))
	if _, err := other.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Error("a CA outside the bundle is trusted")
	}

	for _, tc := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "missing.pem"), "CA bundle: open "},
		{"not PEM", writeFile(t, dir, "garbage.pem", []byte("hello")), "no PEM certificate found"},
	} {
		if _, err := LoadCertPool(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: LoadCertPool = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestSamePublicKey(t *testing.T) {
	k1, k2 := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P256())
	if !SamePublicKey(k1.Public(), k1.Public()) {
		t.Error("a key differs from itself")
	}
	if SamePublicKey(k1.Public(), k2.Public()) {
		t.Error("two keys are the same")
	}
	if SamePublicKey(nil, k1.Public()) || SamePublicKey(k1.Public(), nil) {
		t.Error("nil is the same as a key")
	}
}

func TestParseCertificatesPEM(t *testing.T) {
	_, certA, keyA := newCA(t, CAOptions{CommonName: "a"})
	_, certB, _ := newCA(t, CAOptions{CommonName: "b"})
	certs, err := ParseCertificatesPEM(append(append([]byte("junk before\n"), certA...), append(certB, "\n"...)...))
	if err != nil {
		t.Fatalf("ParseCertificatesPEM: %v", err)
	}
	var names []string
	for _, c := range certs {
		names = append(names, c.Subject.CommonName)
	}
	if !cmp.Equal(names, []string{"a", "b"}) {
		t.Errorf("certificates %q, want [a b]", names)
	}
	if certs, err := ParseCertificatesPEM(nil); err != nil || certs != nil {
		t.Errorf("ParseCertificatesPEM(nil) = %v, %v; want no certificates and no error (an empty chain)", certs, err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"a key among them", append(certA, keyA...), `PEM block "PRIVATE KEY", want "CERTIFICATE"`},
		{"not DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), "certificate 1:"},
	} {
		if _, err := ParseCertificatesPEM(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseCertificatesPEM = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestNewIssued(t *testing.T) {
	ca, _, _ := newCA(t, CAOptions{})
	leaf := ca.Certificate()
	iss := NewIssued(leaf, "chain\n")
	sum := sha256.Sum256(leaf.Raw)
	if want := hex.EncodeToString(sum[:]); iss.SHA256 != want || Fingerprint(leaf.Raw) != want {
		t.Errorf("SHA256 %s, Fingerprint %s; want %s", iss.SHA256, Fingerprint(leaf.Raw), want)
	}
	if iss.Serial != leaf.SerialNumber.Text(16) || !iss.NotBefore.Equal(leaf.NotBefore) || !iss.NotAfter.Equal(leaf.NotAfter) || iss.ChainPEM != "chain\n" {
		t.Errorf("NewIssued = %+v, does not describe %v", iss, leaf.Subject)
	}
	if back := parseCertPEM(t, iss.CertPEM); !back.Equal(leaf) {
		t.Error("CertPEM is another certificate")
	}
}

// ---- CheckCSR ----

func TestCheckCSRAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec func(*spec.CertificateSpec)
		key  crypto.Signer
		csr  x509.CertificateRequest
	}{
		{
			name: "exact",
			key:  ecKey(t, elliptic.P256()),
			csr:  x509.CertificateRequest{Subject: pkix.Name{CommonName: "shop.example.com"}, DNSNames: []string{"shop.example.com", "www.shop.example.com"}},
		},
		{
			name: "names in another order, other case, repeated",
			key:  ecKey(t, elliptic.P256()),
			csr: x509.CertificateRequest{Subject: pkix.Name{CommonName: "shop.example.com"},
				DNSNames: []string{"WWW.shop.example.com", "shop.example.com", "www.shop.example.com"}},
		},
		{
			name: "default key, no common name, every SAN type",
			spec: func(s *spec.CertificateSpec) {
				s.PrivateKey = spec.PrivateKey{}
				s.CommonName = ""
				s.DNSNames = nil
				s.IPAddresses = []string{"10.0.0.1", "2001:db8::1"}
				s.URIs = []string{"spiffe://example.com/shop"}
				s.EmailAddresses = []string{"ops@example.com"}
			},
			key: ecKey(t, elliptic.P256()),
			csr: x509.CertificateRequest{
				IPAddresses:    []net.IP{net.ParseIP("2001:db8::1"), net.ParseIP("10.0.0.1")},
				URIs:           []*url.URL{{Scheme: "spiffe", Host: "example.com", Path: "/shop"}},
				EmailAddresses: []string{"ops@example.com"},
			},
		},
		{
			name: "RSA 3072",
			spec: func(s *spec.CertificateSpec) {
				s.PrivateKey = spec.PrivateKey{Algorithm: spec.AlgorithmRSA, Size: 3072}
			},
			key: rsaKey(t, 3072),
			csr: x509.CertificateRequest{Subject: pkix.Name{CommonName: "shop.example.com"}, DNSNames: []string{"shop.example.com", "www.shop.example.com"}},
		},
		{
			name: "Ed25519",
			spec: func(s *spec.CertificateSpec) { s.PrivateKey = spec.PrivateKey{Algorithm: spec.AlgorithmEd25519} },
			key: func() crypto.Signer {
				_, k, _ := ed25519.GenerateKey(rand.Reader)
				return k
			}(),
			csr: x509.CertificateRequest{Subject: pkix.Name{CommonName: "shop.example.com"}, DNSNames: []string{"shop.example.com", "www.shop.example.com"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := shopSpec()
			if tc.spec != nil {
				tc.spec(s)
			}
			if err := CheckCSR(makeCSR(t, tc.key, &tc.csr), s); err != nil {
				t.Errorf("CheckCSR: %v", err)
			}
		})
	}
}

func TestCheckCSRMismatches(t *testing.T) {
	p256 := ecKey(t, elliptic.P256())
	names := []string{"shop.example.com", "www.shop.example.com"}
	cn := pkix.Name{CommonName: "shop.example.com"}
	for _, tc := range []struct {
		name string
		spec func(*spec.CertificateSpec)
		key  crypto.Signer
		csr  x509.CertificateRequest
		want []string
	}{
		{
			name: "extra DNS name",
			key:  p256,
			csr:  x509.CertificateRequest{Subject: cn, DNSNames: append([]string{"evil.example.com"}, names...)},
			want: []string{`unexpected DNS name "evil.example.com"`},
		},
		{
			name: "missing DNS name",
			key:  p256,
			csr:  x509.CertificateRequest{Subject: cn, DNSNames: names[:1]},
			want: []string{`missing DNS name "www.shop.example.com"`},
		},
		{
			name: "wrong common name",
			key:  p256,
			csr:  x509.CertificateRequest{Subject: pkix.Name{CommonName: "evil.example.com"}, DNSNames: names},
			want: []string{`common name is "evil.example.com", want "shop.example.com"`},
		},
		{
			name: "common name where none is wanted",
			spec: func(s *spec.CertificateSpec) { s.CommonName = "" },
			key:  p256,
			csr:  x509.CertificateRequest{Subject: cn, DNSNames: names},
			want: []string{`common name is "shop.example.com", want ""`},
		},
		{
			name: "wrong key type",
			key:  rsaKey(t, 2048),
			csr:  x509.CertificateRequest{Subject: cn, DNSNames: names},
			want: []string{"key is RSA 2048, want ECDSA P-256"},
		},
		{
			name: "wrong RSA size",
			spec: func(s *spec.CertificateSpec) {
				s.PrivateKey = spec.PrivateKey{Algorithm: spec.AlgorithmRSA, Size: 3072}
			},
			key:  rsaKey(t, 2048),
			csr:  x509.CertificateRequest{Subject: cn, DNSNames: names},
			want: []string{"key is RSA 2048, want RSA 3072"},
		},
		{
			name: "wrong curve",
			spec: func(s *spec.CertificateSpec) { s.PrivateKey.Size = 384 },
			key:  p256,
			csr:  x509.CertificateRequest{Subject: cn, DNSNames: names},
			want: []string{"key is ECDSA P-256, want ECDSA P-384"},
		},
		{
			name: "Ed25519 wanted",
			spec: func(s *spec.CertificateSpec) { s.PrivateKey = spec.PrivateKey{Algorithm: spec.AlgorithmEd25519} },
			key:  p256,
			csr:  x509.CertificateRequest{Subject: cn, DNSNames: names},
			want: []string{"key is ECDSA P-256, want Ed25519"},
		},
		{
			name: "IP mismatch",
			spec: func(s *spec.CertificateSpec) { s.IPAddresses = []string{"10.0.0.1"} },
			key:  p256,
			csr:  x509.CertificateRequest{Subject: cn, DNSNames: names, IPAddresses: []net.IP{net.ParseIP("10.0.0.2")}},
			want: []string{`unexpected IP address "10.0.0.2"`, `missing IP address "10.0.0.1"`},
		},
		{
			name: "URI mismatch",
			spec: func(s *spec.CertificateSpec) { s.URIs = []string{"spiffe://example.com/shop"} },
			key:  p256,
			csr:  x509.CertificateRequest{Subject: cn, DNSNames: names, URIs: []*url.URL{{Scheme: "spiffe", Host: "example.com", Path: "/admin"}}},
			want: []string{`unexpected URI "spiffe://example.com/admin"`, `missing URI "spiffe://example.com/shop"`},
		},
		{
			name: "email mismatch",
			spec: func(s *spec.CertificateSpec) { s.EmailAddresses = []string{"ops@example.com"} },
			key:  p256,
			csr:  x509.CertificateRequest{Subject: cn, DNSNames: names, EmailAddresses: []string{"ceo@example.com"}},
			want: []string{`unexpected email address "ceo@example.com"`, `missing email address "ops@example.com"`},
		},
		{
			name: "everything at once",
			key:  rsaKey(t, 2048),
			csr:  x509.CertificateRequest{Subject: cn, DNSNames: []string{"shop.example.com", "evil.example.com"}},
			want: []string{
				"key is RSA 2048, want ECDSA P-256",
				`unexpected DNS name "evil.example.com"`,
				`missing DNS name "www.shop.example.com"`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := shopSpec()
			if tc.spec != nil {
				tc.spec(s)
			}
			err := CheckCSR(makeCSR(t, tc.key, &tc.csr), s)
			checkMismatch(t, err, tc.want)
		})
	}
}

func TestCheckCSRBadSignature(t *testing.T) {
	csr := shopCSR(t, ecKey(t, elliptic.P256()))
	csr.Signature[len(csr.Signature)-1] ^= 0xff
	err := CheckCSR(csr, shopSpec())
	var mm *MismatchError
	if !errors.As(err, &mm) || len(mm.Problems) != 1 || !strings.HasPrefix(mm.Problems[0], "invalid CSR signature") {
		t.Errorf("CheckCSR: got %v, want only an invalid signature", err)
	}
}

func TestCheckCSRMessage(t *testing.T) {
	csr := makeCSR(t, rsaKey(t, 2048), &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "shop.example.com"},
		DNSNames: []string{"shop.example.com", "evil.example.com"},
	})
	err := CheckCSR(csr, shopSpec())
	want := `CSR does not match the certificate spec: key is RSA 2048, want ECDSA P-256; ` +
		`unexpected DNS name "evil.example.com"; missing DNS name "www.shop.example.com"`
	if err == nil || err.Error() != want {
		t.Errorf("CheckCSR error:\n got %v\nwant %s", err, want)
	}
}

func checkMismatch(t *testing.T, err error, want []string) {
	t.Helper()
	if got := failure.KindOf(err); got != failure.Rejected {
		t.Errorf("kind of %v is %v, want %v", err, got, failure.Rejected)
	}
	var mm *MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("CheckCSR: got %v, want a *MismatchError", err)
	}
	if diff := cmp.Diff(mm.Problems, want); diff != "" {
		t.Errorf("problems (-got +want):\n%s", diff)
	}
}

// ---- Sign ----

func TestSign(t *testing.T) {
	ca, caPEM, _ := newCA(t, CAOptions{})
	now := time.Now()
	s := shopSpec()
	s.Subject = &spec.Subject{Organizations: []string{"Shop Inc"}, Countries: []string{"DE"}}
	issued, err := ca.Sign(shopCSR(t, ecKey(t, elliptic.P256())), s, now)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	leaf := parseCertPEM(t, issued.CertPEM)

	if diff := cmp.Diff(leaf.DNSNames, s.DNSNames); diff != "" {
		t.Errorf("DNS names (-got +want):\n%s", diff)
	}
	if len(leaf.IPAddresses)+len(leaf.URIs)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf has SANs the spec has not: %v %v %v", leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses)
	}
	if got, want := leaf.Subject.String(), "CN=shop.example.com,O=Shop Inc,C=DE"; got != want {
		t.Errorf("subject %q, want %q", got, want)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Errorf("IsCA=%v BasicConstraintsValid=%v, want false and true", leaf.IsCA, leaf.BasicConstraintsValid)
	}
	if got, want := hex.EncodeToString(leaf.AuthorityKeyId), hex.EncodeToString(ca.Certificate().SubjectKeyId); got != want {
		t.Errorf("AuthorityKeyId %s, want the CA's SubjectKeyId %s", got, want)
	}
	if got, want := leaf.NotBefore, now.Add(-time.Minute).Truncate(time.Second); !got.Equal(want) {
		t.Errorf("NotBefore %s, want %s", got, want)
	}
	if got, want := leaf.NotAfter, now.Add(2160*time.Hour).Truncate(time.Second); !got.Equal(want) {
		t.Errorf("NotAfter %s, want %s", got, want)
	}

	if got, want := issued.Serial, leaf.SerialNumber.Text(16); got != want {
		t.Errorf("Serial %s, want %s", got, want)
	}
	sum := sha256.Sum256(leaf.Raw)
	if got, want := issued.SHA256, hex.EncodeToString(sum[:]); got != want {
		t.Errorf("SHA256 %s, want %s", got, want)
	}
	if !issued.NotBefore.Equal(leaf.NotBefore) || !issued.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("Issued validity %s–%s, want the leaf's %s–%s", issued.NotBefore, issued.NotAfter, leaf.NotBefore, leaf.NotAfter)
	}
	if got, want := issued.ChainPEM, string(caPEM); got != want {
		t.Errorf("ChainPEM:\n%s\nwant the CA certificate:\n%s", got, want)
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(issued.ChainPEM)) {
		t.Fatal("ChainPEM holds no certificate")
	}
	for _, name := range s.DNSNames {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
}

// The SANs come from the spec, never from the CSR.
func TestSignNamesFromSpec(t *testing.T) {
	ca, _, _ := newCA(t, CAOptions{})
	csr := makeCSR(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "evil.example.com", Organization: []string{"Evil"}},
		DNSNames:    []string{"evil.example.com", "shop.example.com"},
		IPAddresses: []net.IP{net.ParseIP("10.6.6.6")},
	})
	s := shopSpec()
	s.IPAddresses = []string{"192.0.2.1", "::ffff:192.0.2.2"}
	s.URIs = []string{"spiffe://example.com/shop"}
	s.EmailAddresses = []string{"ops@example.com"}
	issued, err := ca.Sign(csr, s, time.Now())
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	leaf := parseCertPEM(t, issued.CertPEM)
	got := map[string]any{
		"cn": leaf.Subject.String(), "dns": leaf.DNSNames, "ips": ipStrings(leaf.IPAddresses),
		"uris": uriStrings(leaf.URIs), "emails": leaf.EmailAddresses,
	}
	want := map[string]any{
		"cn": "CN=shop.example.com", "dns": s.DNSNames, "ips": []string{"192.0.2.1", "192.0.2.2"},
		"uris": s.URIs, "emails": s.EmailAddresses,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("leaf names (-got +want):\n%s", diff)
	}
}

func TestSignUsages(t *testing.T) {
	ca, _, _ := newCA(t, CAOptions{})
	for _, tc := range []struct {
		name    string
		key     crypto.Signer
		usages  []string
		wantKU  x509.KeyUsage
		wantEKU []x509.ExtKeyUsage
	}{
		{"default ECDSA", ecKey(t, elliptic.P256()), nil,
			x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"default RSA", rsaKey(t, 2048), nil,
			x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"explicit", ecKey(t, elliptic.P256()), []string{"digital signature", "key-agreement", "server auth", "client-auth", "client auth"},
			x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		{"code and mail", ecKey(t, elliptic.P256()), []string{"signing", "code signing", "email protection"},
			x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageEmailProtection}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := shopSpec()
			s.Usages = tc.usages
			issued, err := ca.Sign(shopCSR(t, tc.key), s, time.Now())
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			leaf := parseCertPEM(t, issued.CertPEM)
			if leaf.KeyUsage != tc.wantKU {
				t.Errorf("KeyUsage %v, want %v", leaf.KeyUsage, tc.wantKU)
			}
			if diff := cmp.Diff(leaf.ExtKeyUsage, tc.wantEKU); diff != "" {
				t.Errorf("ExtKeyUsage (-got +want):\n%s", diff)
			}
		})
	}
}

func TestSignErrors(t *testing.T) {
	ca, _, _ := newCA(t, CAOptions{Validity: time.Hour, PermittedDNSDomains: []string{"example.com"}})
	now := time.Now()
	csr := shopCSR(t, ecKey(t, elliptic.P256()))
	for _, tc := range []struct {
		name     string
		spec     func(*spec.CertificateSpec)
		now      time.Time
		wantKind failure.Kind
		want     string
	}{
		{"unknown usage", func(s *spec.CertificateSpec) { s.Usages = []string{"world domination"} }, now,
			failure.Invalid, `unknown usage "world domination"`},
		{"bad IP", func(s *spec.CertificateSpec) { s.IPAddresses = []string{"10.0.0.300"} }, now,
			failure.Invalid, `"10.0.0.300" is not an IP address`},
		{"outside name constraints", func(s *spec.CertificateSpec) { s.DNSNames = append(s.DNSNames, "shop.example.org") }, now,
			failure.Rejected, "not permitted"},
		{"CA expired", nil, now.Add(2 * time.Hour), failure.Unavailable, "is not valid at"},
		{"CA not yet valid", nil, now.Add(-time.Hour), failure.Unavailable, "is not valid at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := shopSpec()
			if tc.spec != nil {
				tc.spec(s)
			}
			issued, err := ca.Sign(csr, s, tc.now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sign: got %v, %v; want an error containing %q", issued, err, tc.want)
			}
			if got := failure.KindOf(err); got != tc.wantKind {
				t.Errorf("kind of %v is %v, want %v", err, got, tc.wantKind)
			}
		})
	}
}

func TestSignNotAfterCappedByCA(t *testing.T) {
	ca, _, _ := newCA(t, CAOptions{Validity: 24 * time.Hour})
	issued, err := ca.Sign(shopCSR(t, ecKey(t, elliptic.P256())), shopSpec(), time.Now())
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if got, want := issued.NotAfter, ca.Certificate().NotAfter; !got.Equal(want) {
		t.Errorf("NotAfter %s, want the CA's %s", got, want)
	}
}

func TestSignSerials(t *testing.T) {
	ca, _, _ := newCA(t, CAOptions{})
	csr := shopCSR(t, ecKey(t, elliptic.P256()))
	seen := make(map[string]bool)
	for range 100 {
		issued, err := ca.Sign(csr, shopSpec(), time.Now())
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		serial, ok := new(big.Int).SetString(issued.Serial, 16)
		if !ok {
			t.Fatalf("serial %q is not hex", issued.Serial)
		}
		if serial.BitLen() <= 100 {
			t.Errorf("serial %s has %d bits, want more than 100", issued.Serial, serial.BitLen())
		}
		if seen[issued.Serial] {
			t.Errorf("serial %s issued twice", issued.Serial)
		}
		seen[issued.Serial] = true
	}
}

// A CA file may carry the chain above the CA; every leaf gets it.
func TestSignIntermediateChain(t *testing.T) {
	now := time.Now()
	rootKey := ecKey(t, elliptic.P256())
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootPEM := selfSigned(t, rootTmpl, rootKey)
	root := parseCertPEM(t, string(rootPEM))
	interKey := ecKey(t, elliptic.P256())
	interDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(12 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, root, interKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	interPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: interDER})

	ca, err := ParseCA(append(interPEM, rootPEM...), keyPEM(t, interKey))
	if err != nil {
		t.Fatalf("ParseCA: %v", err)
	}
	issued, err := ca.Sign(shopCSR(t, ecKey(t, elliptic.P256())), shopSpec(), now)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if got, want := issued.ChainPEM, string(interPEM)+string(rootPEM); got != want {
		t.Errorf("ChainPEM:\n%s\nwant intermediate then root", got)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inters.AppendCertsFromPEM(interPEM)
	leaf := parseCertPEM(t, issued.CertPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "shop.example.com", Roots: roots, Intermediates: inters, CurrentTime: now}); err != nil {
		t.Errorf("verify against the root: %v", err)
	}
	if !issued.NotAfter.Equal(now.Add(12 * time.Hour).Truncate(time.Second)) {
		t.Errorf("NotAfter %s, want the intermediate's %s", issued.NotAfter, now.Add(12*time.Hour))
	}
}

// ---- agent-side helpers ----

func TestGenerateKeyNewCSR(t *testing.T) {
	for _, tc := range []struct {
		key  agentproto.KeySpec
		want string
	}{
		{agentproto.KeySpec{}, "ECDSA P-256"},
		{agentproto.KeySpec{Algorithm: "ECDSA", Size: 384}, "ECDSA P-384"},
		{agentproto.KeySpec{Algorithm: "ECDSA", Size: 521}, "ECDSA P-521"},
		{agentproto.KeySpec{Algorithm: "RSA"}, "RSA 2048"},
		{agentproto.KeySpec{Algorithm: "RSA", Size: 3072}, "RSA 3072"},
		{agentproto.KeySpec{Algorithm: "Ed25519"}, "Ed25519"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			key, err := GenerateKey(tc.key)
			if err != nil {
				t.Fatalf("GenerateKey: %v", err)
			}
			if got := describeKey(key.Public()); got != tc.want {
				t.Errorf("key is %s, want %s", got, tc.want)
			}
			if !KeyMatches(key.Public(), tc.key) {
				t.Errorf("KeyMatches(%s key, %+v) = false, want true", tc.want, tc.key)
			}
			if other := (agentproto.KeySpec{Algorithm: "RSA", Size: 4096}); KeyMatches(key.Public(), other) {
				t.Errorf("KeyMatches(%s key, %+v) = true, want false", tc.want, other)
			}
			pemKey, err := MarshalKeyPEM(key)
			if err != nil {
				t.Fatalf("MarshalKeyPEM: %v", err)
			}
			back, err := ParseKeyPEM(pemKey)
			if err != nil {
				t.Fatalf("ParseKeyPEM: %v", err)
			}
			if !SamePublicKey(back.Public(), key.Public()) {
				t.Error("ParseKeyPEM(MarshalKeyPEM(key)) is another key")
			}

			a := agentproto.Assignment{
				Name: "shop", CommonName: "shop.example.com",
				DNSNames:    []string{"shop.example.com", "www.shop.example.com"},
				IPAddresses: []string{"192.0.2.1"}, URIs: []string{"spiffe://example.com/shop"},
				EmailAddresses: []string{"ops@example.com"}, Key: tc.key,
			}
			csrPEM, err := NewCSR(key, a)
			if err != nil {
				t.Fatalf("NewCSR: %v", err)
			}
			csr, err := ParseCSR(csrPEM)
			if err != nil {
				t.Fatalf("ParseCSR: %v", err)
			}
			s := &spec.CertificateSpec{
				CommonName: a.CommonName, DNSNames: a.DNSNames, IPAddresses: a.IPAddresses, URIs: a.URIs,
				EmailAddresses: a.EmailAddresses,
				PrivateKey:     spec.PrivateKey{Algorithm: tc.key.Algorithm, Size: tc.key.Size},
			}
			if err := CheckCSR(csr, s); err != nil {
				t.Errorf("CheckCSR of NewCSR: %v", err)
			}
		})
	}
}

func TestGenerateKeyErrors(t *testing.T) {
	for _, k := range []agentproto.KeySpec{
		{Algorithm: "ECDSA", Size: 255},
		{Algorithm: "RSA", Size: 1024},
		{Algorithm: "DSA"},
	} {
		if key, err := GenerateKey(k); err == nil {
			t.Errorf("GenerateKey(%+v) = %T, want an error", k, key)
		}
	}
}

func TestNewCSRErrors(t *testing.T) {
	key := ecKey(t, elliptic.P256())
	for _, a := range []agentproto.Assignment{
		{Name: "bad-ip", IPAddresses: []string{"not-an-ip"}},
		{Name: "bad-uri", URIs: []string{"no-scheme"}},
	} {
		if _, err := NewCSR(key, a); err == nil {
			t.Errorf("NewCSR(%s): got no error", a.Name)
		}
	}
}

func TestParseCSRErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not PEM", "hello", "not PEM encoded"},
		{"wrong type", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})), `CSR PEM block is "CERTIFICATE"`},
		{"bad DER", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1, 2, 3}})), "parse CSR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := ParseCSR([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseCSR: got %v, %v; want an error containing %q", csr, err, tc.want)
			}
		})
	}
}

func TestParseKeyPEMErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not PEM", "hello", "no PEM private key found"},
		{"bad DER", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})), "parse PRIVATE KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ParseKeyPEM([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseKeyPEM: got %T, %v; want an error containing %q", key, err, tc.want)
			}
		})
	}
}

// BenchmarkSignECDSA is one issuance as the issuer does it: check the CSR
// against the spec, then sign.
func BenchmarkSignECDSA(b *testing.B) {
	ca, _, _ := newCA(b, CAOptions{})
	csr := shopCSR(b, ecKey(b, elliptic.P256()))
	s := shopSpec()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckCSR(csr, s); err != nil {
			b.Fatal(err)
		}
		if _, err := ca.Sign(csr, s, now); err != nil {
			b.Fatal(err)
		}
	}
}

func TestIssueServing(t *testing.T) {
	ca, caPEM, _ := newCA(t, CAOptions{})
	now := time.Now()
	chain, keyPEM, err := ca.IssueServing([]string{"localhost", "127.0.0.1"}, time.Hour, true, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(chain, keyPEM); err != nil {
		t.Fatalf("not a key pair: %v", err)
	}
	certs, err := ParseCertificatesPEM(chain)
	if err != nil || len(certs) != 2 {
		t.Fatalf("chain: %d certificates, %v; want leaf and CA", len(certs), err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	leaf := certs[0]
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if got := leaf.NotAfter.Sub(now); got > time.Hour || got < 59*time.Minute {
		t.Errorf("validity %s, want an hour", got)
	}
	if _, _, err := ca.IssueServing(nil, time.Hour, false, now); err == nil {
		t.Error("no names: issued")
	}
}
