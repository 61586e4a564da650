package issuer

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/testkit/vaultkit"
)

// vaultSpec writes the CA bundle of v and a token file (or a secret ID
// file, for AppRole) into dir and returns the spec of an issuer using them.
func vaultSpec(t *testing.T, v *vaultkit.Server, dir string, appRole bool) *spec.VaultIssuer {
	t.Helper()
	s := &spec.VaultIssuer{Address: v.URL, Mount: vaultkit.Mount, Role: vaultkit.Role, CABundleFile: filepath.Join(dir, "vault-ca.pem")}
	writeFile(t, s.CABundleFile, []byte(v.CAPEM))
	if appRole {
		s.Auth.AppRole = &spec.VaultAppRole{RoleID: vaultkit.RoleID, SecretIDFile: filepath.Join(dir, "secret-id")}
		writeFile(t, s.Auth.AppRole.SecretIDFile, []byte(vaultkit.SecretID+"\n"))
	} else {
		s.Auth.TokenFile = filepath.Join(dir, "token")
		writeFile(t, s.Auth.TokenFile, []byte(vaultkit.RootToken+"\n"))
	}
	return s
}

func vaultObject(name string, v *spec.VaultIssuer) *spec.Object {
	return &spec.Object{Kind: spec.KindIssuer, Name: name, Spec: &spec.IssuerSpec{Vault: v}}
}

// signWithVault signs a fresh CSR for c with the registry's issuer "vault"
// and returns the leaf and the CSR.
func signWithVault(t *testing.T, r *Registry, c *spec.CertificateSpec) (*x509.Certificate, *x509.CertificateRequest, error) {
	t.Helper()
	s, err := r.Signer("vault")
	if err != nil {
		t.Fatalf("Signer: %v", err)
	}
	csr := csrFor(t, c)
	issued, err := s.Sign(context.Background(), c, csr, time.Now())
	if err != nil {
		return nil, csr, err
	}
	certs, err := pki.ParseCertificatesPEM([]byte(issued.CertPEM))
	if err != nil || len(certs) != 1 {
		t.Fatalf("CertPEM: %d certificates, %v", len(certs), err)
	}
	if chain, err := pki.ParseCertificatesPEM([]byte(issued.ChainPEM)); err != nil || len(chain) != 1 {
		t.Fatalf("ChainPEM: %d certificates, %v", len(chain), err)
	}
	return certs[0], csr, nil
}

