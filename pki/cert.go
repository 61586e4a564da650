package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/certops/certops/agentproto"
)

// Fingerprint is the fingerprint certops identifies a certificate by (the
// SHA256 of agentproto.Issued): the hex SHA-256 of its DER.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NewIssued describes an issued leaf and its chain (PEM, issuer first) as
// the agent protocol hands them out.
func NewIssued(leaf *x509.Certificate, chainPEM string) *agentproto.Issued {
	return &agentproto.Issued{
		Serial:    leaf.SerialNumber.Text(16),
		SHA256:    Fingerprint(leaf.Raw),
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		CertPEM:   string(pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: leaf.Raw})),
		ChainPEM:  chainPEM,
	}
}

// ParseCertificatesPEM decodes the certificates of pemBytes in order. A PEM
// block of another type is an error; no block at all is none (an empty
// chain).
func ParseCertificatesPEM(pemBytes []byte) ([]*x509.Certificate, error) {
	certs, _, err := decodeCertificates(pemBytes)
	return certs, err
}

// ParseLeaf parses the first certificate of a PEM chain, such as a stored
// version's CertPEM.
func ParseLeaf(certPEM string) (*x509.Certificate, error) {
	certs, err := ParseCertificatesPEM([]byte(certPEM))
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs[0], nil
}

// decodeCertificates is ParseCertificatesPEM, also returning what follows
// the last PEM block.
func decodeCertificates(pemBytes []byte) (certs []*x509.Certificate, rest []byte, err error) {
	rest = pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return certs, rest, nil
		}
		if block.Type != pemCertificate {
			return nil, nil, fmt.Errorf("PEM block %q, want %q", block.Type, pemCertificate)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
}

// LoadCertPool reads a PEM CA bundle, such as the roots to trust for a TLS
// server, into a pool. It fails when the file cannot be read or holds no PEM
// certificate.
func LoadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate found", path)
	}
	return pool, nil
}
