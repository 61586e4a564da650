package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Revocation: the URLs issued leaves carry (Published), the CRLs and the
// OCSP responses a CA signs.

// Published are the URLs a leaf names for relying parties to check it:
// the CRL distribution point and the Authority Information Access OCSP
// and CA-issuers locations. The zero value adds none.
type Published struct {
	CRL, OCSP, CAIssuers string
}

// PublishedAt returns the URLs of issuer under publicURL, as certops
// serves them: {publicURL}/pki/v1/{issuer}/crl, …/ocsp and …/ca. An empty
// publicURL publishes nothing.
func PublishedAt(publicURL, issuer string) Published {
	if publicURL == "" {
		return Published{}
	}
	base := strings.TrimRight(publicURL, "/") + "/pki/v1/" + issuer + "/"
	return Published{CRL: base + "crl", OCSP: base + "ocsp", CAIssuers: base + "ca"}
}

func (p Published) apply(tmpl *x509.Certificate) {
	if p.CRL != "" {
		tmpl.CRLDistributionPoints = []string{p.CRL}
	}
	if p.OCSP != "" {
		tmpl.OCSPServer = []string{p.OCSP}
	}
	if p.CAIssuers != "" {
		tmpl.IssuingCertificateURL = []string{p.CAIssuers}
	}
}

// CASHA256 is the hex SHA-256 of the CA certificate (DER): what a stored
// CRL records to tell which CA signed it.
func (ca *CA) CASHA256() string {
	sum := sha256.Sum256(ca.cert.Raw)
	return hex.EncodeToString(sum[:])
}

// RevokedEntry is one serial a CRL lists.
type RevokedEntry struct {
	Serial    string // lowercase hex
	RevokedAt time.Time
	Reason    int // RFC 5280 CRLReason code
}

// SignCRL signs a DER CRL (RFC 5280 v2) listing entries, with the CRL
// number and validity given.
func (ca *CA) SignCRL(number int64, thisUpdate, nextUpdate time.Time, entries []RevokedEntry) ([]byte, error) {
	list := make([]x509.RevocationListEntry, 0, len(entries))
	for _, e := range entries {
		n, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("sign CRL: serial %q is not hex", e.Serial)
		}
		list = append(list, x509.RevocationListEntry{SerialNumber: n, RevocationTime: e.RevokedAt.UTC(), ReasonCode: e.Reason})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                thisUpdate.UTC(),
		NextUpdate:                nextUpdate.UTC(),
		RevokedCertificateEntries: list,
	}, ca.cert, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	return der, nil
}

// OCSPAnswer is what an OCSP response says of one serial.
type OCSPAnswer struct {
	Serial *big.Int
	// Status is ocsp.Good, ocsp.Revoked or ocsp.Unknown.
	Status     int
	RevokedAt  time.Time
	Reason     int
	ThisUpdate time.Time
	NextUpdate time.Time
}

// SignOCSP signs a basic OCSP response (RFC 6960) with the CA's own key
// (the CA is its own responder).
func (ca *CA) SignOCSP(a OCSPAnswer) ([]byte, error) {
	tmpl := ocsp.Response{
		Status:       a.Status,
		SerialNumber: a.Serial,
		ThisUpdate:   a.ThisUpdate.UTC(),
		NextUpdate:   a.NextUpdate.UTC(),
	}
	if a.Status == ocsp.Revoked {
		tmpl.RevokedAt, tmpl.RevocationReason = a.RevokedAt.UTC(), a.Reason
	}
	der, err := ocsp.CreateResponse(ca.cert, ca.cert, tmpl, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign OCSP response: %w", err)
	}
	return der, nil
}
