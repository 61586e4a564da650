package agent

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/secret"
)

// The forms of a certificate other than PEM files of their own, all
// rendered on the host from the issued certificate and the key held here:
// combined PEM, DER, PKCS#12 and JKS. The passwords of the key containers
// are read from files on the host at each install and never logged, kept
// or sent.

// combinedPEM is leaf, chain and key in one PEM file, the order HAProxy's
// crt and most appliances expect.
func combinedPEM(certPEM, chainPEM string, key *hostKey) string {
	return certPEM + chainPEM + string(key.pem)
}

// pkcs12File is a PKCS#12 file with key, leaf and chain, encrypted with
// go-pkcs12's modern encoder (PBES2: PBKDF2-HMAC-SHA-256 and AES-256-CBC;
// HMAC-SHA-256 MAC) under the password in passwordFile, its key entry
// named friendlyName when set. It names
// Modern2023, which pkcs12.Modern is today, so that a library upgrade does
// not change what the services must read (OpenSSL 1.1.1+, Java 12+).
func pkcs12File(cert *issuedCert, key *hostKey, passwordFile, friendlyName string) ([]byte, error) {
	password, err := secret.ReadFile(passwordFile)
	if err != nil {
		return nil, fmt.Errorf("files.pkcs12PasswordFile: %w", err)
	}
	b, err := pkcs12.Modern2023.Encode(key.signer, cert.leaf, cert.chain, password)
	if err != nil {
		return nil, fmt.Errorf("files.pkcs12: encode: %w", err)
	}
	if friendlyName == "" {
		return b, nil
	}
	if b, err = withFriendlyName(b, friendlyName, password); err != nil {
		return nil, fmt.Errorf("files.pkcs12FriendlyName: %w", err)
	}
	return b, nil
}

// jksMinPassword is keytool's shortest keystore password.
const jksMinPassword = 6

// jksFile is a Java KeyStore with one private key entry, alias, holding
// the key (PKCS#8) and the chain from the leaf up; the store and the key
// entry are protected by the password in passwordFile.
func jksFile(cert *issuedCert, key *hostKey, alias, passwordFile string) ([]byte, error) {
	password, err := secret.ReadFile(passwordFile)
	if err != nil {
		return nil, fmt.Errorf("files.jksPasswordFile: %w", err)
	}
	for i := 0; i < len(password); i++ {
		if password[i] >= 0x80 {
			// JKS protects with the password's UTF-16 form, which the
			// encoder only gets right for ASCII.
			return nil, fmt.Errorf("files.jksPasswordFile: the password in %s is not ASCII, which a JKS password must be here", passwordFile)
		}
	}
	if len(password) < jksMinPassword {
		return nil, fmt.Errorf("files.jksPasswordFile: the password in %s is shorter than %d characters, which keytool refuses", passwordFile, jksMinPassword)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key.signer)
	if err != nil {
		return nil, fmt.Errorf("files.jks: %w", err)
	}
	chain := []keystore.Certificate{{Type: "X509", Content: cert.leaf.Raw}}
	for _, c := range cert.chain {
		chain = append(chain, keystore.Certificate{Type: "X509", Content: c.Raw})
	}
	ks := keystore.New()
	pw := []byte(password)
	defer clear(pw)
	entry := keystore.PrivateKeyEntry{CreationTime: cert.NotBefore, PrivateKey: pkcs8, CertificateChain: chain}
	if err := ks.SetPrivateKeyEntry(alias, entry, pw); err != nil {
		return nil, fmt.Errorf("files.jks: %w", err)
	}
	var buf bytes.Buffer
	if err := ks.Store(&buf, pw); err != nil {
		return nil, fmt.Errorf("files.jks: %w", err)
	}
	return buf.Bytes(), nil
}

// jksAlias is the alias of the key entry: files.jksAlias, or the
// certificate's name.
func jksAlias(as agentproto.Assignment) string {
	if as.Files.JKSAlias != "" {
		return as.Files.JKSAlias
	}
	return as.Name
}

// derHolds reports whether the file at path is cur's leaf in DER.
func derHolds(path string, cur *issuedCert) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Equal(b, cur.leaf.Raw)
}
