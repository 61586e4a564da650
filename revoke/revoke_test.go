package revoke_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/revoke"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit/storekit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fixture is a local CA issuer "ca" whose public URL is a live /pki/v1/
// server on 127.0.0.1, a store, and a Certificate "shop".
type fixture struct {
	t        *testing.T
	st       *store.Store
	registry *issuer.Registry
	srv      *httptest.Server
	dir      string
	caPEM    []byte
	issuer   *spec.Object
	cert     *spec.Object
	commits  int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, st: storekit.Open(t), registry: issuer.NewRegistry(nil), dir: t.TempDir()}
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{CommonName: "revoke test CA"})
	if err != nil {
		t.Fatal(err)
	}
	f.caPEM = certPEM
	f.write("ca.pem", certPEM)
	f.write("ca.key", keyPEM)
	f.srv = httptest.NewServer(revoke.NewHandler(f.st, f.registry, revoke.Config{}, nil))
	t.Cleanup(f.srv.Close)
	f.issuer = &spec.Object{Kind: spec.KindIssuer, Name: "ca", Spec: &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{
		CertFile: filepath.Join(f.dir, "ca.pem"), KeyFile: filepath.Join(f.dir, "ca.key"), PublicURL: f.srv.URL}}}
	f.registry.Sync([]*spec.Object{f.issuer})
	f.cert = &spec.Object{Kind: spec.KindCertificate, Name: "shop", Spec: &spec.CertificateSpec{IssuerRef: "ca", DNSNames: []string{"shop.example.com"},
		Deploy: &spec.Deployment{Agents: []string{"web-01", "web-02"}, Files: spec.DeployFiles{Cert: "/etc/ssl/shop.pem"}}}}
	return f
}

func (f *fixture) write(name string, data []byte) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// issue signs a leaf of "shop" for agent and, when record is set, records
// it as the agent's current version; it writes the leaf to NAME.pem.
func (f *fixture) issue(agent string, record bool) *agentproto.Issued {
	f.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"shop.example.com"}}, key)
	if err != nil {
		f.t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		f.t.Fatal(err)
	}
	signer, err := f.registry.Signer("ca")
	if err != nil {
		f.t.Fatal(err)
	}
	now := time.Now()
	iss, err := signer.Sign(context.Background(), f.cert.Certificate(), csr, now)
	if err != nil {
		f.t.Fatal(err)
	}
	f.write(agent+".pem", []byte(iss.CertPEM))
	if record {
		_, err := f.st.RecordIssuance(context.Background(), store.Issuance{Version: state.CertificateVersion{
			Certificate: "shop", Agent: agent, SpecHash: "h", Serial: iss.Serial, SHA256: iss.SHA256,
			NotBefore: iss.NotBefore, NotAfter: iss.NotAfter, CertPEM: iss.CertPEM, ChainPEM: iss.ChainPEM,
			Issuer: "ca", IssuedAt: now}, RenewAt: now.Add(30 * 24 * time.Hour)})
		if err != nil {
			f.t.Fatal(err)
		}
	}
	return iss
}

// apply applies the issuer, the certificate and revocations as the next revision.
func (f *fixture) apply(revocations ...*spec.Object) {
	f.t.Helper()
	f.commits++
	rev := state.Revision{Ref: "main", Commit: strings.Repeat(string(rune('0'+f.commits)), 40)}
	objs := []*spec.Object{f.issuer, f.cert}
	for i, a := range []string{"web-01", "web-02"} {
		objs = append(objs, &spec.Object{Kind: spec.KindAgent, Name: a, Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat(string(rune('a'+i)), 64)}})
	}
	storekit.Apply(f.t, f.st, rev, state.Status{LastAppliedRevision: rev.String()},
		storekit.Desired(append(objs, revocations...)...))
}

func revocation(name string, r spec.RevocationSpec) *spec.Object {
	return &spec.Object{Kind: spec.KindRevocation, Name: name, Spec: &r}
}

// colonHex writes a serial as openssl prints it, upper case with colons.
func colonHex(serial string) string {
	if len(serial)%2 == 1 {
		serial = "0" + serial
	}
	var parts []string
	for i := 0; i < len(serial); i += 2 {
		parts = append(parts, strings.ToUpper(serial[i:i+2]))
	}
	return strings.Join(parts, ":")
}

func (f *fixture) fetchCRL() *x509.RevocationList {
	f.t.Helper()
	resp, err := http.Get(f.srv.URL + "/pki/v1/ca/crl")
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		f.t.Fatalf("GET crl: %s %s %s", resp.Status, resp.Header.Get("Content-Type"), der)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		f.t.Fatal(err)
	}
	f.write("crl.pem", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	return crl
}

