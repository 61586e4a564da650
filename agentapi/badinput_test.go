package agentapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/agentapi"
	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/textlimit"
)

// Every string an agent sends, on every route, is valid UTF-8 without
// control characters and bounded; anything else is a 400 that changes
// nothing, and one agent's bad bytes never stop the others' liveness.
func TestBadStringsAreRefused(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	a := e.assignment("web-01", "shop")
	_, csr := csrFor(t, a)
	tok := tokenOf("web-01")
	long := strings.Repeat("x", agentproto.MaxFieldBytes+1)
	report := func(mod func(*agentproto.Report)) agentproto.Report {
		r := agentproto.Report{Certificate: "shop", SpecHash: a.SpecHash, Result: agentproto.ResultFailed, Stage: "issue", Error: "boom"}
		mod(&r)
		return r
	}
	cases := []struct {
		name, path string
		body       any
	}{
		{"heartbeat hostname NUL", agentproto.PathHeartbeat, agentproto.Heartbeat{Version: "1", Hostname: "web\x00-01"}},
		{"heartbeat version control", agentproto.PathHeartbeat, agentproto.Heartbeat{Version: "1\x1b[31m", Hostname: "h"}},
		{"heartbeat hostname newline", agentproto.PathHeartbeat, agentproto.Heartbeat{Hostname: "a\nb"}},
		{"heartbeat hostname too long", agentproto.PathHeartbeat, agentproto.Heartbeat{Hostname: long}},
		{"heartbeat version raw NUL", agentproto.PathHeartbeat, []byte(`{"version":"\u0000"}`)},
		{"issue spec hash NUL", issuePath("shop"), agentproto.IssueRequest{SpecHash: a.SpecHash + "\x00", CSRPEM: csr}},
		{"issue CSR NUL", issuePath("shop"), agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: csr + "\x00"}},
		{"issue name NUL", agentproto.PathPrefix + "certificates/sh%00op/issue", agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: csr}},
		{"issue name invalid UTF-8", agentproto.PathPrefix + "certificates/sh%FFop/issue", agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: csr}},
		{"issue name too long", agentproto.PathPrefix + "certificates/" + strings.Repeat("a", agentproto.MaxPathBytes) + "/issue", agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: csr}},
		{"report certificate NUL", agentproto.PathReports, report(func(r *agentproto.Report) { r.Certificate = "shop\x00" })},
		{"report error NUL", agentproto.PathReports, report(func(r *agentproto.Report) { r.Error = "reload: \x00 output" })},
		{"report error too long", agentproto.PathReports, report(func(r *agentproto.Report) { r.Error = strings.Repeat("e", agentproto.MaxTextBytes+1) })},
		{"report serial NUL", agentproto.PathReports, report(func(r *agentproto.Report) { r.Serial = "01\x00" })},
		{"report stage control", agentproto.PathReports, report(func(r *agentproto.Report) { r.Stage = "reload\a" })},
		{"report spec hash too long", agentproto.PathReports, report(func(r *agentproto.Report) { r.SpecHash = long })},
		{"report result NUL", agentproto.PathReports, report(func(r *agentproto.Report) { r.Result = "failed\x00" })},
		{"challenge token NUL", agentproto.PathPrefix + "challenges/abc%00def/ready", nil},
	}
	for _, tc := range cases {
		r := e.do("POST", tc.path, tok, tc.body)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: got %d %s, want 400", tc.name, r.status, r.body)
			continue
		}
		if b := r.errorBody(t); b.Error.Code != agentproto.CodeInvalid {
			t.Errorf("%s: code %q, want invalid", tc.name, b.Error.Code)
		}
	}
	ctx := context.Background()
	if deps, _ := e.st.CertificateDeployments(ctx, "shop"); len(deps) != 0 {
		t.Errorf("bad requests touched the deployment: %+v", deps)
	}
	// Another agent's clean heartbeat is persisted by the next flush.
	if r := e.do("POST", agentproto.PathHeartbeat, tokenOf("db-01"), agentproto.Heartbeat{Version: "1.0", Hostname: "db-01.lan"}); r.status != http.StatusNoContent {
		t.Fatalf("clean heartbeat: %d %s", r.status, r.body)
	}
	if err := e.api.presence.Flush(ctx); err != nil {
		t.Fatalf("flush after bad heartbeats: %v", err)
	}
	seen, err := e.st.AgentsSeen(ctx, nil)
	if err != nil || seen["db-01"].Hostname != "db-01.lan" || seen["web-01"].LastSeen.IsZero() {
		t.Errorf("liveness after bad heartbeats: %+v %v", seen, err)
	}
	if strings.ContainsRune(seen["web-01"].Hostname, 0) {
		t.Errorf("a NUL hostname was stored: %q", seen["web-01"].Hostname)
	}
}

