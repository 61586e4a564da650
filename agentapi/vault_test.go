package agentapi_test

import (
	"context"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/testkit/vaultkit"
)

// An agent gets a certificate signed by Vault PKI (the vaultkit stand-in,
// logged in with AppRole) through the agent API, stored like any other; a
// name the Vault role refuses is recorded with Vault's message.
func TestIssueThroughVault(t *testing.T) {
	v := vaultkit.Start(t)
	dir := t.TempDir()
	bundle, secretID := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "secret-id")
	if err := os.WriteFile(bundle, []byte(v.CAPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretID, []byte(vaultkit.SecretID), 0o600); err != nil {
		t.Fatal(err)
	}
	vaultIssuer := &spec.Object{Kind: spec.KindIssuer, Name: "vault", Spec: &spec.IssuerSpec{Vault: &spec.VaultIssuer{
		Address: v.URL, Mount: vaultkit.Mount, Role: vaultkit.Role, CABundleFile: bundle,
		Auth: spec.VaultAuth{AppRole: &spec.VaultAppRole{RoleID: vaultkit.RoleID, SecretIDFile: secretID}},
	}}}
	shop := certObj("shop", []string{"web-01"}, nil)
	shop.Certificate().IssuerRef = "vault"
	evil := certObj("evil", []string{"web-01"}, nil)
	evil.Certificate().IssuerRef = "vault"
	evil.Certificate().CommonName, evil.Certificate().DNSNames = "evil.test", []string{"evil.test"}
	e := newEnv(t, envOptions{}, vaultIssuer, agentObj("web-01", nil), shop, evil)

	issued, leaf := e.issued("web-01", "shop")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(v.CAPEM))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "www.shop.example.com"}); err != nil {
		t.Errorf("the leaf does not verify against Vault's CA: %v", err)
	}
	if got := v.LastSign().Get("ttl"); got != "7776000s" {
		t.Errorf("ttl %q, want the spec's 2160h", got)
	}
	deps, err := e.st.CertificateDeployments(context.Background(), "shop")
	if err != nil || len(deps) != 1 || deps[0].Current == nil {
		t.Fatalf("deployments of shop: %+v, %v", deps, err)
	}
	if c := deps[0].Current; c.Issuer != "vault" || c.Serial != issued.Serial || !strings.Contains(c.ChainPEM, "BEGIN CERTIFICATE") || deps[0].State != state.DeploymentIssued {
		t.Errorf("stored %+v, version %+v", deps[0], c)
	}
	if logins, _, _ := v.Counts(); logins != 1 {
		t.Errorf("%d AppRole logins, want 1", logins)
	}

	r := e.issue("web-01", "evil")
	if b := r.errorBody(t); r.status != http.StatusServiceUnavailable || b.Error.Code != agentproto.CodeIssuerUnavailable || strings.Contains(b.Error.Message, "Vault") {
		t.Fatalf("issue evil.test: %d %s, want 503 issuer_unavailable without Vault's message", r.status, r.body)
	}
	deps, err = e.st.CertificateDeployments(context.Background(), "evil")
	if err != nil || len(deps) != 1 {
		t.Fatalf("deployments of evil: %+v, %v", deps, err)
	}
	if d := deps[0]; d.State != state.DeploymentIssueFailed || d.Current != nil ||
		!strings.Contains(d.LastError, "Vault answered 400 to pki/sign/certops: subject alternate name evil.test not allowed by this role") {
		t.Errorf("deployment of evil: %+v", d)
	}
}
