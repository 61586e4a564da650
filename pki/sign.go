package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
)

// clockSkew backdates NotBefore so hosts whose clocks run slightly behind
// accept a certificate the moment it is issued.
const clockSkew = time.Minute

// Sign issues a leaf certificate for the public key of csr, as the
// certificate spec c describes. Only the key is taken from the CSR: the
// subject (common name and subject fields), the subject alternative names,
// the key usages and the lifetime all come from the spec. Callers check the
// CSR with CheckCSR first.
//
// The leaf is valid from now − 1 minute (clock skew) for the spec's
// duration, but never beyond the CA's own NotAfter: near the end of the CA's
// life leaves are shorter than asked. Its serial number is 128 bits from
// crypto/rand. The returned chain is the CA certificate (and the
// certificates above it, when the CA's file carried them).
//
// Errors are failure.Invalid for a spec the CA cannot honour (an unknown
// usage, an unparsable name), failure.Rejected with the code
// name_not_permitted for a name outside the CA's name constraints (see
// CheckNames; nothing is signed then), and failure.Unavailable when the CA is not valid at now.
func (ca *CA) Sign(csr *x509.CertificateRequest, c *spec.CertificateSpec, now time.Time) (*agentproto.Issued, error) {
	return ca.SignPublished(csr, c, now, Published{})
}

