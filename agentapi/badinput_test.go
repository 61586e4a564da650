package agentapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/certops/certops/agentproto"
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