func TestVaultSignsWithTokenFile(t *testing.T) {
	v := vaultkit.Start(t)
	r, _, _ := newTestRegistry(t)
	s := vaultSpec(t, v, t.TempDir(), false)
	r.Sync([]*spec.Object{vaultObject("vault", s)})

	c := shopSpec()
	leaf, csr, err := signWithVault(t, r, c)
	if err != nil {
		t.Fatal(err)
	}
	if !pki.SamePublicKey(leaf.PublicKey, csr.PublicKey) || leaf.Issuer.CommonName != "vaultkit PKI root" {
		t.Errorf("leaf: key matches %v, issuer %q", pki.SamePublicKey(leaf.PublicKey, csr.PublicKey), leaf.Issuer.CommonName)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < 24*time.Hour || got > 24*time.Hour+time.Minute {
		t.Errorf("lifetime %v, want the spec's 24h", got)
	}
	req := v.LastSign()
	want := map[string]string{
		"common_name": "shop.example.com", "alt_names": "shop.example.com,www.shop.example.com",
		"ttl": "86400s", "format": "pem", "exclude_cn_from_sans": "true",
	}
	for k, w := range want {
		if got := req.Get(k); got != w {
			t.Errorf("sign request %s = %q, want %q", k, got, w)
		}
	}
	if !strings.Contains(req.Get("csr"), "BEGIN CERTIFICATE REQUEST") {
		t.Errorf("sign request csr = %q", req.Get("csr"))
	}

	// IPs and URIs travel as ip_sans and uri_sans.
	c.IPAddresses = []string{"192.0.2.7"}
	c.URIs = []string{"spiffe://example.com/shop"}
	if _, _, err := signWithVault(t, r, c); err != nil {
		t.Fatal(err)
	}
	if req := v.LastSign(); req.Get("ip_sans") != "192.0.2.7" || req.Get("uri_sans") != "spiffe://example.com/shop" {
		t.Errorf("ip_sans %q uri_sans %q", req.Get("ip_sans"), req.Get("uri_sans"))
	}

	// The token file is read at each use: an unknown token gets Vault's
	// message back, a rotated one is used at once.
	writeFile(t, s.Auth.TokenFile, []byte("hvs.revoked"))
	_, _, err = signWithVault(t, r, c)
	wantKind(t, err, failure.Forbidden, `issuer "vault": Vault answered 403 to pki/sign/certops: permission denied`)
	if status := r.Status()["vault"]; !strings.Contains(status, "permission denied") {
		t.Errorf("status %q, want Vault's message", status)
	}
	v.AddToken("hvs.rotated")
	writeFile(t, s.Auth.TokenFile, []byte("hvs.rotated\n"))
	if _, _, err := signWithVault(t, r, c); err != nil {
		t.Fatalf("with the rotated token: %v", err)
	}
	if status := r.Status()["vault"]; status != "" {
		t.Errorf("status after a success %q, want healthy", status)
	}
	if logins, _, _ := v.Counts(); logins != 0 {
		t.Errorf("%d AppRole logins with a token file", logins)
	}

	// An empty token file is an error naming the file, Vault is not asked.
	writeFile(t, s.Auth.TokenFile, []byte("\n"))
	_, _, before := v.Counts()
	_, _, err = signWithVault(t, r, c)
	wantKind(t, err, failure.Unavailable, "spec.vault.auth.tokenFile "+s.Auth.TokenFile+" is empty")
	if _, _, after := v.Counts(); after != before {
		t.Errorf("Vault was asked without a token")
	}
}

func TestVaultAppRoleLoginAndRenewal(t *testing.T) {
	v := vaultkit.Start(t)
	r, clock, _ := newTestRegistry(t)
	r.Sync([]*spec.Object{vaultObject("vault", vaultSpec(t, v, t.TempDir(), true))})
	step := func(what string, wantLogins, wantRenewals int) {
		t.Helper()
		if _, _, err := signWithVault(t, r, shopSpec()); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if logins, renewals, _ := v.Counts(); logins != wantLogins || renewals != wantRenewals {
			t.Fatalf("%s: %d logins, %d renewals; want %d, %d", what, logins, renewals, wantLogins, wantRenewals)
		}
	}
	step("first signing", 1, 0)
	step("second signing: the token is kept", 1, 0)
	clock.Advance(31 * time.Second) // past half the 60 s lease
	step("past half the lease: renewed", 1, 1)
	clock.Advance(2 * time.Minute)
	step("past the end of the lease: a new login", 2, 1)
	v.RevokeAll()
	clock.Advance(31 * time.Second)
	step("renewal of a revoked token fails: a new login", 3, 1)
	v.RevokeAll()
	step("revoked mid-lease: Vault's 403 makes one new login", 4, 1)
	if _, _, signs := v.Counts(); signs != 6 {
		t.Errorf("%d sign requests with a valid token, want 6", signs)
	}
}

func TestVaultAppRoleWrongSecretID(t *testing.T) {
	v := vaultkit.Start(t)
	r, _, _ := newTestRegistry(t)
	s := vaultSpec(t, v, t.TempDir(), true)
	writeFile(t, s.Auth.AppRole.SecretIDFile, []byte("wrong-secret-id"))
	r.Sync([]*spec.Object{vaultObject("vault", s)})
	_, _, err := signWithVault(t, r, shopSpec())
	wantKind(t, err, failure.Unavailable, `issuer "vault": Vault answered 400 to auth/approle/login: invalid role or secret ID`)
	if strings.Contains(err.Error(), "wrong-secret-id") {
		t.Errorf("the error shows the secret ID: %v", err)
	}
	if _, _, signs := v.Counts(); signs != 0 {
		t.Errorf("%d sign requests without a login", signs)
	}
}

func TestVaultErrorSurfaced(t *testing.T) {
	v := vaultkit.Start(t)
	r, _, _ := newTestRegistry(t)
	r.Sync([]*spec.Object{vaultObject("vault", vaultSpec(t, v, t.TempDir(), false))})
	c := shopSpec()
	c.CommonName, c.DNSNames = "shop.evil.test", []string{"shop.evil.test"}
	_, _, err := signWithVault(t, r, c)
	wantKind(t, err, failure.Unavailable, `issuer "vault": Vault answered 400 to pki/sign/certops: subject alternate name shop.evil.test not allowed by this role`)

	// A long message with a credential in it comes back bounded and redacted.
	v.SetSignError("backend https://admin:hunter2@db.internal/ failed: " + strings.Repeat("y", 10000))
	_, _, err = signWithVault(t, r, shopSpec())
	wantKind(t, err, failure.Unavailable, "Vault answered 500 to pki/sign/certops: backend https://")
	if strings.Contains(err.Error(), "hunter2") || len(err.Error()) > 4200 {
		t.Errorf("error not redacted or not bounded (%d bytes): %.200s", len(err.Error()), err)
	}
	if status := r.Status()["vault"]; strings.Contains(status, "hunter2") || !strings.Contains(status, "Vault answered 500") {
		t.Errorf("status %.200q", status)
	}
}

func TestVaultWrongCertificateRefused(t *testing.T) {
	other := vaultkit.Start(t) // another CA: its certificates do not chain to the bundle
	otherKey, err := pki.GenerateKey(agentproto.KeySpec{Algorithm: spec.AlgorithmECDSA, Size: 256})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		tamper func(v *vaultkit.Server, a *vaultkit.SignAnswer, csr *x509.CertificateRequest) error
		want   string
	}{
		{"not a certificate", func(_ *vaultkit.Server, a *vaultkit.SignAnswer, _ *x509.CertificateRequest) error {
			a.Certificate = "garbage"
			return nil
		}, "no certificate in the answer"},
		{"another key", func(v *vaultkit.Server, a *vaultkit.SignAnswer, _ *x509.CertificateRequest) (err error) {
			a.Certificate, err = v.SignLeaf(otherKey.Public(), "shop.example.com", "shop.example.com", "www.shop.example.com")
			return err
		}, "the certificate is for another key than the CSR's"},
		{"other names", func(v *vaultkit.Server, a *vaultkit.SignAnswer, csr *x509.CertificateRequest) (err error) {
			a.Certificate, err = v.SignLeaf(csr.PublicKey, "shop.example.com", "evil.example.com")
			return err
		}, "names differ from the spec: DNS names are [evil.example.com], want [shop.example.com, www.shop.example.com]"},
		{"another CA", func(_ *vaultkit.Server, a *vaultkit.SignAnswer, csr *x509.CertificateRequest) (err error) {
			a.Certificate, err = other.SignLeaf(csr.PublicKey, "shop.example.com", "shop.example.com", "www.shop.example.com")
			a.CAChain, a.IssuingCA = []string{other.CAPEM}, other.CAPEM
			return err
		}, "does not chain to"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := vaultkit.Start(t)
			v.Tamper(func(a *vaultkit.SignAnswer, csr *x509.CertificateRequest) {
				if err := tc.tamper(v, a, csr); err != nil {
					t.Error(err)
				}
			})
			r, _, _ := newTestRegistry(t)
			r.Sync([]*spec.Object{vaultObject("vault", vaultSpec(t, v, t.TempDir(), false))})
			_, _, err := signWithVault(t, r, shopSpec())
			wantKind(t, err, failure.Unavailable, `issuer "vault": Vault's certificate refused: `+tc.want)
		})
	}
}

