package review

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/certops/certops/spec"
)

// rateFleet is an ACME issuer le (Let's Encrypt: 5 certificates per name
// set per week unless limit overrides it), n agents labelled role=web, and
// the certificates certs.
func rateFleet(n int, limit *int, certs ...*spec.Object) map[spec.Key]*spec.Object {
	acme := &spec.ACMEIssuer{DirectoryURL: "https://acme-v02.api.letsencrypt.org/directory", AccountKeyFile: "/var/lib/certops/le.key",
		Challenge: spec.ACMEChallenge{HTTP01: &spec.HTTP01Challenge{Webroot: "/var/www"}}}
	if limit != nil {
		acme.RateLimits = &spec.ACMERateLimits{CertificatesPerNameSetPerWeek: limit}
	}
	objs := []*spec.Object{
		{Kind: spec.KindIssuer, Name: "le", Spec: &spec.IssuerSpec{ACME: acme}},
		{Kind: spec.KindIssuer, Name: "zerossl", Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{DirectoryURL: "https://acme.zerossl.com/v2/DV90",
			AccountKeyFile: "/var/lib/certops/z.key", Challenge: spec.ACMEChallenge{HTTP01: &spec.HTTP01Challenge{Webroot: "/var/www"}}}}},
	}
	for i := range n {
		objs = append(objs, &spec.Object{Kind: spec.KindAgent, Name: fmt.Sprintf("web-%02d", i+1), Labels: map[string]string{"role": "web"},
			Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("a", 64)}})
	}
	return objects(append(objs, certs...)...)
}

// rateCert is a certificate of issuer for shop.example.com deployed to
// the web agents.
func rateCert(name, issuer string, edit func(*spec.CertificateSpec)) *spec.Object {
	c := &spec.CertificateSpec{IssuerRef: issuer, DNSNames: []string{"shop.example.com", "www.shop.example.com"},
		Deploy: &spec.Deployment{AgentSelector: &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}},
			Files: spec.DeployFiles{Cert: "/etc/ssl/" + name + ".pem"}}}
	if edit != nil {
		edit(c)
	}
	return &spec.Object{Kind: spec.KindCertificate, Name: name, Spec: c}
}

func TestRateLimitWarnings(t *testing.T) {
	two := 2
	tests := []struct {
		name       string
		base, head map[spec.Key]*spec.Object
		want       []string // substrings of the one warning expected, or none
	}{
		{"a new certificate on 10 agents of Let's Encrypt", rateFleet(10, nil), rateFleet(10, nil, rateCert("shop", "le", nil)),
			[]string{"issuer le allows 5 certificates per week for one set of names, and this change orders 10 for shop.example.com,www.shop.example.com",
				"(Certificate/shop (10 agents)): at least 5 will wait"}},
		{"within the limit", rateFleet(5, nil), rateFleet(5, nil, rateCert("shop", "le", nil)), nil},
		{"two more agents of an existing certificate", rateFleet(8, nil, rateCert("shop", "le", nil)),
			rateFleet(10, nil, rateCert("shop", "le", nil)), nil},
		{"a reissue of every agent", rateFleet(6, nil, rateCert("shop", "le", nil)),
			rateFleet(6, nil, rateCert("shop", "le", func(c *spec.CertificateSpec) { c.Reissue = "2026-12-05" })),
			[]string{"orders 6 for", "at least 1 will wait"}},
		{"two certificates for the same names count together", rateFleet(3, &two),
			rateFleet(3, &two, rateCert("shop", "le", nil), rateCert("shop-copy", "le", func(c *spec.CertificateSpec) {
				c.DNSNames = []string{"WWW.shop.example.com", "shop.example.com"}
			})),
			[]string{"issuer le allows 2 certificates", "orders 6", "(Certificate/shop (3 agents), Certificate/shop-copy (3 agents))", "at least 4 will wait"}},
		{"another CA without rateLimits", rateFleet(10, nil), rateFleet(10, nil, rateCert("shop", "zerossl", nil)), nil},
		{"limit turned off", rateFleet(10, new(int)), rateFleet(10, new(int), rateCert("shop", "le", nil)), nil},
		{"a suspended certificate orders nothing", rateFleet(10, nil),
			rateFleet(10, nil, rateCert("shop", "le", func(c *spec.CertificateSpec) { c.Suspend = true })), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := buildReport(t, "main", "HEAD", tt.base, tt.head)
			if len(tt.want) == 0 {
				if diff := cmp.Diff(r.RateLimitWarnings, []string(nil), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("warnings (-got +want):\n%s", diff)
				}
				return
			}
			if len(r.RateLimitWarnings) != 1 {
				t.Fatalf("warnings %q, want one", r.RateLimitWarnings)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.RateLimitWarnings[0], w) {
					t.Errorf("warning %q lacks %q", r.RateLimitWarnings[0], w)
				}
			}
		})
	}
}

// The warnings are shown in every format, and markdown shows at most
// maxMarkdownWarnings of them (one per name set can be many).
func TestRateLimitWarningsRendered(t *testing.T) {
	var certs []*spec.Object
	for i := range 12 {
		certs = append(certs, rateCert(fmt.Sprintf("shop-%02d", i), "le", func(c *spec.CertificateSpec) {
			c.DNSNames = []string{fmt.Sprintf("shop-%02d.example.com", i)}
		}))
	}
	r := buildReport(t, "main", "HEAD", rateFleet(6, nil), rateFleet(6, nil, certs...))
	if len(r.RateLimitWarnings) != 12 {
		t.Fatalf("%d warnings, want 12", len(r.RateLimitWarnings))
	}
	var text, md, js bytes.Buffer
	if err := r.Text(&text); err != nil {
		t.Fatal(err)
	}
	if err := r.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.JSON(&js); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(text.String(), "warning: issuer le allows 5"); n != 12 {
		t.Errorf("text has %d warnings, want 12:\n%s", n, text.String())
	}
	if n := strings.Count(md.String(), "> **Warning:** issuer le allows 5"); n != maxMarkdownWarnings ||
		!strings.Contains(md.String(), "> **Warning:** … and 2 more (see `certops plan --format json`)") {
		t.Errorf("markdown has %d warnings, want %d and a count of the rest:\n%s", n, maxMarkdownWarnings, md.String())
	}
	if !strings.Contains(js.String(), `"rateLimitWarnings": [`) || strings.Count(js.String(), "issuer le allows 5") != 12 {
		t.Errorf("JSON lacks the 12 rateLimitWarnings:\n%s", js.String())
	}
}
