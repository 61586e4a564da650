package agent

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/atomicfile"
	"github.com/certops/certops/pki"
)

// hostKey is a private key held in the state dir.
type hostKey struct {
	signer crypto.Signer
	pem    []byte
	path   string // where it is stored
}

// loadKey reads a key from the state dir; nil without error when absent.
func loadKey(path string) (*hostKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	k, err := pki.ParseKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return &hostKey{signer: k, pem: b, path: path}, nil
}

// newKey generates a key as spec asks and stores it at path (0600) before
// anything else sees it.
func newKey(spec agentproto.KeySpec, path string) (*hostKey, error) {
	k, err := pki.GenerateKey(spec)
	if err != nil {
		return nil, err
	}
	b, err := pki.MarshalKeyPEM(k)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	return &hostKey{signer: k, pem: b, path: path}, nil
}

// issuedCert is a parsed agentproto.Issued.
type issuedCert struct {
	*agentproto.Issued
	leaf   *x509.Certificate
	sha256 string // hex of the leaf DER, computed here
	chain  []*x509.Certificate
}

// parseIssued decodes the leaf and chain of iss and checks that the leaf is
// signed by the first chain certificate (when there is a chain).
func parseIssued(iss *agentproto.Issued) (*issuedCert, error) {
	if iss == nil {
		return nil, errors.New("no certificate")
	}
	leaves, err := pki.ParseCertificatesPEM([]byte(iss.CertPEM))
	if err != nil || len(leaves) != 1 {
		return nil, fmt.Errorf("certificate %s: want exactly one PEM certificate (%v)", iss.Serial, err)
	}
	chain, err := pki.ParseCertificatesPEM([]byte(iss.ChainPEM))
	if err != nil {
		return nil, fmt.Errorf("certificate %s: chain: %w", iss.Serial, err)
	}
	leaf := leaves[0]
	if len(chain) > 0 {
		if err := leaf.CheckSignatureFrom(chain[0]); err != nil {
			return nil, fmt.Errorf("certificate %s is not signed by the first certificate of its chain: %w", iss.Serial, err)
		}
	}
	return &issuedCert{Issued: iss, leaf: leaf, sha256: pki.Fingerprint(leaf.Raw), chain: chain}, nil
}

// fingerprintOfFile is the hex SHA-256 of the first certificate in a PEM
// file, "" when the file is missing or holds no certificate.
func fingerprintOfFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return ""
		}
		if block.Type == "CERTIFICATE" {
			return pki.Fingerprint(block.Bytes)
		}
	}
}
