package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"github.com/certops/certops/spec"
)

// IssueServing signs a fresh ECDSA P-256 key for names (DNS names and IP
// addresses; the first is the common name) valid for validity from now,
// for TLS server authentication, plus client authentication when client
// is set. It returns the certificate followed by the CA's chain, and the
// PKCS#8 key, both PEM: what a server's --tls-cert-file and --tls-key-file
// hold.
func (ca *CA) IssueServing(names []string, validity time.Duration, client bool, now time.Time) (chainPEM, keyPEM []byte, err error) {
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("a serving certificate needs at least one name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, err
	}
	c := &spec.CertificateSpec{CommonName: names[0], Duration: validity.String(),
		Usages: []string{"digital signature", "server auth"}}
	if client {
		c.Usages = append(c.Usages, "client auth")
	}
	for _, n := range names {
		if net.ParseIP(n) != nil {
			c.IPAddresses = append(c.IPAddresses, n)
		} else {
			c.DNSNames = append(c.DNSNames, n)
		}
	}
	issued, err := ca.Sign(csr, c, now)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = MarshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return []byte(issued.CertPEM + issued.ChainPEM), keyPEM, nil
}
