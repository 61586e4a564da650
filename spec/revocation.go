package spec

import (
	"fmt"
	"math/big"
	"strings"
	"time"
)

// The Revocation kind: certificates revoked on purpose, declared in Git.
// Revoking never happens implicitly (removing a Certificate revokes
// nothing), and it is final: removing a Revocation un-revokes nothing.

// KindRevocation is the kind of a Revocation document.
const KindRevocation Kind = "Revocation"

// Revocation is a document of kind Revocation.
type Revocation struct {
	Header `json:",inline" yaml:",inline"`
	Spec   RevocationSpec `json:"spec" yaml:"spec"`
}

// RevocationSpec revokes serials of one Certificate: those listed in
// Serials, or every one issued before IssuedBefore (exactly one of the
// two), for Reason.
type RevocationSpec struct {
	// Certificate names the Certificate whose serials are revoked.
	Certificate string `json:"certificate" yaml:"certificate"`
	// Serials are serial numbers in hex (case-insensitive, ':' between
	// bytes allowed), as openssl and browsers print them.
	Serials []string `json:"serials,omitempty" yaml:"serials,omitempty"`
	// IssuedBefore (RFC 3339) revokes every serial of the certificate
	// issued before that time (and before the Revocation was applied).
	IssuedBefore string `json:"issuedBefore,omitempty" yaml:"issuedBefore,omitempty"`
	// Reason is an RFC 5280 reason code name (RevocationReasons).
	Reason string `json:"reason" yaml:"reason"`
}

// RevocationReasons maps the reason names spec.reason accepts to their RFC
// 5280 (5.3.1) CRLReason codes. certificateHold (6) is left out: a hold
// can be lifted, and a revocation in certops is final; removeFromCRL (8)
// only undoes a hold.
var RevocationReasons = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"cACompromise":         2,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"privilegeWithdrawn":   9,
	"aACompromise":         10,
}

// revocationReasonNames are RevocationReasons' keys in code order, for
// messages and the schema.
var revocationReasonNames = []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged",
	"superseded", "cessationOfOperation", "privilegeWithdrawn", "aACompromise"}

// RevocationReasonName is the reason name of an RFC 5280 CRLReason code,
// or the code as a number when spec.reason has no name for it.
func RevocationReasonName(code int) string {
	for name, c := range RevocationReasons {
		if c == code {
			return name
		}
	}
	return fmt.Sprint(code)
}

// maxSerialHexDigits bounds a serial: RFC 5280 (4.1.2.2) allows 20 octets.
const maxSerialHexDigits = 40

// Revocation returns the object's spec if it is a Revocation, else nil.
func (o *Object) Revocation() *RevocationSpec { s, _ := o.Spec.(*RevocationSpec); return s }

// NormalizeSerial returns a hex serial as certops stores serials (lowercase
// hex without leading zeros, as big.Int.Text(16) writes it; colons
// between bytes dropped), or "" when s is not a positive hex number of at
// most 20 octets.
func NormalizeSerial(s string) string {
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	if h == "" || len(h) > maxSerialHexDigits {
		return ""
	}
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || n.Sign() <= 0 {
		return ""
	}
	return n.Text(16)
}

// IssuedBeforeTime is spec.issuedBefore parsed; the zero time when it is
// empty (or, for an unvalidated spec, invalid).
func (s *RevocationSpec) IssuedBeforeTime() time.Time {
	t, _ := time.Parse(time.RFC3339, s.IssuedBefore)
	return t
}

func (c *checker) revocation(s *RevocationSpec) {
	if s.Certificate == "" {
		c.errorf("spec.certificate", "required")
	} else {
		c.name("spec.certificate", s.Certificate)
	}
	c.exactlyOne("spec", []string{"serials", "issuedBefore"}, len(s.Serials) > 0, s.IssuedBefore != "")
	seen := map[string]int{}
	for i, serial := range s.Serials {
		path := fmt.Sprintf("spec.serials[%d]", i)
		n := NormalizeSerial(serial)
		if n == "" {
			c.errorf(path, "%q is not a serial number: want a positive hex number of at most 20 octets (e.g. \"3a:f2:09\" or \"3AF209\")", serial)
			continue
		}
		c.unique(seen, path, "spec.serials", n, i)
	}
	if s.IssuedBefore != "" {
		if _, err := time.Parse(time.RFC3339, s.IssuedBefore); err != nil {
			c.errorf("spec.issuedBefore", "%q is not an RFC 3339 time (e.g. \"2026-03-01T00:00:00Z\")", s.IssuedBefore)
		}
	}
	switch _, ok := RevocationReasons[s.Reason]; {
	case s.Reason == "":
		c.errorf("spec.reason", "required (one of %s)", strings.Join(revocationReasonNames, ", "))
	case s.Reason == "certificateHold" || s.Reason == "removeFromCRL":
		c.errorf("spec.reason", "%q is not supported: a revocation in certops is final, never a hold; use one of %s", s.Reason, strings.Join(revocationReasonNames, ", "))
	case !ok:
		c.errorf("spec.reason", "%q is not an RFC 5280 reason (want one of %s)", s.Reason, strings.Join(revocationReasonNames, ", "))
	}
}

// publicURL checks spec.localCA.publicURL: an https URL (http for
// loopback hosts) without query or fragment, under which the /pki routes
// are reached.
func (c *checker) publicURL(path, s string) {
	if msg := httpURLProblem(s, true); msg != "" {
		c.errorf(path, "%s", msg)
		return
	}
	if strings.ContainsAny(s, "?#") {
		c.errorf(path, "%q must not have a query or fragment: certops appends /pki/v1/ISSUER/crl to it", s)
	}
}
