package agentapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/agentapi"
	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
)

const unauthorizedBody = `{"error":{"code":"unauthorized","message":"unauthorized"}}` + "\n"

func TestUnauthorized(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	check := func(name string, r response) {
		t.Helper()
		if r.status != http.StatusUnauthorized || string(r.body) != unauthorizedBody {
			t.Errorf("%s: got %d %q, want 401 %q", name, r.status, r.body, unauthorizedBody)
		}
	}
	check("no token", e.do("GET", agentproto.PathAssignments, "", nil))
	check("wrong token", e.do("GET", agentproto.PathAssignments, "not-a-token", nil))
	check("other scheme", e.do("GET", agentproto.PathAssignments, "", nil, "Authorization", "Basic "+tokenOf("web-01")))
	check("empty bearer", e.do("GET", agentproto.PathAssignments, "", nil, "Authorization", "Bearer "))
	// One rule with the API (package bearer): the scheme is case-insensitive.
	for _, scheme := range []string{"bearer", "BEARER", "Bearer "} {
		if r := e.do("GET", agentproto.PathAssignments, "", nil, "Authorization", scheme+" "+tokenOf("web-01")); r.status != http.StatusOK {
			t.Errorf("scheme %q: got %d %s, want 200", scheme, r.status, r.body)
		}
	}
	check("issue without token", e.do("POST", issuePath("shop"), "", agentproto.IssueRequest{}))

	if r := e.do("GET", agentproto.PathAssignments, tokenOf("web-02"), nil); r.status != http.StatusOK {
		t.Fatalf("web-02 before removal: %d %s", r.status, r.body)
	}
	// Revoked: the agent is removed from Git.
	e.remove(spec.Key{Kind: spec.KindAgent, Name: "web-02"})
	e.refresh()
	check("removed agent", e.do("GET", agentproto.PathAssignments, tokenOf("web-02"), nil))
	check("removed agent reports", e.do("POST", agentproto.PathReports, tokenOf("web-02"),
		agentproto.Report{Certificate: "pool", Result: "installed", Serial: "01"}))
}

func TestAssignmentsFollowTargets(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	for agent, want := range map[string][]string{
		"web-01": {"pool", "shop"}, "web-02": {"pool"}, "db-01": {"db"},
	} {
		a, etag := e.assignments(agent)
		var got []string
		for _, c := range a.Certificates {
			got = append(got, c.Name)
			if c.Current != nil || !c.RenewAt.IsZero() || c.SpecHash == "" {
				t.Errorf("%s/%s before issuance: %+v", agent, c.Name, c)
			}
		}
		if a.Agent != agent || !slices.Equal(got, want) || etag == "" {
			t.Errorf("%s: got agent %q certificates %v etag %q, want %v", agent, a.Agent, got, etag, want)
		}
	}
}

func TestIssueForeignCertificateIsNotFound(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	a := e.assignment("db-01", "db")
	_, csr := csrFor(t, a)
	foreign := e.do("POST", issuePath("db"), tokenOf("web-01"), agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: csr})
	missing := e.do("POST", issuePath("nope"), tokenOf("web-01"), agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: csr})
	if foreign.status != http.StatusNotFound || missing.status != http.StatusNotFound {
		t.Fatalf("got %d %s and %d %s, want 404 twice", foreign.status, foreign.body, missing.status, missing.body)
	}
	// Existence is not revealed: same message shape for both.
	fb, mb := foreign.errorBody(t), missing.errorBody(t)
	if fb.Error.Code != "not_found" || strings.Replace(fb.Error.Message, `"db"`, `"nope"`, 1) != mb.Error.Message {
		t.Errorf("foreign %+v vs missing %+v", fb, mb)
	}
	report := e.do("POST", agentproto.PathReports, tokenOf("web-01"),
		agentproto.Report{Certificate: "db", Result: "installed", Serial: "01"})
	if report.status != http.StatusNotFound {
		t.Errorf("report for a foreign certificate: %d %s", report.status, report.body)
	}
}

