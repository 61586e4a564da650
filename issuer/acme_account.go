package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/registration"

	"github.com/certops/certops/atomicfile"
	"github.com/certops/certops/pki"
)

// acmeUser is the ACME account as lego sees it.
type acmeUser struct {
	email string
	key   crypto.Signer
	reg   *acme.ExtendedAccount
}

func (u *acmeUser) GetEmail() string                       { return u.email }
func (u *acmeUser) GetRegistration() *acme.ExtendedAccount { return u.reg }
func (u *acmeUser) GetPrivateKey() crypto.Signer           { return u.key }

// loadOrCreateAccountKey reads the account key (PEM: PKCS#8, PKCS#1 or
// SEC1) or, when the file does not exist, creates an ECDSA P-256 key there
// with mode 0600. The new file appears whole and is never overwritten: when
// two replicas race, the loser reads the winner's key.
func loadOrCreateAccountKey(path string) (key crypto.Signer, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := pki.ParseKeyPEM(b)
		if err != nil {
			return nil, false, fmt.Errorf("account key %s: %w", path, err)
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("account key: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	pemBytes, err := pki.MarshalKeyPEM(k)
	if err != nil {
		return nil, false, err
	}
	// Create, not replace: when another process created the key first, use
	// that one.
	if err := atomicfile.Create(path, pemBytes, 0o600); errors.Is(err, fs.ErrExist) {
		return loadOrCreateAccountKey(path)
	} else if err != nil {
		return nil, false, fmt.Errorf("create account key: %w", err)
	}
	return k, true, nil
}

// registrationTOS agrees to the CA's terms of service: configuring an
// ACME issuer is the operator's agreement.
func registrationTOS() registration.RegisterOptions {
	return registration.RegisterOptions{TermsOfServiceAgreed: true}
}

// registrationEAB binds the new account to the CA's external account. The
// HMAC file holds the key as the CA hands it out, base64url (surrounding
// whitespace ignored).
func registrationEAB(keyID string, hmacFile []byte) registration.RegisterEABOptions {
	return registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: keyID,
		HmacEncoded: strings.TrimSpace(string(hmacFile))}
}
