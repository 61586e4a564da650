package issuer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
)

// fakeVault answers the Vault HTTP API calls the vault issuer makes, with
// the request and response bodies Vault documents
// (https://developer.hashicorp.com/vault/api-docs): auth/approle/login, auth/token/renew-self and {mount}/sign/{role}, and
// Vault's error body {"errors":[...]}. It signs with a CA of its own and,
// like a PKI role, refuses names outside allowedDomain.
type fakeVault struct {
	t             *testing.T
	srv           *httptest.Server
	caPEM         string
	caCert        *x509.Certificate
	caKey         crypto.Signer
	roleID        string
	secretID      string
	allowedDomain string
	lease         int // seconds of an AppRole token's lease

	mu        sync.Mutex
	tokens    map[string]bool // valid tokens
	logins    int
	renewals  int
	signs     []url.Values      // the sign requests, as form values for easy reading
	tamper    func(*signAnswer) // changes the next answers (a wrong certificate)
	signError string            // when set, sign answers 500 with this message
}

// signAnswer is the data of a pki/sign answer.
type signAnswer struct {
	Certificate  string   `json:"certificate"`
	IssuingCA    string   `json:"issuing_ca"`
	CAChain      []string `json:"ca_chain"`
	SerialNumber string   `json:"serial_number"`
	Expiration   int64    `json:"expiration"`
}

func newFakeVault(t *testing.T) *fakeVault {
	t.Helper()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{CommonName: "Fake Vault PKI Root"})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificatesPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeVault{
		t: t, caPEM: string(certPEM), caCert: certs[0], caKey: key,
		roleID: "5f2c1c2e-role", secretID: "s3cr3t-id", allowedDomain: "example.com", lease: 60,
		tokens: map[string]bool{"hvs.root-token": true},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			vaultErrors(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
			return
		}
	}
	switch {
	case r.URL.Path == "/v1/auth/approle/login" && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		if body["role_id"] != f.roleID || body["secret_id"] != f.secretID {
			vaultErrors(w, http.StatusBadRequest, "invalid role or secret ID")
			return
		}
		f.logins++
		token := fmt.Sprintf("hvs.approle-%d", f.logins)
		f.tokens[token] = true
		writeJSON(w, http.StatusOK, f.authAnswer(token))
	case r.URL.Path == "/v1/auth/token/renew-self" && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		token := r.Header.Get("X-Vault-Token")
		if !f.tokens[token] {
			vaultErrors(w, http.StatusForbidden, "permission denied")
			return
		}
		f.renewals++
		writeJSON(w, http.StatusOK, f.authAnswer(token))
	case r.URL.Path == "/v1/pki/sign/certops" && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		if !f.tokens[r.Header.Get("X-Vault-Token")] {
			vaultErrors(w, http.StatusForbidden, "permission denied")
			return
		}
		if f.signError != "" {
			vaultErrors(w, http.StatusInternalServerError, f.signError)
			return
		}
		f.sign(w, body)
	default:
		vaultErrors(w, http.StatusNotFound, "no handler for route \""+strings.TrimPrefix(r.URL.Path, "/v1/")+"\". route entry not found.")
	}
}

func (f *fakeVault) authAnswer(token string) map[string]any {
	return map[string]any{
		"request_id": "d1e2", "lease_id": "", "renewable": false, "lease_duration": 0, "data": nil,
		"auth": map[string]any{
			"client_token": token, "accessor": "acc-" + token, "policies": []string{"default", "certops"},
			"token_policies": []string{"default", "certops"}, "lease_duration": f.lease, "renewable": true,
		},
	}
}