func TestIssueStoresVersionAndPollShowsIt(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	_, etagBefore := e.assignments("web-01")
	issued, leaf := e.issued("web-01", "shop")

	// The leaf verifies against the CA with the spec's names.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.caCert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "www.shop.example.com", CurrentTime: e.clock.Now()}); err != nil {
		t.Errorf("issued leaf does not verify: %v", err)
	}
	if fmt.Sprintf("%x", leaf.SerialNumber) != strings.TrimLeft(strings.ToLower(issued.Serial), "0") && !strings.EqualFold(fmt.Sprintf("%x", leaf.SerialNumber), issued.Serial) {
		t.Errorf("serial %q does not match the leaf's %x", issued.Serial, leaf.SerialNumber)
	}

	// The poll now carries it, with a renewal time, under a new ETag.
	a, etagAfter := e.assignments("web-01")
	if etagAfter == etagBefore {
		t.Error("ETag did not change after issuance")
	}
	var shop agentproto.Assignment
	for _, c := range a.Certificates {
		if c.Name == "shop" {
			shop = c
		}
	}
	if shop.Current == nil || shop.Current.Serial != issued.Serial || shop.Current.CertPEM != issued.CertPEM {
		t.Fatalf("assignment after issuance: %+v", shop)
	}
	if !shop.RenewAt.After(issued.NotBefore) || !shop.RenewAt.Before(issued.NotAfter) {
		t.Errorf("renewAt %v outside [%v, %v]", shop.RenewAt, issued.NotBefore, issued.NotAfter)
	}

	// Stored: the version with serial, fingerprint and chain.
	deps, err := e.st.CertificateDeployments(context.Background(), "shop")
	if err != nil || len(deps) != 1 {
		t.Fatalf("deployments of shop: %v, %v", deps, err)
	}
	v := deps[0].Current
	if v == nil || v.Serial != issued.Serial || v.SHA256 != issued.SHA256 || v.ChainPEM == "" || v.ChainPEM != issued.ChainPEM ||
		v.Issuer != "internal-ca" || deps[0].State != state.DeploymentIssued {
		t.Errorf("stored deployment %+v, version %+v", deps[0], v)
	}
	if got, _ := e.metric("certops_issuance_total", map[string]string{"issuer": "internal-ca", "result": "success"}); got != 1 {
		t.Errorf("issuance success count = %v, want 1", got)
	}
	assertNoPrivateKeyInDatabase(t, e.url)
}

// assertNoPrivateKeyInDatabase scans every text-like column of every table.
func assertNoPrivateKeyInDatabase(t *testing.T, url string) {
	t.Helper()
	hits := scanText(t, url, "PRIVATE KEY")
	if len(hits) > 0 {
		t.Errorf("private key material in the database: %v", hits)
	}
}

