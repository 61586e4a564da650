// Package vaultkit is a stand-in for a HashiCorp Vault server in tests: an
// HTTP server on 127.0.0.1 that answers the calls certops' vault issuer
// makes with the request and response bodies Vault's API documentation
// describes (https://developer.hashicorp.com/vault/api-docs):
// auth/approle/login, auth/token/renew-self and pki/sign/certops, and
// Vault's error body {"errors":[...]}. It signs with a CA of its own and,
// like a PKI role with allowed_domains=example.com and
// allow_subdomains=true, refuses other names.
//
// It is not Vault: building `vault server -dev` from source did not fit
// CI's budget (see docs/operator-guide.md, "Vault PKI").
package vaultkit

import (
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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certops/certops/pki"
)

// The credentials the server accepts, the PKI mount and role it serves.
const (
	RootToken     = "hvs.root-token"
	RoleID        = "5f2c1c2e-certops-role"
	SecretID      = "s3cr3t-id"
	Mount         = "pki"
	Role          = "certops"
	AllowedDomain = "example.com"
	// LeaseSeconds is the lease of an AppRole token, at login and renewal.
	LeaseSeconds = 60
)

// Server is the stand-in Vault.
type Server struct {
	URL        string // the base address, http(s)://127.0.0.1:PORT
	CAPEM      string // the CA it signs with
	TLSCertPEM string // the server's TLS certificate (StartTLS only)

	caCert *x509.Certificate
	caKey  crypto.Signer

	mu        sync.Mutex
	tokens    map[string]bool
	logins    int
	renewals  int
	signs     []url.Values
	tamper    func(*SignAnswer, *x509.CertificateRequest)
	signError string
}

// SignAnswer is the data of a pki/sign answer.
type SignAnswer struct {
	Certificate  string   `json:"certificate"`
	IssuingCA    string   `json:"issuing_ca"`
	CAChain      []string `json:"ca_chain"`
	SerialNumber string   `json:"serial_number"`
	Expiration   int64    `json:"expiration"`
}

// Start starts a server speaking plain HTTP with a new CA; it stops when
// the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, false)
}

// StartTLS is Start over HTTPS: TLSCertPEM is the server's self-signed
// certificate (for 127.0.0.1), to be trusted by the client.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, useTLS bool) *Server {
	t.Helper()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{CommonName: "vaultkit PKI root"})
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
	s := &Server{CAPEM: string(certPEM), caCert: certs[0], caKey: key, tokens: map[string]bool{RootToken: true}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if useTLS {
		srv.StartTLS()
		s.TLSCertPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Counts says how many AppRole logins and token renewals the server
// granted, and how many sign requests with a valid token it answered.
func (s *Server) Counts() (logins, renewals, signs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins, s.renewals, len(s.signs)
}

// LastSign is the body of the last sign request, its values as strings.
func (s *Server) LastSign() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.signs) == 0 {
		return nil
	}
	return s.signs[len(s.signs)-1]
}

// AddToken makes token valid.
func (s *Server) AddToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = true
}

// RevokeAll invalidates every token, as an operator revoking them would.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// SetSignError makes sign requests answer 500 with msg ("": sign again).
func (s *Server) SetSignError(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signError = msg
}

// Tamper changes every later sign answer with f, which gets the request's
// CSR (a wrong certificate, a wrong chain).
func (s *Server) Tamper(f func(*SignAnswer, *x509.CertificateRequest)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tamper = f
}

// SignLeaf returns a PEM certificate for pub with common name cn and DNS
// names dns, signed by the server's CA with no checks: for tampering.
func (s *Server) SignLeaf(pub crypto.PublicKey, cn string, dns ...string) (string, error) {
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	return s.create(tmpl, pub)
}

func (s *Server) create(tmpl *x509.Certificate, pub crypto.PublicKey) (string, error) {
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return "", err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.caCert, pub, s.caKey)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))), nil
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		vaultErrors(w, http.StatusMethodNotAllowed, "unsupported operation")
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		vaultErrors(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
		return
	}
	token := r.Header.Get("X-Vault-Token")
	switch r.URL.Path {
	case "/v1/auth/approle/login":
		if body["role_id"] != RoleID || body["secret_id"] != SecretID {
			vaultErrors(w, http.StatusBadRequest, "invalid role or secret ID")
			return
		}
		s.logins++
		token := fmt.Sprintf("hvs.approle-%d", s.logins)
		s.tokens[token] = true
		writeJSON(w, http.StatusOK, authAnswer(token))
	case "/v1/auth/token/renew-self":
		if !s.tokens[token] {
			vaultErrors(w, http.StatusForbidden, "permission denied")
			return
		}
		s.renewals++
		writeJSON(w, http.StatusOK, authAnswer(token))
	case "/v1/" + Mount + "/sign/" + Role:
		if !s.tokens[token] {
			vaultErrors(w, http.StatusForbidden, "permission denied")
			return
		}
		if s.signError != "" {
			s.signs = append(s.signs, url.Values{})
			vaultErrors(w, http.StatusInternalServerError, s.signError)
			return
		}
		s.sign(w, body)
	default:
		vaultErrors(w, http.StatusNotFound, "no handler for route \""+strings.TrimPrefix(r.URL.Path, "/v1/")+"\". route entry not found.")
	}
}

func authAnswer(token string) map[string]any {
	return map[string]any{
		"request_id": "d1e2f3", "lease_id": "", "renewable": false, "lease_duration": 0, "data": nil,
		"auth": map[string]any{
			"client_token": token, "accessor": "accessor-" + token, "policies": []string{"default", "certops"},
			"token_policies": []string{"default", "certops"}, "lease_duration": LeaseSeconds, "renewable": true,
		},
	}
}

// sign issues as a PKI role would: the names from common_name,
// alt_names, ip_sans and uri_sans, the lifetime from ttl, the key from
// the CSR.
func (s *Server) sign(w http.ResponseWriter, body map[string]any) {
	form := url.Values{}
	for k, v := range body {
		form.Set(k, fmt.Sprint(v))
	}
	s.signs = append(s.signs, form)
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
		if n != "" && n != AllowedDomain && !strings.HasSuffix(n, "."+AllowedDomain) {
			vaultErrors(w, http.StatusBadRequest, fmt.Sprintf("subject alternate name %s not allowed by this role", n))
			return
		}
	}
	for v := range strings.SplitSeq(form.Get("ip_sans"), ",") {
		if ip := net.ParseIP(v); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	for v := range strings.SplitSeq(form.Get("uri_sans"), ",") {
		if u, err := url.Parse(v); v != "" && err == nil {
			tmpl.URIs = append(tmpl.URIs, u)
		}
	}
	ttl, err := time.ParseDuration(form.Get("ttl"))
	if err != nil {
		vaultErrors(w, http.StatusBadRequest, "error parsing ttl: "+err.Error())
		return
	}
	tmpl.NotAfter = time.Now().Add(ttl)
	leaf, err := s.create(tmpl, csr.PublicKey)
	if err != nil {
		vaultErrors(w, http.StatusInternalServerError, "error signing: "+err.Error())
		return
	}
	ca := strings.TrimSpace(s.CAPEM)
	ans := SignAnswer{Certificate: leaf, IssuingCA: ca, CAChain: []string{ca},
		SerialNumber: tmpl.SerialNumber.Text(16), Expiration: tmpl.NotAfter.Unix()}
	if s.tamper != nil {
		s.tamper(&ans, csr)
	}
	writeJSON(w, http.StatusOK, map[string]any{"request_id": "a1b2c3", "lease_id": "", "renewable": false,
		"lease_duration": 0, "data": ans, "auth": nil})
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
