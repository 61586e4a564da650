package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"strings"
	"testing"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
)

func TestCheckCertificateNames(t *testing.T) {
	leaf := func(cn string, dns ...string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	}
	withCN := &spec.CertificateSpec{CommonName: "shop.example.com", DNSNames: []string{"shop.example.com", "www.shop.example.com"}}
	noCN := &spec.CertificateSpec{DNSNames: []string{"shop.example.com"}}
	tests := []struct {
		name string
		leaf *x509.Certificate
		spec *spec.CertificateSpec
		want string // "" for a match
	}{
		{"same", leaf("shop.example.com", "WWW.shop.example.com", "shop.example.com"), withCN, ""},
		{"other common name", leaf("evil.example.com", "shop.example.com", "www.shop.example.com"), withCN, `common name is "evil.example.com", want "shop.example.com"`},
		{"missing name", leaf("shop.example.com", "shop.example.com"), withCN, `missing DNS name "www.shop.example.com"`},
		{"extra name", leaf("shop.example.com", "shop.example.com", "www.shop.example.com", "evil.example.com"), withCN, `unexpected DNS name "evil.example.com"`},
		{"no common name asked, none given", leaf("", "shop.example.com"), noCN, ""},
		{"no common name asked, a DNS name given", leaf("shop.example.com", "shop.example.com"), noCN, ""},
		{"no common name asked, another given", leaf("evil", "shop.example.com"), noCN, `common name "evil" is none of the DNS names`},
		{"extra IP", &x509.Certificate{DNSNames: []string{"shop.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}, noCN, `unexpected IP address "10.0.0.1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCertificateNames(tt.leaf, tt.spec)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one containing %q", err, tt.want)
			case tt.want != "" && failure.KindOf(err) != failure.Rejected:
				t.Errorf("kind of %v is %v, want Rejected", err, failure.KindOf(err))
			}
		})
	}
}