func TestCSRMismatchIsRefusedAndRecorded(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	a := e.assignment("web-01", "shop")
	ecKey := func(curve elliptic.Curve) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	csr := func(key *ecdsa.PrivateKey, cn string, names ...string) string {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: cn}, DNSNames: names}, key)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	cases := []struct {
		name, csr, want string
	}{
		{"extra name", csr(ecKey(elliptic.P256()), a.CommonName, append(slices.Clone(a.DNSNames), "evil.example.com")...), "evil.example.com"},
		{"different names", csr(ecKey(elliptic.P256()), a.CommonName, "other.example.com"), "other.example.com"},
		{"wrong key type", csr(ecKey(elliptic.P384()), a.CommonName, a.DNSNames...), "P-384"},
	}
	for i, tc := range cases {
		r := e.do("POST", issuePath("shop"), tokenOf("web-01"), agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: tc.csr})
		b := r.errorBody(t)
		if r.status != http.StatusUnprocessableEntity || b.Error.Code != "csr_mismatch" || !strings.Contains(b.Error.Message, tc.want) {
			t.Errorf("%s: got %d %+v, want 422 csr_mismatch mentioning %q", tc.name, r.status, b, tc.want)
		}
		deps, err := e.st.CertificateDeployments(context.Background(), "shop")
		if err != nil || len(deps) != 1 {
			t.Fatalf("deployments: %v %v", deps, err)
		}
		d := deps[0]
		if d.State != state.DeploymentIssueFailed || !strings.Contains(d.LastError, tc.want) || d.Failures != i+1 || d.Current != nil {
			t.Errorf("%s: deployment %+v", tc.name, d)
		}
		if got, _ := e.metric("certops_issuance_total", map[string]string{"issuer": "internal-ca", "result": "rejected"}); got != float64(i+1) {
			t.Errorf("%s: rejected count = %v, want %d", tc.name, got, i+1)
		}
		// A refusal backs off like a failure: the next attempt waits.
		if r := e.issue("web-01", "shop"); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: issue during backoff: %d %s", tc.name, r.status, r.body)
		}
		e.clock.Advance(7 * time.Hour)
	}
	// The status says why.
	if r := e.issue("web-01", "shop"); r.status != http.StatusOK {
		t.Fatalf("matching CSR after backoff: %d %s", r.status, r.body)
	}
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	a := e.assignment("web-01", "shop")
	tok := tokenOf("web-01")
	cases := []struct {
		name         string
		method, path string
		body         any
		status       int
		code         agentproto.Code
	}{
		{"not JSON", "POST", issuePath("shop"), []byte("{csr"), 400, "invalid"},
		{"trailing data", "POST", issuePath("shop"), []byte(`{"specHash":"x"} {}`), 400, "invalid"},
		{"not a CSR", "POST", issuePath("shop"), agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: "hello"}, 400, "invalid"},
		{"certificate PEM as CSR", "POST", issuePath("shop"), agentproto.IssueRequest{SpecHash: a.SpecHash,
			CSRPEM: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, 400, "invalid"},
		{"stale spec hash", "POST", issuePath("shop"), agentproto.IssueRequest{SpecHash: "0123", CSRPEM: "x"}, 409, "conflict"},
		{"too large", "POST", issuePath("shop"), []byte(`{"csrPEM":"` + strings.Repeat("A", agentproto.MaxBodyBytes) + `"}`), 413, "too_large"},
		{"report without result", "POST", agentproto.PathReports, agentproto.Report{Certificate: "shop"}, 400, "invalid"},
		{"report not JSON", "POST", agentproto.PathReports, []byte("]"), 400, "invalid"},
		{"heartbeat not JSON", "POST", agentproto.PathHeartbeat, []byte("nope"), 400, "invalid"},
		{"GET issue", "GET", issuePath("shop"), nil, 405, "method_not_allowed"},
		{"POST assignments", "POST", agentproto.PathAssignments, []byte("{}"), 405, "method_not_allowed"},
		{"unknown route", "GET", agentproto.PathPrefix + "nothing", nil, 404, "not_found"},
	}
	for _, tc := range cases {
		r := e.do(tc.method, tc.path, tok, tc.body)
		if r.status != tc.status || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: got %d (%s) %s, want %d JSON", tc.name, r.status, r.header.Get("Content-Type"), r.body, tc.status)
			continue
		}
		if b := r.errorBody(t); b.Error.Code != tc.code {
			t.Errorf("%s: code %q, want %q", tc.name, b.Error.Code, tc.code)
		}
	}
	// None of it counted against the deployment.
	if deps, _ := e.st.CertificateDeployments(context.Background(), "shop"); len(deps) != 0 {
		t.Errorf("malformed requests touched the deployment: %+v", deps)
	}
}

func TestSpecChangeReissues(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	old := e.assignment("web-01", "shop")
	if r := e.issue("web-01", "shop"); r.status != http.StatusOK {
		t.Fatalf("issue: %d %s", r.status, r.body)
	}
	changed := certObj("shop", []string{"web-01"}, nil)
	changed.Certificate().DNSNames = append(changed.Certificate().DNSNames, "api.shop.example.com")
	e.apply(changed)
	e.refresh()

	now := e.assignment("web-01", "shop")
	if now.SpecHash == old.SpecHash || now.Current != nil || !now.RenewAt.IsZero() {
		t.Fatalf("after a spec change: hash %s→%s, current %+v", old.SpecHash, now.SpecHash, now.Current)
	}
	_, csr := csrFor(t, old)
	if r := e.do("POST", issuePath("shop"), tokenOf("web-01"), agentproto.IssueRequest{SpecHash: old.SpecHash, CSRPEM: csr}); r.status != http.StatusConflict {
		t.Errorf("issue for the old spec: %d %s, want 409", r.status, r.body)
	}
	if r := e.issue("web-01", "shop"); r.status != http.StatusOK {
		t.Fatalf("reissue: %d %s", r.status, r.body)
	}
	if a := e.assignment("web-01", "shop"); a.Current == nil || a.SpecHash != now.SpecHash {
		t.Errorf("after reissue: %+v", a)
	}
	// Adding an agent to the deploy does not change the spec hash.
	more := certObj("shop", []string{"web-01", "web-02"}, nil)
	more.Certificate().DNSNames = changed.Certificate().DNSNames
	e.apply(more)
	e.refresh()
	if a := e.assignment("web-01", "shop"); a.SpecHash != now.SpecHash || a.Current == nil {
		t.Errorf("adding an agent changed web-01's assignment: %+v", a)
	}
}