func run(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCRLAndOCSPWithOpenSSL revokes one of two deployed leaves by serial
// and checks, with openssl against the live routes, that the CRL and the
// OCSP responder say revoked for it and good for the other, and unknown
// for a serial the CA signed but certops never issued; the leaves name the
// routes; the deployment of the revoked leaf is due for renewal at once.
func TestCRLAndOCSPWithOpenSSL(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	bad := f.issue("web-01", true)
	good := f.issue("web-02", true)
	f.issue("stray", false)
	f.apply()

	leaf := parsePEM(t, bad.CertPEM)
	base := f.srv.URL + "/pki/v1/ca/"
	if got := leaf.CRLDistributionPoints; len(got) != 1 || got[0] != base+"crl" {
		t.Errorf("CRL distribution points = %v", got)
	}
	if len(leaf.OCSPServer) != 1 || leaf.OCSPServer[0] != base+"ocsp" || len(leaf.IssuingCertificateURL) != 1 || leaf.IssuingCertificateURL[0] != base+"ca" {
		t.Errorf("AIA = OCSP %v, CA issuers %v", leaf.OCSPServer, leaf.IssuingCertificateURL)
	}

	empty := f.fetchCRL()
	if len(empty.RevokedCertificateEntries) != 0 || empty.Number.Int64() != 1 {
		t.Fatalf("first CRL: number %v, %d entries; want 1, none", empty.Number, len(empty.RevokedCertificateEntries))
	}
	if d := empty.NextUpdate.Sub(empty.ThisUpdate); d != revoke.DefaultCRLValidity {
		t.Errorf("CRL validity %s, want %s", d, revoke.DefaultCRLValidity)
	}
	if again := f.fetchCRL(); again.Number.Int64() != 1 {
		t.Errorf("second fetch signed CRL number %v; want the cached 1", again.Number)
	}

	f.apply(revocation("leak", spec.RevocationSpec{Certificate: "shop", Serials: []string{colonHex(bad.Serial)}, Reason: "keyCompromise"}))

	crl := f.fetchCRL()
	if crl.Number.Int64() != 2 || len(crl.RevokedCertificateEntries) != 1 ||
		crl.RevokedCertificateEntries[0].SerialNumber.Text(16) != bad.Serial || crl.RevokedCertificateEntries[0].ReasonCode != 1 {
		t.Fatalf("CRL after the revocation: number %v, entries %+v", crl.Number, crl.RevokedCertificateEntries)
	}
	out, err := run(t, f.dir, "openssl", "verify", "-crl_check", "-CAfile", "ca.pem", "-CRLfile", "crl.pem", "web-01.pem")
	if err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify of the revoked leaf: %v\n%s", err, out)
	}
	if out, err := run(t, f.dir, "openssl", "verify", "-crl_check", "-CAfile", "ca.pem", "-CRLfile", "crl.pem", "web-02.pem"); err != nil {
		t.Errorf("openssl verify of the good leaf: %v\n%s", err, out)
	}

	for _, tt := range []struct{ leaf, want string }{
		{"web-01.pem", "web-01.pem: revoked"},
		{"web-02.pem", "web-02.pem: good"},
		{"stray.pem", "stray.pem: unknown"},
	} {
		out, err := run(t, f.dir, "openssl", "ocsp", "-issuer", "ca.pem", "-cert", tt.leaf, "-url", base+"ocsp", "-CAfile", "ca.pem")
		if err != nil || !strings.Contains(out, tt.want) || !strings.Contains(out, "Response verify OK") {
			t.Errorf("openssl ocsp %s: %v\n%s", tt.leaf, err, out)
		}
		if tt.leaf == "web-01.pem" && !strings.Contains(out, "Reason: keyCompromise") {
			t.Errorf("openssl ocsp %s does not give the reason:\n%s", tt.leaf, out)
		}
	}

	// OCSP by GET, base64 in the path.
	ca, goodLeaf := parsePEM(t, string(f.caPEM)), parsePEM(t, good.CertPEM)
	req, err := ocsp.CreateRequest(goodLeaf, ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "ocsp/" + base64.StdEncoding.EncodeToString(req))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r, err := ocsp.ParseResponseForCert(body, goodLeaf, ca)
	if err != nil || r.Status != ocsp.Good {
		t.Errorf("OCSP GET: %v, %+v", err, r)
	}

	// The read API's deployments say which installed serial is revoked.
	for _, agent := range []string{"web-01", "web-02"} {
		serial := map[string]string{"web-01": bad.Serial, "web-02": good.Serial}[agent]
		if _, err := f.st.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: agent, SpecHash: "h",
			Serial: serial, Result: state.DeploymentInstalled, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		deps, err := f.st.AgentDeployments(ctx, agent)
		if err != nil || len(deps) != 1 || deps[0].Revoked != (agent == "web-01") {
			t.Errorf("AgentDeployments(%s) = %+v, %v; want revoked only on web-01", agent, deps, err)
		}
	}

	// Alerting's facts: the revoked serial is in use on web-01, since its revocation.
	facts, err := f.st.AlertFacts(ctx, time.Now(), time.Now())
	if err != nil || len(facts.Certificates) != 1 {
		t.Fatalf("AlertFacts: %+v, %v", facts, err)
	}
	if c := facts.Certificates[0]; c.RevokedInUseSince.IsZero() || len(c.RevokedInUseAgents) != 1 || c.RevokedInUseAgents[0] != "web-01" {
		t.Errorf("facts of shop: revoked in use since %s on %v; want web-01", c.RevokedInUseSince, c.RevokedInUseAgents)
	}

	// The deployment of the revoked serial renews now; the other does not.
	deps, _, err := f.st.DeploymentsSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deps {
		due := !d.RenewAt.After(time.Now())
		if due != (d.Agent == "web-01") {
			t.Errorf("deployment on %s: renewAt %s (due %v)", d.Agent, d.RenewAt, due)
		}
	}
}

