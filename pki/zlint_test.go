package pki

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sort"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/certops/certops/spec"
)

// rfcLints are zlint's RFC 5280 and RFC 8813 lints. The CA/Browser Forum
// lints are for public CAs and out of scope for a private one.
func rfcLints(t *testing.T) lint.Registry {
	t.Helper()
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lint.SourceList{lint.RFC5280, lint.RFC8813}})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// zlintFindings lists the errors and warnings zlint finds in der.
func zlintFindings(t *testing.T, reg lint.Registry, der []byte) []string {
	t.Helper()
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("zcrypto parse: %v", err)
	}
	var out []string
	for name, r := range zlint.LintCertificateEx(c, reg).Results {
		if r.Status == lint.Error || r.Status == lint.Warn || r.Status == lint.Fatal {
			out = append(out, fmt.Sprintf("%s: %s %s", r.Status, name, r.Details))
		}
	}
	sort.Strings(out)
	return out
}

func TestZlintCAAndLeaves(t *testing.T) {
	reg := rfcLints(t)
	leafKeys := map[string]func() crypto.Signer{
		"ecdsa-p256": func() crypto.Signer { return ecKey(t, elliptic.P256()) },
		"ecdsa-p384": func() crypto.Signer { return ecKey(t, elliptic.P384()) },
		"ecdsa-p521": func() crypto.Signer { return ecKey(t, elliptic.P521()) },
		"rsa-2048":   func() crypto.Signer { return rsaKey(t, 2048) },
		"rsa-3072":   func() crypto.Signer { return rsaKey(t, 3072) },
		"rsa-4096":   func() crypto.Signer { return rsaKey(t, 4096) },
		"ed25519": func() crypto.Signer {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return k
		},
	}
	specs := map[string]*spec.CertificateSpec{
		"dns": {CommonName: "shop.example.com", DNSNames: []string{"shop.example.com", "www.shop.example.com"}},
		"ip":  {IPAddresses: []string{"192.0.2.10", "2001:db8::10"}},
		"email": {EmailAddresses: []string{"ops@example.com"},
			Usages: []string{"digital signature", "email protection"}},
		"uri": {URIs: []string{"spiffe://example.com/ns/prod/sa/web"},
			Usages: []string{"digital signature", "client auth", "server auth"}},
		"all": {CommonName: "shop.example.com", DNSNames: []string{"shop.example.com"}, IPAddresses: []string{"192.0.2.10"},
			EmailAddresses: []string{"ops@example.com"}, URIs: []string{"spiffe://example.com/web"},
			Subject: &spec.Subject{Organizations: []string{"Example"}, Countries: []string{"DE"}}},
	}
	for _, caType := range []string{KeyTypeECDSA, KeyTypeRSA} {
		for _, constrained := range []bool{false, true} {
			opts := CAOptions{KeyType: caType}
			if constrained {
				opts.PermittedDNSDomains = []string{"example.com"}
			}
			ca, certPEM, _ := newCA(t, opts)
			block, _ := pem.Decode(certPEM)
			name := fmt.Sprintf("ca-%s-constrained=%v", caType, constrained)
			if f := zlintFindings(t, reg, block.Bytes); len(f) > 0 {
				t.Errorf("%s: %d finding(s):\n%s", name, len(f), joinLines(f))
			}
			// The serving certificates certops issues itself (serve
			// --tls-self-issuer, the demo), with and without client auth.
			names := []string{"certops.example.com", "127.0.0.1"}
			if constrained {
				names = names[:1] // the constraints close IP addresses
			}
			for _, client := range []bool{false, true} {
				chain, _, err := ca.IssueServing(names, time.Hour, client, time.Now())
				if err != nil {
					t.Fatalf("%s: IssueServing: %v", name, err)
				}
				leaf := parseCertPEM(t, string(chain))
				if f := zlintFindings(t, reg, leaf.Raw); len(f) > 0 {
					t.Errorf("%s/serving client=%v: %d finding(s):\n%s", name, client, len(f), joinLines(f))
				}
			}
			for keyName, newKey := range leafKeys {
				key := newKey()
				for specName, s := range specs {
					if constrained && specName != "dns" {
						continue // only DNS names are permitted
					}
					c := *s
					c.IssuerRef, c.Duration = "ca", "2160h"
					csr := makeCSR(t, key, &x509.CertificateRequest{})
					issued, err := ca.Sign(csr, &c, time.Now())
					if err != nil {
						t.Fatalf("%s/%s/%s: Sign: %v", name, keyName, specName, err)
					}
					leaf := parseCertPEM(t, issued.CertPEM)
					if f := zlintFindings(t, reg, leaf.Raw); len(f) > 0 {
						t.Errorf("%s/%s/%s: %d finding(s):\n%s", name, keyName, specName, len(f), joinLines(f))
					}
				}
			}
		}
	}
}

func joinLines(s []string) string {
	out := ""
	for _, l := range s {
		out += "  " + l + "\n"
	}
	return out
}
