package spec

import (
	"strings"
	"time"
)

// DNSPersist01Challenge answers dns-persist-01 (draft-ietf-acme-dns-persist)
// with a TXT record the operator creates once per DNS name and keeps:
// _validation-persist.NAME naming the CA's issuer domain name and the ACME
// account. certops never writes DNS for it; it prints the record to create.
type DNSPersist01Challenge struct {
	// IssuerDomainName is the CA's issuer domain name the record names, one
	// of those the CA offers in its challenges (Let's Encrypt:
	// letsencrypt.org; Pebble: pebble.letsencrypt.org). Lowercase, A-label
	// form, no trailing dot.
	IssuerDomainName string `json:"issuerDomainName" yaml:"issuerDomainName"`
	// PersistUntil (RFC 3339), when set, is written into the record
	// (persistUntil=UNIX-SECONDS): the CA accepts the record until then.
	// The record must carry exactly this time.
	PersistUntil string `json:"persistUntil,omitempty" yaml:"persistUntil,omitempty"`
}

// PersistUntilTime is spec.persistUntil parsed; the zero time when it is
// empty (or, for an unvalidated spec, invalid).
func (d *DNSPersist01Challenge) PersistUntilTime() time.Time {
	t, _ := time.Parse(time.RFC3339, d.PersistUntil)
	return t
}

// dnsPersist01 checks spec.acme.challenge.dnsPersist01.
func (c *checker) dnsPersist01(path string, d *DNSPersist01Challenge) {
	switch n := d.IssuerDomainName; {
	case n == "":
		c.errorf(path+".issuerDomainName", "required")
	case strings.ToLower(n) != n:
		c.errorf(path+".issuerDomainName", "%q must be lowercase (write %q)", n, strings.ToLower(n))
	default:
		if msg := dnsNameProblem(n, false); msg != "" {
			c.errorf(path+".issuerDomainName", "%q is not a valid issuer domain name: %s (an internationalized name is written in its xn-- form)", n, msg)
		}
	}
	if d.PersistUntil != "" {
		if _, err := time.Parse(time.RFC3339, d.PersistUntil); err != nil {
			c.errorf(path+".persistUntil", "%q is not an RFC 3339 time (e.g. \"2027-01-01T00:00:00Z\")", d.PersistUntil)
		}
	}
}