// sign issues like a PKI role with allowed_domains=[allowedDomain],
// allow_subdomains=true: the names come from common_name, alt_names,
// ip_sans and uri_sans, the lifetime from ttl, the key from the CSR.
func (f *fakeVault) sign(w http.ResponseWriter, body map[string]any) {
	form := url.Values{}
	for k, v := range body {
		form.Set(k, fmt.Sprint(v))
	}
	f.signs = append(f.signs, form)
	block, _ := pem.Decode([]byte(form.Get("csr")))
	if block == nil {
		vaultErrors(w, http.StatusBadRequest, "could not parse CSR: no PEM block")
		return
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		vaultErrors(w, http.StatusBadRequest, "could not parse CSR: "+err.Error())
		return
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: form.Get("common_name")},
		NotBefore:   time.Now().Add(-30 * time.Second),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	names := []string{form.Get("common_name")}
	for n := range strings.SplitSeq(form.Get("alt_names"), ",") {
		if n != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
			names = append(names, n)
		}
	}
	for _, n := range names {
		if n != "" && n != f.allowedDomain && !strings.HasSuffix(n, "."+f.allowedDomain) {
			vaultErrors(w, http.StatusBadRequest, fmt.Sprintf("subject alternate name %s not allowed by this role", n))
			return
		}
	}
	for s := range strings.SplitSeq(form.Get("ip_sans"), ",") {
		if s != "" {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
		}
	}
	for s := range strings.SplitSeq(form.Get("uri_sans"), ",") {
		if u, err := url.Parse(s); s != "" && err == nil {
			tmpl.URIs = append(tmpl.URIs, u)
		}
	}
	ttl, err := time.ParseDuration(form.Get("ttl"))
	if err != nil {
		vaultErrors(w, http.StatusBadRequest, "error parsing ttl: "+err.Error())
		return
	}
	tmpl.NotAfter = time.Now().Add(ttl)
	tmpl.SerialNumber, _ = rand.Int(rand.Reader, big.NewInt(1<<62))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, csr.PublicKey, f.caKey)
	if err != nil {
		vaultErrors(w, http.StatusInternalServerError, "error signing: "+err.Error())
		return
	}
	ans := signAnswer{
		Certificate:  strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))),
		IssuingCA:    strings.TrimSpace(f.caPEM),
		CAChain:      []string{strings.TrimSpace(f.caPEM)},
		SerialNumber: tmpl.SerialNumber.Text(16),
		Expiration:   tmpl.NotAfter.Unix(),
	}
	if f.tamper != nil {
		f.tamper(&ans)
	}
	writeJSON(w, http.StatusOK, map[string]any{"request_id": "a1b2", "lease_id": "", "renewable": false, "lease_duration": 0, "data": ans, "auth": nil})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// vaultErrors writes Vault's error body.
func vaultErrors(w http.ResponseWriter, status int, msgs ...string) {
	writeJSON(w, status, map[string]any{"errors": msgs})
}

func (f *fakeVault) counts() (logins, renewals, signs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins, f.renewals, len(f.signs)
}

func (f *fakeVault) lastSign() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.signs[len(f.signs)-1]
}

// revokeAll invalidates every token, as a Vault operator revoking them would.
func (f *fakeVault) revokeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.tokens)
}

// issuerSpec writes the CA bundle and the token (or secret ID) files into
// dir and returns the spec of a vault issuer using them.
func (f *fakeVault) issuerSpec(t *testing.T, dir string, appRole bool) *spec.VaultIssuer {
	t.Helper()
	v := &spec.VaultIssuer{Address: f.srv.URL, Mount: "pki", Role: "certops", CABundleFile: filepath.Join(dir, "vault-ca.pem")}
	writeFile(t, v.CABundleFile, []byte(f.caPEM))
	if appRole {
		v.Auth.AppRole = &spec.VaultAppRole{RoleID: f.roleID, SecretIDFile: filepath.Join(dir, "secret-id")}
		writeFile(t, v.Auth.AppRole.SecretIDFile, []byte(f.secretID+"\n"))
	} else {
		v.Auth.TokenFile = filepath.Join(dir, "token")
		writeFile(t, v.Auth.TokenFile, []byte("hvs.root-token\n"))
	}
	return v
}

func vaultObject(name string, v *spec.VaultIssuer) *spec.Object {
	return &spec.Object{Kind: spec.KindIssuer, Name: name, Spec: &spec.IssuerSpec{Vault: v}}
}

