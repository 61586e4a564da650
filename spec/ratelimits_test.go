package spec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestACMERateLimits(t *testing.T) {
	const head = "apiVersion: certops/v1\nkind: Issuer\nmetadata: {name: le}\nspec:\n  acme:\n" +
		"    accountKeyFile: /var/lib/certops/le.key\n    challenge: {http01: {webroot: /var/www}}\n"
	const le = "    directoryURL: https://acme-v02.api.letsencrypt.org/directory\n"
	tests := []struct {
		name, body string
		want       int      // the effective limit
		errs       []string // validation errors
	}{
		{"Let's Encrypt production by default", "    directoryURL: https://acme-v02.api.letsencrypt.org/directory", 5, nil},
		{"Let's Encrypt staging mirrors production", "    directoryURL: https://acme-staging-v02.api.letsencrypt.org/directory", 5, nil},
		{"another CA: no limit", "    directoryURL: https://acme.zerossl.com/v2/DV90", 0, nil},
		{"a look-alike host is another CA", "    directoryURL: https://letsencrypt.org.example.com/directory", 0, nil},
		{"set for another CA", "    directoryURL: https://ca.internal:14000/dir\n    rateLimits: {certificatesPerNameSetPerWeek: 20}", 20, nil},
		{"turned off for Let's Encrypt", le + "    rateLimits: {certificatesPerNameSetPerWeek: 0}", 0, nil},
		{"empty block keeps the default", le + "    rateLimits: {}", 5, nil},
		{"negative", le + "    rateLimits: {certificatesPerNameSetPerWeek: -1}", 5, []string{
			`x.yaml:9: spec.acme.rateLimits.certificatesPerNameSetPerWeek: -1 is negative (0 means no limit)`}},
		{"not a number", le + "    rateLimits: {certificatesPerNameSetPerWeek: five}", 5, []string{
			`x.yaml:9: spec.acme.rateLimits.certificatesPerNameSetPerWeek: expected an integer, got string "five"`}},
		{"unknown field", le + "    rateLimits: {ordersPerAccount: 300}", 5, []string{
			`x.yaml:9: spec.acme.rateLimits: unknown field "ordersPerAccount"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, errs := ParseFile("x.yaml", []byte(head+tt.body+"\n"))
			if diff := cmp.Diff(errorStrings(t, errs), tt.errs, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("errors (-got +want):\n%s", diff)
			}
			if len(errs) > 0 {
				return
			}
			if got := objs[0].Issuer().ACME.CertificatesPerNameSetPerWeek(); got != tt.want {
				t.Errorf("CertificatesPerNameSetPerWeek() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNameSet(t *testing.T) {
	a := &CertificateSpec{DNSNames: []string{"WWW.Shop.example.com", "shop.example.com", "shop.example.com."},
		IPAddresses: []string{"::ffff:192.0.2.1", "2001:DB8::1"}}
	b := &CertificateSpec{DNSNames: []string{"shop.example.com", "www.shop.example.com"},
		IPAddresses: []string{"2001:db8::1", "192.0.2.1"}}
	const want = "192.0.2.1,2001:db8::1,shop.example.com,www.shop.example.com"
	if got := a.NameSet(); got != want {
		t.Errorf("NameSet() = %q, want %q", got, want)
	}
	if a.NameSet() != b.NameSet() {
		t.Errorf("the same names in another order and case give another set: %q, %q", a.NameSet(), b.NameSet())
	}
	if c := (&CertificateSpec{DNSNames: []string{"shop.example.com"}}); c.NameSet() == b.NameSet() || !strings.Contains(b.NameSet(), c.NameSet()) {
		t.Errorf("a subset must be another name set: %q vs %q", c.NameSet(), b.NameSet())
	}
}
