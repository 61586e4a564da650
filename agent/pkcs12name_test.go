package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// withFriendlyName keeps the PFX valid: go-pkcs12 decodes it (checking
// the MAC computed again, here under a non-ASCII password) to the same key
// and certificate. That openssl and keytool see the name is checked in
// TestFormsReadByTheirConsumers.
func TestWithFriendlyNameKeepsTheMACValid(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pfx, err := pkcs12.Modern2023.Encode(key, cert, nil, "pässword")
	if err != nil {
		t.Fatal(err)
	}
	named, err := withFriendlyName(pfx, "shop tls", "pässword")
	if err != nil {
		t.Fatal(err)
	}
	gotKey, gotCert, err := pkcs12.Decode(named, "pässword")
	if err != nil {
		t.Fatalf("decode the named PFX: %v", err)
	}
	if !gotCert.Equal(cert) || !key.Equal(gotKey) {
		t.Error("the named PFX holds another key or certificate")
	}
	if _, _, err := pkcs12.Decode(named, "wrong"); err == nil {
		t.Error("the named PFX opens with a wrong password")
	}
	if _, err := withFriendlyName(pfx, "emoji 🔑", "pässword"); err == nil {
		t.Error("a friendly name outside the BMP was accepted")
	}
}
