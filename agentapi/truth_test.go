package agentapi_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/state"
)

// A name outside the CA's constraints is refused as name_not_permitted
// (not csr_mismatch: the CSR matched), the agent's report of that refusal
// keeps the server's issue-failed state and its error, and once the bad
// commit is reverted the deployment is installed again, not failed with the
// old error: a state recorded for another spec does not define this one's.
func TestRefusedNameAndRevertTellTheTruth(t *testing.T) {
	caDir := t.TempDir()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{PermittedDNSDomains: []string{"example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	iss := issuerObj("internal-ca")
	iss.Issuer().LocalCA.CertFile, iss.Issuer().LocalCA.KeyFile = filepath.Join(caDir, "ca.crt"), filepath.Join(caDir, "ca.key")
	writeCAFile(t, iss.Issuer().LocalCA.CertFile, certPEM)
	writeCAFile(t, iss.Issuer().LocalCA.KeyFile, keyPEM)
	good := certObj("shop", []string{"web-01"}, nil)
	e := newEnv(t, envOptions{}, iss, agentObj("web-01", nil), good)
	goodHash := assign.SpecHash(good.Certificate())

	r := e.issue("web-01", "shop")
	if r.status != http.StatusOK {
		t.Fatalf("issue within the constraints: %d %s", r.status, r.body)
	}
	var issued agentproto.Issued
	r.decode(t, &issued)
	e.report(agentproto.Report{Certificate: "shop", SpecHash: goodHash, Serial: issued.Serial, Result: agentproto.ResultInstalled})

	bad := certObj("shop", []string{"web-01"}, nil)
	bad.Certificate().DNSNames = append(slices.Clone(bad.Certificate().DNSNames), "shop.example.org")
	e.apply(bad)
	e.refresh()
	badHash := assign.SpecHash(bad.Certificate())
	r = e.issue("web-01", "shop")
	b := r.errorBody(t)
	if r.status != http.StatusUnprocessableEntity || b.Error.Code != agentproto.CodeNameNotPermitted || !strings.Contains(b.Error.Message, `"shop.example.org"`) {
		t.Fatalf("issue outside the constraints: %d %+v, want 422 name_not_permitted naming shop.example.org", r.status, b)
	}
	e.report(agentproto.Report{Certificate: "shop", SpecHash: badHash, Result: agentproto.ResultFailed, Stage: agentproto.StageIssue,
		Error: "422 name_not_permitted: " + b.Error.Message})
	st, lastErr, rd := e.truth("shop", badHash)
	if st != state.DeploymentIssueFailed || !strings.Contains(lastErr, "not permitted") || strings.HasPrefix(lastErr, "issue:") {
		t.Errorf("after the agent's report of the refusal: state %s, error %q; want the server's issue-failed", st, lastErr)
	}
	if !strings.HasPrefix(rd.Reason, "issuance for agent web-01 failed: ") || !strings.Contains(rd.Reason, "shop.example.org") {
		t.Errorf("reason %q, want the issuance failure", rd.Reason)
	}

	e.apply(good) // the bad commit is reverted
	e.refresh()
	st, lastErr, rd = e.truth("shop", goodHash)
	if st != state.DeploymentInstalled || lastErr != "" || !rd.Ready {
		t.Errorf("after the revert: state %s, error %q, readiness %+v; want installed, ready", st, lastErr, rd)
	}
	if a := e.assignment("web-01", "shop"); a.Current == nil || a.Current.Serial != issued.Serial || !a.NotBefore.IsZero() {
		t.Errorf("after the revert the assignment is %+v, want the installed certificate, no backoff", a)
	}
}

// report posts rep as web-01 and expects 204.
func (e *env) report(rep agentproto.Report) {
	e.t.Helper()
	if r := e.do("POST", agentproto.PathReports, tokenOf("web-01"), rep); r.status != http.StatusNoContent {
		e.t.Fatalf("report %+v: %d %s", rep, r.status, r.body)
	}
}

// truth is what the status block says of cert on web-01 for spec hash:
// the deployment's state and error, and the certificate's readiness.
func (e *env) truth(cert, hash string) (state.DeploymentState, string, assign.Readiness) {
	e.t.Helper()
	deps, err := e.st.CertificateDeployments(context.Background(), cert)
	if err != nil || len(deps) != 1 {
		e.t.Fatalf("deployments of %s: %+v %v", cert, deps, err)
	}
	st, lastErr := assign.CurrentState(hash, &deps[0])
	rd := assign.Assess(hash, []string{"web-01"}, func(string) *state.Deployment { return &deps[0] }, e.clock.Now())
	return st, lastErr, rd
}

func writeCAFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