func TestVaultMissingCABundle(t *testing.T) {
	v := vaultkit.Start(t)
	dir := t.TempDir()
	r, _, _ := newTestRegistry(t)
	s := vaultSpec(t, v, dir, false)
	s.CABundleFile = filepath.Join(dir, "missing.pem")
	r.Sync([]*spec.Object{vaultObject("vault", s)})
	if _, err := r.Signer("vault"); failure.KindOf(err) != failure.Unavailable || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("Signer: %v, want unavailable naming the CA bundle", err)
	}
	if st := r.Status()["vault"]; !strings.Contains(st, "missing.pem") {
		t.Errorf("status %q", st)
	}
	if _, _, signs := v.Counts(); signs != 0 {
		t.Errorf("%d sign requests", signs)
	}
}

// Over HTTPS, caBundleFile is the trust for Vault's TLS certificate too:
// with Vault's TLS certificate in the bundle signing works, without it
// the connection is refused before any token is sent.
func TestVaultTLS(t *testing.T) {
	v := vaultkit.StartTLS(t)
	dir := t.TempDir()
	r, _, _ := newTestRegistry(t)
	s := vaultSpec(t, v, dir, false)
	writeFile(t, s.CABundleFile, []byte(v.CAPEM+v.TLSCertPEM))
	r.Sync([]*spec.Object{vaultObject("vault", s)})
	if _, _, err := signWithVault(t, r, shopSpec()); err != nil {
		t.Fatalf("over TLS: %v", err)
	}

	untrusted := vaultSpec(t, v, t.TempDir(), false) // the bundle holds the PKI CA only
	r.Sync([]*spec.Object{vaultObject("vault", untrusted)})
	_, _, err := signWithVault(t, r, shopSpec())
	wantKind(t, err, failure.Unavailable, "certificate signed by unknown authority")
	if _, _, signs := v.Counts(); signs != 1 {
		t.Errorf("%d sign requests, want only the trusted one", signs)
	}
}
