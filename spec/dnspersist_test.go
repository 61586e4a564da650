package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestDNSPersist01Challenge(t *testing.T) {
	const head = "apiVersion: certops/v1\nkind: Issuer\nmetadata: {name: le}\nspec:\n  acme:\n    directoryURL: https://acme-v02.api.letsencrypt.org/directory\n    accountKeyFile: /var/lib/certops/le.key\n    challenge:\n"
	tests := []struct {
		name, body string
		want       []string
	}{
		{"issuer domain name only", `
      dnsPersist01: {issuerDomainName: letsencrypt.org}`, nil},
		{"with persistUntil", `
      dnsPersist01:
        issuerDomainName: letsencrypt.org
        persistUntil: "2027-06-30T00:00:00+02:00"`, nil},
		{"missing issuerDomainName", `
      dnsPersist01: {persistUntil: "2027-01-01T00:00:00Z"}`, []string{
			`x.yaml:9: spec.acme.challenge.dnsPersist01.issuerDomainName: required`,
		}},
		{"empty block", `
      dnsPersist01: {}`, []string{
			`x.yaml:9: spec.acme.challenge.dnsPersist01.issuerDomainName: required`,
		}},
		{"uppercase issuer domain name", `
      dnsPersist01: {issuerDomainName: LetsEncrypt.org}`, []string{
			`x.yaml:9: spec.acme.challenge.dnsPersist01.issuerDomainName: "LetsEncrypt.org" must be lowercase (write "letsencrypt.org")`,
		}},
		{"trailing dot", `
      dnsPersist01: {issuerDomainName: letsencrypt.org.}`, []string{
			`x.yaml:9: spec.acme.challenge.dnsPersist01.issuerDomainName: "letsencrypt.org." is not a valid issuer domain name: it ends with a dot (write it without the trailing dot) (an internationalized name is written in its xn-- form)`,
		}},
		{"a URL instead of a domain name", `
      dnsPersist01: {issuerDomainName: "https://letsencrypt.org"}`, []string{
			`x.yaml:9: spec.acme.challenge.dnsPersist01.issuerDomainName: "https://letsencrypt.org" is not a valid issuer domain name: label "https://letsencrypt" contains ':' (only letters, digits and '-' are allowed) (an internationalized name is written in its xn-- form)`,
		}},
		{"a wildcard", `
      dnsPersist01: {issuerDomainName: "*.letsencrypt.org"}`, []string{
			`x.yaml:9: spec.acme.challenge.dnsPersist01.issuerDomainName: "*.letsencrypt.org" is not a valid issuer domain name: label "*" contains '*' (only letters, digits and '-' are allowed) (an internationalized name is written in its xn-- form)`,
		}},
		{"persistUntil not RFC 3339", `
      dnsPersist01: {issuerDomainName: letsencrypt.org, persistUntil: "2027-01-01"}`, []string{
			`x.yaml:9: spec.acme.challenge.dnsPersist01.persistUntil: "2027-01-01" is not an RFC 3339 time (e.g. "2027-01-01T00:00:00Z")`,
		}},
		{"persistUntil as UNIX seconds", `
      dnsPersist01: {issuerDomainName: letsencrypt.org, persistUntil: "1798761600"}`, []string{
			`x.yaml:9: spec.acme.challenge.dnsPersist01.persistUntil: "1798761600" is not an RFC 3339 time (e.g. "2027-01-01T00:00:00Z")`,
		}},
		{"two challenge types", `
      dns01: {provider: cloudflare}
      dnsPersist01: {issuerDomainName: letsencrypt.org}`, []string{
			`x.yaml:8: spec.acme.challenge: only one of http01, dns01, dnsPersist01 may be set`,
		}},
		{"three challenge types, one of them broken", `
      http01: {webroot: /var/www}
      dns01: {provider: cloudflare}
      dnsPersist01: {issuerDomainName: ""}`, []string{
			`x.yaml:8: spec.acme.challenge: only one of http01, dns01, dnsPersist01 may be set`,
			`x.yaml:11: spec.acme.challenge.dnsPersist01.issuerDomainName: required`,
		}},
		{"unknown option", `
      dnsPersist01: {issuerDomainName: letsencrypt.org, wildcard: true}`, []string{
			`x.yaml:9: spec.acme.challenge.dnsPersist01: unknown field "wildcard"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := ParseFile("x.yaml", []byte(head+strings.TrimPrefix(tt.body, "\n")+"\n"))
			if diff := cmp.Diff(errorStrings(t, errs), tt.want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}

func TestPersistUntilTime(t *testing.T) {
	d := &DNSPersist01Challenge{PersistUntil: "2027-06-30T00:00:00+02:00"}
	if got, want := d.PersistUntilTime(), time.Date(2027, 6, 29, 22, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("PersistUntilTime() = %s, want %s", got, want)
	}
	if got := (&DNSPersist01Challenge{}).PersistUntilTime(); !got.IsZero() {
		t.Errorf("PersistUntilTime() of an empty field = %s, want the zero time", got)
	}
}