func TestPollNotModifiedWithoutDatabase(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	if r := e.issue("web-01", "shop"); r.status != http.StatusOK {
		t.Fatalf("issue: %d %s", r.status, r.body)
	}
	_, etag := e.assignments("web-01")
	// No Postgres from here on: a cached poll must not need it.
	e.st.Close()
	for range 3 {
		r := e.do("GET", agentproto.PathAssignments, tokenOf("web-01"), nil, "If-None-Match", etag)
		if r.status != http.StatusNotModified || r.header.Get("ETag") != etag || len(r.body) != 0 {
			t.Fatalf("conditional poll with the store closed: %d %q %s", r.status, r.header.Get("ETag"), r.body)
		}
	}
	// A stale ETag gets the full document, still from memory.
	r := e.do("GET", agentproto.PathAssignments, tokenOf("web-01"), nil, "If-None-Match", `"stale"`)
	if r.status != http.StatusOK || r.header.Get("ETag") != etag {
		t.Fatalf("poll with a stale ETag: %d %s", r.status, r.body)
	}
}

func TestRunPicksUpNewRevision(t *testing.T) {
	e := newEnv(t, envOptions{cfg: agentapi.Config{RefreshInterval: 20 * time.Millisecond}}, fleetObjs()...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { e.api.Run(ctx); done <- nil }()
	defer func() { cancel(); <-done }()

	_, etag := e.assignments("db-01")
	e.apply(certObj("db-replica", []string{"db-01"}, nil))
	// The default refresh interval is 1s: the change must show well within it.
	testkit.WaitFor(t, time.Second, "the new revision to reach the cache", func() bool {
		r := e.do("GET", agentproto.PathAssignments, tokenOf("db-01"), nil, "If-None-Match", etag)
		if r.status != http.StatusOK {
			return false
		}
		var a agentproto.Assignments
		r.decode(t, &a)
		if len(a.Certificates) != 2 || a.Certificates[1].Name != "db-replica" {
			t.Fatalf("assignments after the revision: %+v", a)
		}
		return true
	})
	// Another replica's write (here: directly through the store) shows up too.
	_, etag = e.assignments("db-01")
	if _, err := e.st.RecordIssueFailure(context.Background(), store.IssueFailure{Certificate: "db", Agent: "db-01",
		SpecHash: e.assignment("db-01", "db").SpecHash, Error: "CA down", At: e.clock.Now(), Base: time.Minute, Cap: time.Hour}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, time.Second, "a deployment change by another replica to invalidate the cache", func() bool {
		return e.do("GET", agentproto.PathAssignments, tokenOf("db-01"), nil, "If-None-Match", etag).status != http.StatusNotModified
	})
}

func TestBackoffAfterSignerFailure(t *testing.T) {
	broken := issuerObj("internal-ca")
	broken.Issuer().LocalCA = &spec.LocalCAIssuer{CertFile: "/nonexistent/ca.crt", KeyFile: "/nonexistent/ca.key"}
	objs := append(fleetObjs()[1:], broken)
	e := newEnv(t, envOptions{cfg: agentapi.Config{BackoffBase: time.Minute, BackoffCap: 3 * time.Minute}}, objs...)

	wantRetry := []string{"60", "120", "180", "180"} // base·2^(n−1), capped
	for i, want := range wantRetry {
		r := e.issue("web-01", "shop")
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != want {
			t.Fatalf("attempt %d: got %d Retry-After %q %s, want 503 Retry-After %s", i+1, r.status, r.header.Get("Retry-After"), r.body, want)
		}
		if strings.Contains(string(r.body), "nonexistent") {
			t.Errorf("the issuer's error leaked to the agent: %s", r.body)
		}
		r = e.issue("web-01", "shop")
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != want {
			t.Fatalf("attempt %d during backoff: %d Retry-After %q, want 429 %s", i+1, r.status, r.header.Get("Retry-After"), want)
		}
		a := e.assignment("web-01", "shop")
		if !a.NotBefore.After(e.clock.Now()) {
			t.Errorf("attempt %d: assignment notBefore %v not in the future", i+1, a.NotBefore)
		}
		e.clock.Advance(4 * time.Minute)
	}
	if got, _ := e.metric("certops_issuance_total", map[string]string{"issuer": "internal-ca", "result": "failure"}); got != 4 {
		t.Errorf("failure count = %v, want 4", got)
	}
	deps, _ := e.st.CertificateDeployments(context.Background(), "shop")
	if len(deps) != 1 || deps[0].Failures != 4 || !strings.Contains(deps[0].LastError, "internal-ca") {
		t.Errorf("deployment after failures: %+v", deps)
	}
	// Fixing the issuer (a new revision) lets the next attempt through and resets the count.
	e.apply(issuerObj("internal-ca"))
	e.refresh()
	if r := e.issue("web-01", "shop"); r.status != http.StatusOK {
		t.Fatalf("after fixing the issuer: %d %s", r.status, r.body)
	}
	deps, _ = e.st.CertificateDeployments(context.Background(), "shop")
	if deps[0].Failures != 0 || !deps[0].NotBefore.IsZero() || deps[0].LastError != "" {
		t.Errorf("deployment after success: %+v", deps[0])
	}
}

func TestReportsAreRecorded(t *testing.T) {
	e := newEnv(t, envOptions{perCertificate: true}, fleetObjs()...)
	r := e.issue("web-01", "shop")
	var issued agentproto.Issued
	r.decode(t, &issued)
	a := e.assignment("web-01", "shop")
	report := func(rep agentproto.Report) {
		t.Helper()
		rep.Certificate, rep.SpecHash = "shop", a.SpecHash
		if r := e.do("POST", agentproto.PathReports, tokenOf("web-01"), rep); r.status != http.StatusNoContent {
			t.Fatalf("report %+v: %d %s", rep, r.status, r.body)
		}
	}
	deployment := func() state.Deployment {
		t.Helper()
		deps, err := e.st.CertificateDeployments(context.Background(), "shop")
		if err != nil || len(deps) != 1 {
			t.Fatalf("deployments: %v %v", deps, err)
		}
		return deps[0]
	}
	at := e.clock.Now().Add(-time.Second)
	report(agentproto.Report{Serial: issued.Serial, Result: agentproto.ResultInstalled, At: at})
	d := deployment()
	if d.State != state.DeploymentInstalled || d.InstalledSerial != issued.Serial || !d.InstalledNotAfter.Equal(issued.NotAfter) ||
		!d.LastAttempt.Equal(at) || d.LastError != "" {
		t.Errorf("after installed: %+v", d)
	}
	if v, _ := e.metric("certops_certificate_ready", map[string]string{"certificate": "shop"}); v != 1 {
		t.Errorf("shop ready = %v after install", v)
	}

	// A renewal whose reload fails is rolled back: the old serial stays installed.
	e.clock.Advance(time.Minute)
	renewed := e.issue("web-01", "shop")
	if renewed.status != http.StatusOK {
		t.Fatalf("renew: %d %s", renewed.status, renewed.body)
	}
	var next agentproto.Issued
	renewed.decode(t, &next)
	report(agentproto.Report{Serial: next.Serial, Result: agentproto.ResultRolledBack, Stage: agentproto.StageReload, Error: "nginx: exit status 1"})
	d = deployment()
	if d.State != state.DeploymentRolledBack || d.InstalledSerial != issued.Serial || d.LastError != "reload: nginx: exit status 1" {
		t.Errorf("after rollback: %+v", d)
	}
	report(agentproto.Report{Result: agentproto.ResultFailed, Stage: agentproto.StageVerify, Error: "served serial differs"})
	// A host policy refusal: failed, no serial, stage policy; it is the
	// deployment's lastError and counted by stage.
	refusal := "HostPolicyRefused: reload [\"bash\" \"-c\" \"id\"] is not in allowedReloads [[\"systemctl\" \"reload\" \"nginx\"]]"
	report(agentproto.Report{Result: agentproto.ResultFailed, Stage: agentproto.StagePolicy, Error: refusal})
	if d = deployment(); d.State != state.DeploymentFailed || d.InstalledSerial != issued.Serial || d.LastError != "policy: "+refusal {
		t.Errorf("after a policy refusal: %+v", d)
	}
	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"certops_deployments_total", map[string]string{"result": "installed"}, 1},
		{"certops_deployments_total", map[string]string{"result": "rolled-back"}, 1},
		{"certops_deployments_total", map[string]string{"result": "failed"}, 2},
		{"certops_deployment_failures_total", map[string]string{"stage": "reload"}, 1},
		{"certops_deployment_failures_total", map[string]string{"stage": "policy"}, 1},
		{"certops_deployment_failures_total", map[string]string{"stage": "verify"}, 1},
		{"certops_deployment_failures_total", map[string]string{"stage": "install"}, 0},
		{"certops_rollbacks_total", nil, 1},
	} {
		if got, _ := e.metric(m.name, m.labels); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
}

