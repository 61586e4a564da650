// Package pki holds the X.509 work of certops: creating and loading a local
// CA, checking that a CSR matches a certificate's spec, signing leaves, the
// key and CSR helpers the agent uses, and the certificate helpers server and
// agent share (fingerprints, PEM chains, CA bundles). It does no I/O beyond
// reading the files it is asked to load, and depends on the standard library
// only (plus the certops spec, agentproto and failure packages), so the
// agent binary can link it cheaply.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/certops/certops/failure"
)

// CA defaults.
const (
	DefaultCACommonName = "certops local CA"
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour // 87600h
	caRSABits           = 3072
)

// CA key types accepted by NewCA.
const (
	KeyTypeECDSA = "ecdsa" // P-256
	KeyTypeRSA   = "rsa"   // 3072 bits
)

// PEM block types.
const (
	pemCertificate = "CERTIFICATE"
	pemCSR         = "CERTIFICATE REQUEST"
	pemPKCS8       = "PRIVATE KEY"
	pemPKCS1       = "RSA PRIVATE KEY"
	pemSEC1        = "EC PRIVATE KEY"
)

// CAOptions configures NewCA. The zero value is a valid configuration.
type CAOptions struct {
	// CommonName of the CA; default DefaultCACommonName.
	CommonName string
	// KeyType is KeyTypeECDSA (P-256, the default) or KeyTypeRSA (3072 bits).
	KeyType string
	// Validity of the CA certificate; default DefaultCAValidity.
	Validity time.Duration
	// PermittedDNSDomains, when set, become critical name constraints: the CA
	// can then only issue for these domains and their subdomains, and for no
	// IP address (all are excluded), email address or URI (only the
	// reserved host "invalid" is permitted).
	PermittedDNSDomains []string
}

// NewCA creates a self-signed CA that may sign leaves only (path length
// zero) and returns its certificate and its PKCS#8 private key, PEM encoded.
// Bad options are failure.Invalid errors.
func NewCA(opts CAOptions) (certPEM, keyPEM []byte, err error) {
	if opts.CommonName == "" {
		opts.CommonName = DefaultCACommonName
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultCAValidity
	}
	if opts.Validity < 0 {
		return nil, nil, failure.Wrap(failure.Invalid, fmt.Errorf("CA validity %s is negative", opts.Validity))
	}
	for _, d := range opts.PermittedDNSDomains {
		if d == "" || strings.ContainsAny(d, " \t*/:") {
			return nil, nil, failure.Wrap(failure.Invalid, fmt.Errorf("permitted DNS domain %q is not a domain name", d))
		}
	}
	key, err := newCAKey(opts.KeyType)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: opts.CommonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(opts.Validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		PermittedDNSDomains:   opts.PermittedDNSDomains,
	}
	if len(opts.PermittedDNSDomains) > 0 {
		tmpl.PermittedDNSDomainsCritical = true
		tmpl.ExcludedIPRanges = allIPs()
		tmpl.PermittedEmailAddresses = []string{noMailboxOrURIHost}
		tmpl.PermittedURIDomains = []string{noMailboxOrURIHost}
	}
	if tmpl.SubjectKeyId, err = subjectKeyID(key.Public()); err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyPEM, err = MarshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}), keyPEM, nil
}

func newCAKey(keyType string) (crypto.Signer, error) {
	switch strings.ToLower(keyType) {
	case "", KeyTypeECDSA:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyTypeRSA:
		return rsa.GenerateKey(rand.Reader, caRSABits)
	default:
		return nil, failure.Wrap(failure.Invalid, fmt.Errorf("CA key type %q: want %s or %s", keyType, KeyTypeECDSA, KeyTypeRSA))
	}
}

// CA is a loaded certificate authority: its certificate, the chain above it
// (if its certificate file carried one) and its private key. It is immutable
// and safe for concurrent use.
type CA struct {
	cert     *x509.Certificate
	key      crypto.Signer
	chainPEM string         // the CA certificate and any certificates above it
	roots    *x509.CertPool // just cert: the anchor issued leaves must chain to
}

// LoadCA reads a CA from a certificate file and a private key file (PEM).
// The certificate file's first certificate is the CA; any further
// certificates are its chain and are handed out with every leaf. It fails
// when a file is missing or not PEM, when the certificate is not a CA, when
// the key does not belong to it, or when it has expired.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA %s, %s: %w", certFile, keyFile, err)
	}
	return ca, nil
}

// ParseCA is LoadCA on PEM bytes. The key may be PKCS#8, PKCS#1 (RSA) or
// SEC1 (EC).
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := parseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert := certs[0]
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA (basic constraints CA:FALSE or missing)", cert.Subject)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("CA certificate %q may not sign certificates (no certSign key usage)", cert.Subject)
	}
	now := time.Now()
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("CA certificate %q expired at %s", cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !SamePublicKey(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("CA key does not match the CA certificate %q", cert.Subject)
	}
	var chain strings.Builder
	for _, c := range certs {
		chain.Write(pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: c.Raw}))
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &CA{cert: cert, key: key, chainPEM: chain.String(), roots: roots}, nil
}

// Certificate returns the CA certificate. Callers must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// parseCertificates decodes every CERTIFICATE block of pemBytes; there must
// be at least one and nothing else but whitespace.
func parseCertificates(pemBytes []byte) ([]*x509.Certificate, error) {
	certs, rest, err := decodeCertificates(pemBytes)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("trailing data after the last PEM certificate")
	}
	return certs, nil
}

// randomSerial returns a positive 128-bit serial number from crypto/rand:
// the top bit is set so every serial has the same length (127 bits of
// entropy, well above the 64 the CA/Browser Forum asks for).
func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	b[0] |= 0x80
	return new(big.Int).SetBytes(b), nil
}