// signWithVault signs a fresh CSR for c with the registry's issuer "vault".
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
	f := newFakeVault(t)
	dir := t.TempDir()
	r, _, _ := newTestRegistry(t)
	v := f.issuerSpec(t, dir, false)
	r.Sync([]*spec.Object{vaultObject("vault", v)})

	c := shopSpec()
	leaf, csr, err := signWithVault(t, r, c)
	if err != nil {
		t.Fatal(err)
	}
	if !pki.SamePublicKey(leaf.PublicKey, csr.PublicKey) || leaf.Issuer.CommonName != "Fake Vault PKI Root" {
		t.Errorf("leaf: key matches %v, issuer %q", pki.SamePublicKey(leaf.PublicKey, csr.PublicKey), leaf.Issuer.CommonName)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < 24*time.Hour || got > 24*time.Hour+time.Minute {
		t.Errorf("lifetime %v, want the spec's 24h", got)
	}
	req := f.lastSign()
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
	if req := f.lastSign(); req.Get("ip_sans") != "192.0.2.7" || req.Get("uri_sans") != "spiffe://example.com/shop" {
		t.Errorf("ip_sans %q uri_sans %q", req.Get("ip_sans"), req.Get("uri_sans"))
	}

	// The token file is read at each use: a rotated token is used at once,
	// an unknown one gets Vault's message back.
	writeFile(t, v.Auth.TokenFile, []byte("hvs.revoked"))
	_, _, err = signWithVault(t, r, c)
	wantKind(t, err, failure.Forbidden, "permission denied")
	if status := r.Status()["vault"]; !strings.Contains(status, "permission denied") {
		t.Errorf("status %q, want Vault's message", status)
	}
	f.mu.Lock()
	f.tokens["hvs.rotated"] = true
	f.mu.Unlock()
	writeFile(t, v.Auth.TokenFile, []byte("hvs.rotated\n"))
	if _, _, err := signWithVault(t, r, c); err != nil {
		t.Fatalf("with the rotated token: %v", err)
	}
	if status := r.Status()["vault"]; status != "" {
		t.Errorf("status after a success %q, want healthy", status)
	}
	if logins, _, _ := f.counts(); logins != 0 {
		t.Errorf("%d AppRole logins with a token file", logins)
	}
}

func TestVaultAppRoleLoginAndRenewal(t *testing.T) {
	f := newFakeVault(t)
	r, clock, _ := newTestRegistry(t)
	r.Sync([]*spec.Object{vaultObject("vault", f.issuerSpec(t, t.TempDir(), true))})

	for range 2 {
		if _, _, err := signWithVault(t, r, shopSpec()); err != nil {
			t.Fatal(err)
		}
	}
	if logins, renewals, signs := f.counts(); logins != 1 || renewals != 0 || signs != 2 {
		t.Fatalf("logins %d renewals %d signs %d, want one login for two signings", logins, renewals, signs)
	}
	if got := f.lastSign(); got == nil {
		t.Fatal("no sign request")
	}

	// Past half the 60s lease the token is renewed, not replaced.
	clock.Advance(31 * time.Second)
	if _, _, err := signWithVault(t, r, shopSpec()); err != nil {
		t.Fatal(err)
	}
	if logins, renewals, _ := f.counts(); logins != 1 || renewals != 1 {
		t.Fatalf("logins %d renewals %d, want the token renewed", logins, renewals)
	}

	// Past the end of the lease it is obtained anew.
	clock.Advance(2 * time.Minute)
	if _, _, err := signWithVault(t, r, shopSpec()); err != nil {
		t.Fatal(err)
	}
	if logins, renewals, _ := f.counts(); logins != 2 || renewals != 1 {
		t.Fatalf("logins %d renewals %d, want a new login after the lease ended", logins, renewals)
	}

	// A token revoked in Vault: renewal fails, a new login follows.
	f.revokeAll()
	clock.Advance(31 * time.Second)
	if _, _, err := signWithVault(t, r, shopSpec()); err != nil {
		t.Fatal(err)
	}
	if logins, _, _ := f.counts(); logins != 3 {
		t.Fatalf("logins %d, want a login after the failed renewal", logins)
	}

	// Revoked mid-lease: Vault's 403 on sign makes one fresh login.
	f.revokeAll()
	if _, _, err := signWithVault(t, r, shopSpec()); err != nil {
		t.Fatal(err)
	}
	if logins, _, _ := f.counts(); logins != 4 {
		t.Fatalf("logins %d, want a login after the 403", logins)
	}
}

func TestVaultAppRoleWrongSecretID(t *testing.T) {
	f := newFakeVault(t)
	dir := t.TempDir()
	r, _, _ := newTestRegistry(t)
	v := f.issuerSpec(t, dir, true)
	writeFile(t, v.Auth.AppRole.SecretIDFile, []byte("wrong"))
	r.Sync([]*spec.Object{vaultObject("vault", v)})
	_, _, err := signWithVault(t, r, shopSpec())
	wantKind(t, err, failure.Rejected, "Vault answered 400 to auth/approle/login: invalid role or secret ID")
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error shows the secret ID: %v", err)
	}
	if _, _, signs := f.counts(); signs != 0 {
		t.Errorf("%d sign requests without a login", signs)
	}
}

