package agentapi_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/testkit/opensslca"
)

// externalFleet is fleetObjs with internal-ca an external issuer running
// script, trusting the CA certificate bundle.
func externalFleet(script, bundle string) []*spec.Object {
	objs := fleetObjs()
	objs[0] = &spec.Object{Kind: spec.KindIssuer, Name: "internal-ca", Spec: &spec.IssuerSpec{External: &spec.ExternalIssuer{
		Command: []string{script}, CABundleFile: bundle,
	}}}
	return objs
}

func TestIssueThroughExternalOpenSSLCA(t *testing.T) {
	ca := opensslca.New(t, "OpenSSL Corporate CA")
	request := filepath.Join(t.TempDir(), "request.json")
	script := opensslca.Script(t, `cp "$CERTOPS_REQUEST_FILE" '`+request+`'
exec '`+ca.SignScript(t)+`'
`)
	e := newEnv(t, envOptions{}, externalFleet(script, ca.CertFile)...)

	issued, leaf := e.issued("web-01", "shop")
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "www.shop.example.com"}); err != nil {
		t.Errorf("the leaf openssl issued does not verify: %v", err)
	}
	if issued.ChainPEM != string(caPEM) {
		t.Errorf("chain = %q, want the CA certificate the script printed", issued.ChainPEM)
	}

	// The command learned whom it signed for.
	var req issuer.ExternalRequest
	b, err := os.ReadFile(request)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if req.Certificate != "shop" || req.Agent != "web-01" || req.Issuer != "internal-ca" || req.DurationSeconds != 2160*3600 {
		t.Errorf("request = %+v", req)
	}

	// Stored and handed out like any other certificate.
	deps, err := e.st.CertificateDeployments(context.Background(), "shop")
	if err != nil || len(deps) != 1 {
		t.Fatalf("deployments of shop: %v, %v", deps, err)
	}
	if v := deps[0].Current; v == nil || v.Serial != issued.Serial || v.Issuer != "internal-ca" || deps[0].State != state.DeploymentIssued {
		t.Errorf("stored deployment %+v", deps[0])
	}
	if a := e.assignment("web-01", "shop"); a.Current == nil || a.Current.Serial != issued.Serial {
		t.Errorf("the assignment does not carry the certificate: %+v", a.Current)
	}
	if got, _ := e.metric("certops_issuance_total", map[string]string{"issuer": "internal-ca", "result": "success"}); got != 1 {
		t.Errorf("issuance success count = %v, want 1", got)
	}
}

// A certificate the command returns for another key is refused: the agent
// is told the issuer failed (its CSR was right) and backs off; the
// deployment records why.
func TestExternalWrongCertificateIsRefusedAndRecorded(t *testing.T) {
	ca := opensslca.New(t, "OpenSSL Corporate CA")
	// Signs a CSR of its own, for the same names and another key.
	script := opensslca.Script(t, `cat >/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key -subj /CN=shop.example.com \
	-addext subjectAltName=DNS:shop.example.com,DNS:www.shop.example.com -out other.csr 2>/dev/null
exec '`+ca.SignScript(t)+`' < other.csr
`)
	e := newEnv(t, envOptions{}, externalFleet(script, ca.CertFile)...)

	r := e.issue("web-01", "shop")
	b := r.errorBody(t)
	if r.status != http.StatusServiceUnavailable || b.Error.Code != agentproto.CodeIssuerUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("got %d %+v, want 503 issuer_unavailable with Retry-After", r.status, b)
	}
	deps, err := e.st.CertificateDeployments(context.Background(), "shop")
	if err != nil || len(deps) != 1 {
		t.Fatalf("deployments: %v %v", deps, err)
	}
	if d := deps[0]; d.State != state.DeploymentIssueFailed || !strings.Contains(d.LastError, "another key") || d.Current != nil || d.Failures != 1 {
		t.Errorf("deployment %+v", d)
	}
	if got, _ := e.metric("certops_issuance_total", map[string]string{"issuer": "internal-ca", "result": "failure"}); got != 1 {
		t.Errorf("failure count = %v, want 1", got)
	}
}

func TestExternalCommandFailureIsIssuerUnavailable(t *testing.T) {
	ca := opensslca.New(t, "OpenSSL Corporate CA")
	script := opensslca.Script(t, `echo "the CA is in maintenance until 03:00" >&2
exit 1
`)
	e := newEnv(t, envOptions{}, externalFleet(script, ca.CertFile)...)

	r := e.issue("web-01", "shop")
	b := r.errorBody(t)
	if r.status != http.StatusServiceUnavailable || b.Error.Code != agentproto.CodeIssuerUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("got %d %+v, want 503 issuer_unavailable with Retry-After", r.status, b)
	}
	if strings.Contains(string(r.body), "maintenance") {
		t.Errorf("the command's stderr leaked to the agent: %s", r.body)
	}
	deps, _ := e.st.CertificateDeployments(context.Background(), "shop")
	if len(deps) != 1 || deps[0].State != state.DeploymentIssueFailed ||
		!strings.Contains(deps[0].LastError, "exit status 1; stderr: the CA is in maintenance until 03:00") {
		t.Errorf("deployment after the failure: %+v", deps)
	}
	if got, _ := e.metric("certops_issuance_total", map[string]string{"issuer": "internal-ca", "result": "failure"}); got != 1 {
		t.Errorf("failure count = %v, want 1", got)
	}
}

// A TrustBundle naming an external issuer deploys the CA certificates of
// its caBundleFile; openssl, given the bundle as its trust store, accepts
// the certificate the issuer's openssl CA signed.
func TestExternalIssuerAsTrustBundleSource(t *testing.T) {
	ca := opensslca.New(t, "OpenSSL Corporate CA")
	objs := append(externalFleet(ca.SignScript(t), ca.CertFile), bundleObj("corporate", spec.TrustSource{Issuer: "internal-ca"}))
	e := newEnv(t, envOptions{}, objs...)

	got, _ := e.bundles("web-01")
	b, ok := got["corporate"]
	if !ok {
		t.Fatalf("web-01 has no bundle corporate: %+v", got)
	}
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if b.PEM != string(caPEM) {
		t.Errorf("bundle = %q, want the CA of caBundleFile", b.PEM)
	}
	issued, _ := e.issued("web-01", "shop")
	dir := t.TempDir()
	bundle, leaf := filepath.Join(dir, "bundle.pem"), filepath.Join(dir, "leaf.pem")
	if err := os.WriteFile(bundle, []byte(b.PEM), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(leaf, []byte(issued.CertPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("openssl", "verify", "-CAfile", bundle, leaf).CombinedOutput(); err != nil {
		t.Errorf("openssl verify -CAfile bundle: %v\n%s", err, out)
	}
}