// SignPublished is Sign for a leaf that names where its revocation status
// is published (see Published).
func (ca *CA) SignPublished(csr *x509.CertificateRequest, c *spec.CertificateSpec, now time.Time, urls Published) (*agentproto.Issued, error) {
	if now.Before(ca.cert.NotBefore) || !now.Before(ca.cert.NotAfter) {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("CA %q is not valid at %s (valid from %s to %s)",
			ca.cert.Subject, now.UTC().Format(time.RFC3339),
			ca.cert.NotBefore.UTC().Format(time.RFC3339), ca.cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	tmpl, err := leafTemplate(c, csr.PublicKey)
	if err != nil {
		return nil, failure.Wrap(failure.Invalid, err)
	}
	if err := ca.CheckNames(c); err != nil {
		return nil, err // before signing: a refused name is never signed
	}
	if tmpl.SerialNumber, err = randomSerial(); err != nil {
		return nil, err
	}
	tmpl.NotBefore = later(now.Add(-clockSkew), ca.cert.NotBefore)
	tmpl.NotAfter = earlier(now.Add(c.DurationValue()), ca.cert.NotAfter)
	tmpl.AuthorityKeyId = ca.cert.SubjectKeyId
	urls.apply(tmpl)
	if tmpl.SubjectKeyId, err = subjectKeyID(csr.PublicKey); err != nil {
		return nil, failure.Wrap(failure.Invalid, err)
	}

	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	if err := ca.verify(leaf, now); err != nil {
		return nil, err
	}
	return NewIssued(leaf, ca.chainPEM), nil
}

// verify is the backstop of CheckNames, before a leaf is handed out: a CA
// with constraints checks that the leaf chains to it at now, by Go's
// verifier. (Without constraints the check could not fail and would cost an
// ECDSA verify.)
func (ca *CA) verify(leaf *x509.Certificate, now time.Time) error {
	if !hasNameConstraints(ca.cert) {
		return nil
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:       ca.roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err == nil {
		return nil
	}
	err = fmt.Errorf("issued certificate does not verify against the CA: %w", err)
	if invalid, ok := errors.AsType[x509.CertificateInvalidError](err); ok && invalid.Reason == x509.CANotAuthorizedForThisName {
		return failure.WithCode(failure.Wrap(failure.Rejected, err), agentproto.CodeNameNotPermitted)
	}
	return err
}

// leafTemplate is the part of the leaf that comes from the spec.
func leafTemplate(c *spec.CertificateSpec, pub crypto.PublicKey) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		Subject:               subject(c),
		DNSNames:              c.DNSNames,
		EmailAddresses:        c.EmailAddresses,
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	var err error
	if tmpl.IPAddresses, err = parseIPs(c.IPAddresses); err != nil {
		return nil, err
	}
	if tmpl.URIs, err = parseURIs(c.URIs); err != nil {
		return nil, err
	}
	if tmpl.KeyUsage, tmpl.ExtKeyUsage, err = usages(c.Usages, pub); err != nil {
		return nil, err
	}
	return tmpl, nil
}

func subject(c *spec.CertificateSpec) pkix.Name {
	name := pkix.Name{CommonName: c.CommonName}
	if s := c.Subject; s != nil {
		name.Organization = s.Organizations
		name.OrganizationalUnit = s.OrganizationalUnits
		name.Country = s.Countries
		name.Province = s.Provinces
		name.Locality = s.Localities
		name.StreetAddress = s.StreetAddresses
		name.PostalCode = s.PostalCodes
		name.SerialNumber = s.SerialNumber
	}
	return name
}

// keyUsages and extKeyUsages map cert-manager's usage names to X.509.
var (
	keyUsages = map[string]x509.KeyUsage{
		"signing":            x509.KeyUsageDigitalSignature,
		"digital signature":  x509.KeyUsageDigitalSignature,
		"content commitment": x509.KeyUsageContentCommitment,
		"key encipherment":   x509.KeyUsageKeyEncipherment,
		"key agreement":      x509.KeyUsageKeyAgreement,
		"data encipherment":  x509.KeyUsageDataEncipherment,
		"cert sign":          x509.KeyUsageCertSign,
		"crl sign":           x509.KeyUsageCRLSign,
		"encipher only":      x509.KeyUsageEncipherOnly,
		"decipher only":      x509.KeyUsageDecipherOnly,
	}
	extKeyUsages = map[string]x509.ExtKeyUsage{
		"any":              x509.ExtKeyUsageAny,
		"server auth":      x509.ExtKeyUsageServerAuth,
		"client auth":      x509.ExtKeyUsageClientAuth,
		"code signing":     x509.ExtKeyUsageCodeSigning,
		"email protection": x509.ExtKeyUsageEmailProtection,
		"s/mime":           x509.ExtKeyUsageEmailProtection,
		"ipsec end system": x509.ExtKeyUsageIPSECEndSystem,
		"ipsec tunnel":     x509.ExtKeyUsageIPSECTunnel,
		"ipsec user":       x509.ExtKeyUsageIPSECUser,
		"timestamping":     x509.ExtKeyUsageTimeStamping,
		"ocsp signing":     x509.ExtKeyUsageOCSPSigning,
		"microsoft sgc":    x509.ExtKeyUsageMicrosoftServerGatedCrypto,
		"netscape sgc":     x509.ExtKeyUsageNetscapeServerGatedCrypto,
	}
)

// usages maps spec usages ("server auth" or "server-auth") to X.509 key
// usages. Without usages a leaf gets digital signature, key encipherment
// (RSA keys only, as TLS key exchange with RSA needs it) and server auth.
func usages(names []string, pub crypto.PublicKey) (x509.KeyUsage, []x509.ExtKeyUsage, error) {
	if len(names) == 0 {
		ku := x509.KeyUsageDigitalSignature
		if _, isRSA := pub.(*rsa.PublicKey); isRSA {
			ku |= x509.KeyUsageKeyEncipherment
		}
		return ku, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, nil
	}
	var (
		ku  x509.KeyUsage
		eku []x509.ExtKeyUsage
	)
	for _, n := range names {
		canonical := strings.ReplaceAll(strings.ToLower(n), "-", " ")
		if k, ok := keyUsages[canonical]; ok {
			ku |= k
		} else if e, ok := extKeyUsages[canonical]; ok {
			if !slices.Contains(eku, e) {
				eku = append(eku, e)
			}
		} else {
			return 0, nil, fmt.Errorf("unknown usage %q", n)
		}
	}
	return ku, eku, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