// A report is only taken for a serial issued to that agent for that
// certificate and with a sane time; anything else is a 400 that leaves
// the deployment as it was.
func TestUncheckableReportsAreRefused(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	var shop, pool agentproto.Issued
	e.issue("web-01", "shop").decode(t, &shop)
	e.issue("web-02", "pool").decode(t, &pool)
	a := e.assignment("web-01", "shop")
	now := e.clock.Now()
	ctx := context.Background()
	before, _ := e.st.CertificateDeployments(ctx, "shop")
	for _, tc := range []struct {
		name string
		rep  agentproto.Report
	}{
		{"unknown serial", agentproto.Report{Serial: "deadbeef", Result: agentproto.ResultInstalled, At: now}},
		{"another agent's serial", agentproto.Report{Serial: pool.Serial, Result: agentproto.ResultInstalled, At: now}},
		{"1970", agentproto.Report{Serial: shop.Serial, Result: agentproto.ResultInstalled, At: time.Unix(0, 0)}},
		{"1999 failure", agentproto.Report{Result: agentproto.ResultFailed, Error: "x", At: time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC)}},
		{"before its issuance", agentproto.Report{Serial: shop.Serial, Result: agentproto.ResultInstalled, At: now.Add(-time.Hour)}},
		{"far future", agentproto.Report{Serial: shop.Serial, Result: agentproto.ResultInstalled, At: now.Add(time.Hour)}},
		{"unknown serial rolled back", agentproto.Report{Serial: "ffff", Result: agentproto.ResultRolledBack, At: now}},
	} {
		tc.rep.Certificate, tc.rep.SpecHash = "shop", a.SpecHash
		r := e.do("POST", agentproto.PathReports, tokenOf("web-01"), tc.rep)
		if r.status != http.StatusBadRequest || r.errorBody(t).Error.Code != agentproto.CodeInvalid {
			t.Errorf("%s: got %d %s, want 400 invalid", tc.name, r.status, r.body)
		}
	}
	after, _ := e.st.CertificateDeployments(ctx, "shop")
	if len(after) != 1 || len(before) != 1 || after[0].ChangeSeq != before[0].ChangeSeq || after[0].InstalledSerial != "" {
		t.Errorf("refused reports changed the deployment: %+v → %+v", before, after)
	}
	// A small clock skew is fine: ahead is taken as now.
	r := e.do("POST", agentproto.PathReports, tokenOf("web-01"), agentproto.Report{Certificate: "shop", SpecHash: a.SpecHash,
		Serial: shop.Serial, Result: agentproto.ResultInstalled, At: now.Add(time.Minute)})
	if r.status != http.StatusNoContent {
		t.Fatalf("report with a minute of skew: %d %s", r.status, r.body)
	}
	if d, _ := e.st.CertificateDeployments(ctx, "shop"); d[0].InstalledSerial != shop.Serial || !d[0].LastAttempt.Equal(now) {
		t.Errorf("after a good report: %+v", d[0])
	}
}

// A CSR with thousands of names that do not match makes a bounded error:
// in the answer, the deployment's last error and the announcement.
func TestLongRefusalIsBounded(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	a := e.assignment("web-01", "shop")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 4000)
	for i := range names {
		names[i] = fmt.Sprintf("host-%04d.evil.example.com", i)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: a.CommonName}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	r := e.do("POST", issuePath("shop"), tokenOf("web-01"), agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: csr})
	if r.status != http.StatusUnprocessableEntity || len(r.body) > 8<<10 {
		t.Errorf("answer: %d, %d bytes", r.status, len(r.body))
	}
	deps, err := e.st.CertificateDeployments(context.Background(), "shop")
	if err != nil || len(deps) != 1 {
		t.Fatalf("deployments: %v %v", deps, err)
	}
	if d := deps[0]; len(d.LastError) > textlimit.MaxMessage || !strings.Contains(d.LastError, "bytes more)") {
		t.Errorf("last error is %d bytes: …%s", len(d.LastError), d.LastError[max(0, len(d.LastError)-40):])
	}
}