func TestVaultErrorSurfaced(t *testing.T) {
	f := newFakeVault(t)
	r, _, _ := newTestRegistry(t)
	r.Sync([]*spec.Object{vaultObject("vault", f.issuerSpec(t, t.TempDir(), false))})
	c := shopSpec()
	c.CommonName, c.DNSNames = "shop.evil.test", []string{"shop.evil.test"}
	_, _, err := signWithVault(t, r, c)
	wantKind(t, err, failure.Rejected, `issuer "vault": Vault answered 400 to pki/sign/certops: subject alternate name shop.evil.test not allowed by this role`)

	// A long message with a credential in it comes back bounded and redacted.
	f.mu.Lock()
	f.signError = "backend https://admin:hunter2@db.internal/ failed: " + strings.Repeat("y", 10000)
	f.mu.Unlock()
	_, _, err = signWithVault(t, r, shopSpec())
	wantKind(t, err, failure.Unavailable, "Vault answered 500 to pki/sign/certops: backend")
	if strings.Contains(err.Error(), "hunter2") || len(err.Error()) > 5000 {
		t.Errorf("error not redacted or not bounded (%d bytes): %.200s", len(err.Error()), err)
	}
}

func TestVaultWrongCertificateRefused(t *testing.T) {
	other := newFakeVault(t) // another CA, to make certificates that do not chain
	otherKey, err := pki.GenerateKey(agentproto.KeySpec{Algorithm: spec.AlgorithmECDSA, Size: 256})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		tamper func(f *fakeVault, a *signAnswer)
		want   string
	}{
		{"not a certificate", func(_ *fakeVault, a *signAnswer) { a.Certificate = "garbage" }, "no certificate in the answer"},
		{"another key", func(f *fakeVault, a *signAnswer) {
			a.Certificate = f.leafFor(t, f.caCert, f.caKey, otherKey.Public(), "shop.example.com", "www.shop.example.com")
		}, "another key than the CSR's"},
		{"other names", func(f *fakeVault, a *signAnswer) {
			a.Certificate = f.leafFor(t, f.caCert, f.caKey, f.lastKey(t), "shop.example.com", "evil.example.com")
		}, "DNS names are [evil.example.com], want [shop.example.com, www.shop.example.com]"},
		{"another CA", func(f *fakeVault, a *signAnswer) {
			a.Certificate = f.leafFor(t, other.caCert, other.caKey, f.lastKey(t), "shop.example.com", "shop.example.com", "www.shop.example.com")
			a.CAChain, a.IssuingCA = []string{other.caPEM}, other.caPEM
		}, "does not chain to"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeVault(t)
			f.tamper = func(a *signAnswer) { tc.tamper(f, a) }
			r, _, _ := newTestRegistry(t)
			r.Sync([]*spec.Object{vaultObject("vault", f.issuerSpec(t, t.TempDir(), false))})
			_, _, err := signWithVault(t, r, shopSpec())
			wantKind(t, err, failure.Rejected, "Vault's certificate refused: ")
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// lastKey is the public key of the CSR of the last sign request.
func (f *fakeVault) lastKey(t *testing.T) crypto.PublicKey {
	block, _ := pem.Decode([]byte(f.signs[len(f.signs)-1].Get("csr")))
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return csr.PublicKey
}

// leafFor signs a leaf for pub with cn and dns names; f.mu is held.
func (f *fakeVault) leafFor(t *testing.T, ca *x509.Certificate, caKey crypto.Signer, pub crypto.PublicKey, cn string, dns ...string) string {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestVaultMisconfigured(t *testing.T) {
	f := newFakeVault(t)
	dir := t.TempDir()
	r, _, _ := newTestRegistry(t)
	v := f.issuerSpec(t, dir, false)
	v.CABundleFile = filepath.Join(dir, "missing.pem")
	r.Sync([]*spec.Object{vaultObject("vault", v)})
	if _, err := r.Signer("vault"); failure.KindOf(err) != failure.Unavailable || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("Signer: %v, want unavailable naming the CA bundle", err)
	}
	if s := r.Status()["vault"]; !strings.Contains(s, "missing.pem") {
		t.Errorf("status %q", s)
	}
}