func TestHeartbeatIsFlushedInBatches(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	ctx := context.Background()
	if r := e.do("POST", agentproto.PathHeartbeat, tokenOf("web-01"), agentproto.Heartbeat{Version: "1.2.3", Hostname: "web-01.internal"}); r.status != http.StatusNoContent {
		t.Fatalf("heartbeat: %d %s", r.status, r.body)
	}
	e.assignments("db-01")
	if seen, _ := e.st.AgentsSeen(ctx, nil); len(seen) != 0 {
		t.Fatalf("written before the flush: %v", seen)
	}
	if err := e.api.presence.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	seen, err := e.st.AgentsSeen(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, d := seen["web-01"], seen["db-01"]
	if w.Version != "1.2.3" || w.Hostname != "web-01.internal" || !w.LastSeen.Equal(e.clock.Now()) || !d.LastSeen.Equal(e.clock.Now()) {
		t.Errorf("after flush: %+v", seen)
	}
	if on, _ := e.metric("certops_agents", map[string]string{"state": "online"}); on != 2 {
		t.Errorf("online agents = %v, want 2", on)
	}
	e.clock.Advance(6 * time.Minute)
	if off, _ := e.metric("certops_agents", map[string]string{"state": "offline"}); off != 3 {
		t.Errorf("offline agents after 6m = %v, want 3", off)
	}
}

func TestMetricsPerCertificateSwitch(t *testing.T) {
	for _, perCertificate := range []bool{true, false} {
		t.Run(fmt.Sprint("perCertificate=", perCertificate), func(t *testing.T) {
			e := newEnv(t, envOptions{perCertificate: perCertificate}, fleetObjs()...)
			r := e.issue("db-01", "db")
			var issued agentproto.Issued
			r.decode(t, &issued)
			a := e.assignment("db-01", "db")
			if r := e.do("POST", agentproto.PathReports, tokenOf("db-01"), agentproto.Report{Certificate: "db", SpecHash: a.SpecHash,
				Serial: issued.Serial, Result: agentproto.ResultInstalled}); r.status != http.StatusNoContent {
				t.Fatalf("report: %d %s", r.status, r.body)
			}
			expiry, hasExpiry := e.metric("certops_certificate_expiration_timestamp_seconds", map[string]string{"certificate": "db"})
			renewal, hasRenewal := e.metric("certops_certificate_renewal_timestamp_seconds", map[string]string{"certificate": "db"})
			dbReady, hasReady := e.metric("certops_certificate_ready", map[string]string{"certificate": "db"})
			shopReady, _ := e.metric("certops_certificate_ready", map[string]string{"certificate": "shop"})
			if perCertificate {
				if expiry != float64(issued.NotAfter.Unix()) || renewal != float64(a.RenewAt.UnixNano())/1e9 || dbReady != 1 || shopReady != 0 || !hasReady {
					t.Errorf("per-certificate series: expiry %v (want %v) renewal %v (want %v) db ready %v shop ready %v",
						expiry, issued.NotAfter.Unix(), renewal, a.RenewAt.Unix(), dbReady, shopReady)
				}
			} else if hasExpiry || hasRenewal || hasReady {
				t.Error("per-certificate series exported with the switch off")
			}
			ready, _ := e.metric("certops_certificates", map[string]string{"state": "ready"})
			notReady, _ := e.metric("certops_certificates", map[string]string{"state": "not_ready"})
			earliest, _ := e.metric("certops_certificate_expiration_earliest_timestamp_seconds", nil)
			if ready != 1 || notReady != 2 || earliest != float64(issued.NotAfter.Unix()) {
				t.Errorf("aggregates: ready %v not_ready %v earliest %v", ready, notReady, earliest)
			}
			// A deleted certificate leaves no series behind.
			e.remove(spec.Key{Kind: spec.KindCertificate, Name: "db"})
			e.refresh()
			if _, ok := e.metric("certops_certificate_ready", map[string]string{"certificate": "db"}); ok {
				t.Error("series of a deleted certificate still exported")
			}
		})
	}
}

// spec.reissue changes the spec hash: every deploying agent issues anew.
// spec.suspend does not: the assignments say Suspended and the server
// refuses issue requests with the code suspended, for a suspended
// certificate on every agent and for every certificate of a suspended
// agent, until the field is removed.
func TestReissueAndSuspendFromGit(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	before := e.assignment("web-01", "pool")
	if r := e.issue("web-01", "pool"); r.status != http.StatusOK {
		t.Fatalf("issue: %d %s", r.status, r.body)
	}
	reissued := certObj("pool", nil, map[string]string{"role": "web"})
	reissued.Certificate().Reissue = "2026-12-05 key compromise"
	e.apply(reissued)
	e.refresh()
	for _, agent := range []string{"web-01", "web-02"} {
		if a := e.assignment(agent, "pool"); a.SpecHash == before.SpecHash || a.Current != nil || a.Reissue != "2026-12-05 key compromise" {
			t.Errorf("%s after reissue: hash %s (was %s), current %v, reissue %q; want a new hash, no current", agent, a.SpecHash, before.SpecHash, a.Current, a.Reissue)
		}
	}

	suspendedCert := certObj("pool", nil, map[string]string{"role": "web"})
	suspendedCert.Certificate().Reissue = reissued.Certificate().Reissue
	suspendedCert.Certificate().Suspend = true
	suspendedAgent := agentObj("db-01", map[string]string{"role": "db"})
	suspendedAgent.Agent().Suspend = true
	e.apply(suspendedCert, suspendedAgent)
	e.refresh()
	hash := e.assignment("web-01", "pool").SpecHash
	for _, tc := range []struct{ agent, cert string }{{"web-01", "pool"}, {"web-02", "pool"}, {"db-01", "db"}} {
		a := e.assignment(tc.agent, tc.cert)
		if !a.Suspended {
			t.Errorf("%s/%s: assignment not marked suspended", tc.agent, tc.cert)
		}
		r := e.issue(tc.agent, tc.cert)
		var body agentproto.ErrorBody
		_ = json.Unmarshal(r.body, &body)
		if r.status != http.StatusConflict || body.Error.Code != agentproto.CodeSuspended || !strings.Contains(body.Error.Message, "suspended") {
			t.Errorf("%s/%s: issue while suspended = %d %s; want 409 suspended", tc.agent, tc.cert, r.status, r.body)
		}
	}
	if hash != e.assignment("web-02", "pool").SpecHash || hash == before.SpecHash {
		t.Error("suspend changed the spec hash")
	}
	if a := e.assignment("web-01", "shop"); a.Suspended {
		t.Error("a certificate neither suspended nor on a suspended agent is marked suspended")
	}

	e.apply(reissued, agentObj("db-01", map[string]string{"role": "db"}))
	e.refresh()
	for _, tc := range []struct{ agent, cert string }{{"web-02", "pool"}, {"db-01", "db"}} {
		if a := e.assignment(tc.agent, tc.cert); a.Suspended {
			t.Errorf("%s/%s still suspended after resume", tc.agent, tc.cert)
		}
		if r := e.issue(tc.agent, tc.cert); r.status != http.StatusOK {
			t.Errorf("%s/%s: issue after resume = %d %s", tc.agent, tc.cert, r.status, r.body)
		}
	}
}