// The same request again and again gets one certificate per
// ReissueInterval: the rest are 429 backoff with Retry-After, and change
// nothing; renewal once due, and a new spec, are not held back.
func TestIssueIsRateLimitedPerSpec(t *testing.T) {
	e := newEnv(t, envOptions{cfg: agentapi.Config{ReissueInterval: 10 * time.Minute}}, fleetObjs()...)
	a := e.assignment("web-01", "shop")
	_, csr := csrFor(t, a)
	issue := func() response {
		return e.do("POST", issuePath("shop"), tokenOf("web-01"), agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: csr})
	}
	if r := issue(); r.status != http.StatusOK {
		t.Fatalf("first issue: %d %s", r.status, r.body)
	}
	for range 20 {
		r := issue()
		if r.status != http.StatusTooManyRequests || r.errorBody(t).Error.Code != agentproto.CodeBackoff || r.header.Get("Retry-After") != "600" {
			t.Fatalf("repeat: %d %s (Retry-After %q), want 429 backoff, Retry-After 600", r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	var versions int
	conn, err := pgx.Connect(context.Background(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM certificate_versions").Scan(&versions); err != nil || versions != 1 {
		t.Errorf("certificate versions = %d (%v), want 1", versions, err)
	}
	// Other agents and certificates are not held back.
	if r := e.issue("web-01", "pool"); r.status != http.StatusOK {
		t.Errorf("another certificate: %d %s", r.status, r.body)
	}
	e.clock.Advance(10 * time.Minute)
	if r := issue(); r.status != http.StatusOK {
		t.Fatalf("after the interval: %d %s", r.status, r.body)
	}
	// Renewal due: at once, whatever the interval.
	long := newEnv(t, envOptions{cfg: agentapi.Config{ReissueInterval: 365 * 24 * time.Hour}}, fleetObjs()...)
	if r := long.issue("web-01", "shop"); r.status != http.StatusOK {
		t.Fatalf("first issue: %d %s", r.status, r.body)
	}
	if r := long.issue("web-01", "shop"); r.status != http.StatusTooManyRequests {
		t.Fatalf("repeat: %d %s, want 429", r.status, r.body)
	}
	long.clock.Advance(long.assignment("web-01", "shop").RenewAt.Sub(long.clock.Now()))
	if r := long.issue("web-01", "shop"); r.status != http.StatusOK {
		t.Fatalf("renewal due: %d %s", r.status, r.body)
	}
}

// A CA with less life left than renewBefore signs leaves shorter than
// renewBefore (a leaf never outlives its CA). Renewal then falls at 2/3 of
// the leaf's actual life, not at once, so the reissue limit still holds:
// every poll does not issue another certificate.
func TestIssueUnderAShortLivedCAIsRateLimited(t *testing.T) {
	shop := certObj("shop", []string{"web-01"}, nil)
	shop.Certificate().RenewBefore = "720h"
	e := newEnv(t, envOptions{cfg: agentapi.Config{ReissueInterval: 10 * time.Minute}, caValidity: 24 * time.Hour},
		issuerObj("internal-ca"), agentObj("web-01", nil), shop)
	if r := e.issue("web-01", "shop"); r.status != http.StatusOK {
		t.Fatalf("first issue: %d %s", r.status, r.body)
	}
	a := e.assignment("web-01", "shop")
	if a.Current == nil || !a.RenewAt.After(e.clock.Now()) {
		t.Fatalf("want a current certificate not yet due for renewal; assignment %+v", a)
	}
	for range 5 {
		if r := e.issue("web-01", "shop"); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "600" {
			t.Fatalf("repeat: %d %s (Retry-After %q), want 429 with Retry-After 600", r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	e.clock.Advance(10 * time.Minute)
	if r := e.issue("web-01", "shop"); r.status != http.StatusOK {
		t.Fatalf("after the interval: %d %s", r.status, r.body)
	}
}