// TestRevocationIsFinal: issuedBefore revokes every serial issued before
// it; removing the Revocation afterwards un-revokes nothing, and a second
// Revocation of a revoked serial keeps the first reason.
func TestRevocationIsFinal(t *testing.T) {
	f := newFixture(t)
	a := f.issue("web-01", true)
	b := f.issue("web-02", true)
	f.apply(revocation("all", spec.RevocationSpec{Certificate: "shop",
		IssuedBefore: time.Now().Add(time.Hour).UTC().Format(time.RFC3339), Reason: "superseded"}))
	f.apply(revocation("again", spec.RevocationSpec{Certificate: "shop", Serials: []string{a.Serial}, Reason: "keyCompromise"}))
	crl := f.fetchCRL()
	reasons := map[string]int{}
	for _, e := range crl.RevokedCertificateEntries {
		reasons[e.SerialNumber.Text(16)] = e.ReasonCode
	}
	if len(reasons) != 2 || reasons[a.Serial] != 4 || reasons[b.Serial] != 4 {
		t.Errorf("CRL entries %v; want %s and %s, both superseded (4)", reasons, a.Serial, b.Serial)
	}
	// A leaf issued after the revocation was applied is not revoked.
	c := f.issue("web-03", true)
	f.apply()
	crl2 := f.fetchCRL()
	if len(crl2.RevokedCertificateEntries) != 2 {
		t.Errorf("after removing the Revocations the CRL lists %d serials; want 2 (revocation is final)", len(crl2.RevokedCertificateEntries))
	}
	for _, e := range crl2.RevokedCertificateEntries {
		if e.SerialNumber.Text(16) == c.Serial {
			t.Errorf("serial %s issued after the revocation is listed", c.Serial)
		}
	}
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		method, path, ctype, body string
		status                    int
		ocspStatus                []byte
	}{
		{"GET", "/pki/v1/nope/crl", "", "", 404, nil},
		{"GET", "/pki/v1/ca/ocsp/!!!", "", "", 200, ocsp.MalformedRequestErrorResponse},
		{"POST", "/pki/v1/ca/ocsp", "application/ocsp-request", "junk", 200, ocsp.MalformedRequestErrorResponse},
		{"POST", "/pki/v1/ca/ocsp", "text/plain", "junk", 400, nil},
		{"DELETE", "/pki/v1/ca/crl", "", "", 405, nil},
	} {
		req, _ := http.NewRequest(tt.method, f.srv.URL+tt.path, strings.NewReader(tt.body))
		if tt.ctype != "" {
			req.Header.Set("Content-Type", tt.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || (tt.ocspStatus != nil && !bytes.Equal(body, tt.ocspStatus)) {
			t.Errorf("%s %s: %d %q", tt.method, tt.path, resp.StatusCode, body)
		}
	}
	// A request about another CA's certificate is unauthorized.
	otherPEM, otherKey, _ := pki.NewCA(pki.CAOptions{CommonName: "other"})
	other, _ := pki.ParseCA(otherPEM, otherKey)
	leaf := f.issue("web-01", false)
	l := parsePEM(t, leaf.CertPEM)
	req, _ := ocsp.CreateRequest(l, other.Certificate(), nil)
	resp, err := http.Post(f.srv.URL+"/pki/v1/ca/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(body, ocsp.UnauthorizedErrorResponse) {
		t.Errorf("OCSP for another CA: %q", body)
	}
}

func parsePEM(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	certs, err := pki.ParseCertificatesPEM([]byte(s))
	if err != nil || len(certs) == 0 {
		t.Fatalf("parse certificate: %v", err)
	}
	return certs[0]
}
