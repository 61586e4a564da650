package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/spec"
)

// Default key sizes when a key spec leaves the size empty.
const (
	defaultECDSASize = 256
	defaultRSASize   = 2048
)

// GenerateKey generates a private key as the key spec asks: ECDSA (default;
// size 256, 384 or 521 picks the curve), RSA (size = modulus bits, default
// 2048) or Ed25519.
func GenerateKey(k agentproto.KeySpec) (crypto.Signer, error) {
	switch k.Algorithm {
	case "", spec.AlgorithmECDSA:
		curve, err := curveForSize(k.Size)
		if err != nil {
			return nil, err
		}
		return ecdsa.GenerateKey(curve, rand.Reader)
	case spec.AlgorithmRSA:
		size := k.Size
		if size == 0 {
			size = defaultRSASize
		}
		if size < 2048 || size > 8192 {
			return nil, fmt.Errorf("RSA key size %d is out of range 2048-8192", size)
		}
		return rsa.GenerateKey(rand.Reader, size)
	case spec.AlgorithmEd25519:
		_, key, err := ed25519.GenerateKey(rand.Reader)
		return key, err
	default:
		return nil, fmt.Errorf("key algorithm %q: want ECDSA, RSA or Ed25519", k.Algorithm)
	}
}

// KeyMatches reports whether pub is of the algorithm and size k asks for,
// with GenerateKey's defaults: the key test CheckCSR applies, so an agent
// can tell whether a key it holds will be accepted for k.
func KeyMatches(pub crypto.PublicKey, k agentproto.KeySpec) bool {
	return describeKey(pub) == describeSpecKey(k.Algorithm, k.Size)
}

// SamePublicKey reports whether a and b are the same public key, e.g. a
// certificate's and the private key's or CSR's it should belong to.
func SamePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// curveForSize maps an ECDSA key size to its NIST curve; 0 means P-256.
func curveForSize(size int) (elliptic.Curve, error) {
	switch size {
	case 0, 256:
		return elliptic.P256(), nil
	case 384:
		return elliptic.P384(), nil
	case 521:
		return elliptic.P521(), nil
	default:
		return nil, fmt.Errorf("ECDSA key size %d: want 256, 384 or 521", size)
	}
}

// MarshalKeyPEM encodes a private key as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPKCS8, Bytes: der}), nil
}

// ParseKeyPEM decodes the first private key of pemBytes: PKCS#8
// ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY").
// "EC PARAMETERS" blocks, as written by openssl ecparam, are skipped.
func ParseKeyPEM(pemBytes []byte) (crypto.Signer, error) {
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		if block.Type == "EC PARAMETERS" {
			continue
		}
		return parseKeyBlock(block)
	}
}

func parseKeyBlock(block *pem.Block) (crypto.Signer, error) {
	var (
		key any
		err error
	)
	switch block.Type {
	case pemPKCS8:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case pemPKCS1:
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case pemSEC1:
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key (want %q, %q or %q)", block.Type, pemPKCS8, pemPKCS1, pemSEC1)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", key)
	}
	return signer, nil
}

// subjectKeyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256
// of the subjectPublicKey bit string.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}
