package dashboard_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/dashboard"
	"github.com/certops/certops/httpapi"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit/storekit"
)

// bulkCertificates is how many plain certificates the fleet has besides
// the five with a story, so that the list has a second page.
const bulkCertificates = 150

// serve serves the read API and the dashboard (requiring token when not
// empty) over st, on loopback.
func serve(t *testing.T, st *store.Store, token string, alerts func() []alert.Alert) *httptest.Server {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	cfg := httpapi.Config{BearerToken: token, Gatherer: prometheus.NewRegistry(), Alerts: alerts}
	cfg.UI = dashboard.New(httpapi.NewService(st, cfg), dashboard.Config{Token: token}, logger)
	srv := httptest.NewServer(httpapi.NewHandler(st, cfg, logger))
	t.Cleanup(srv.Close)
	return srv
}

func agentObj(name, role string) *spec.Object {
	return &spec.Object{Kind: spec.KindAgent, Name: name, Labels: map[string]string{"role": role},
		Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("ab", 32)}, Source: spec.Position{File: "agents.yaml", Line: 1}}
}

func certObj(name, team string, line int, deploy *spec.Deployment) *spec.Object {
	cn := name + ".example.com"
	return &spec.Object{Kind: spec.KindCertificate, Name: name, Labels: map[string]string{"team": team},
		Spec: &spec.CertificateSpec{IssuerRef: "internal-ca", CommonName: cn, DNSNames: []string{cn, "www." + cn},
			PrivateKey: spec.PrivateKey{Algorithm: "ECDSA", Size: 256}, Duration: "2160h", Deploy: deploy},
		Source: spec.Position{File: "certs/" + team + ".yaml", Line: line}}
}

func toAgents(names ...string) *spec.Deployment {
	return &spec.Deployment{Agents: names, Files: spec.DeployFiles{Cert: "/etc/ssl/c.pem", Key: "/etc/ssl/k.pem"}}
}

// fleet fills st with a small fleet with something to show on every page:
//
//   - shop-frontend on web-01 and web-02 (role=web): installed on both, and
//     a newer certificate issued to web-02 that it has not installed yet;
//   - blog on web-01: installed, ends in 5 days;
//   - api-gateway on web-02: rolled back (the reload failed);
//   - db-tls on db-01: the issue request was refused;
//   - legacy-edge on edge-01 (never seen): pending;
//   - bulkCertificates more without a deploy block (team=bulk);
//   - agents web-01, web-02 online, db-01 silent for 3 hours, edge-01 never seen;
//   - revisions: #1 applied, #2 applied (the bulk and legacy-edge), #3 refused
//     as invalid with two FILE:LINE errors, which the status reports.
func fleet(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	objs := []*spec.Object{
		{Kind: spec.KindIssuer, Name: "internal-ca", Spec: &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{CertFile: "/ca.crt", KeyFile: "/ca.key"}},
			Source: spec.Position{File: "issuers.yaml", Line: 1}},
		agentObj("web-01", "web"), agentObj("web-02", "web"), agentObj("db-01", "db"), agentObj("edge-01", "edge"),
		certObj("shop-frontend", "shop", 1, &spec.Deployment{AgentSelector: &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}},
			Files: spec.DeployFiles{Cert: "/etc/ssl/shop.pem", Key: "/etc/ssl/shop.key"}, Reload: []string{"nginx", "-s", "reload"}}),
		certObj("blog", "content", 1, toAgents("web-01")),
		certObj("api-gateway", "shop", 20, toAgents("web-02")),
		certObj("db-tls", "data", 1, toAgents("db-01")),
	}
	rev1 := state.Revision{Ref: "main", Commit: strings.Repeat("a1", 20), Author: "Alice <alice@example.com>",
		Message: "Add the shop, the blog and the database", Time: now.Add(-48 * time.Hour)}
	storekit.Apply(t, st, rev1, applied(rev1, now.Add(-48*time.Hour)), storekit.Desired(objs...))

	objs = append(objs, certObj("legacy-edge", "edge", 1, toAgents("edge-01")))
	for i := range bulkCertificates {
		objs = append(objs, certObj(fmt.Sprintf("svc-%03d", i), "bulk", 1+10*i, nil))
	}
	rev2 := state.Revision{Ref: "main", Commit: strings.Repeat("b2", 20), Author: "Bob <bob@example.com>",
		Message: "Add the edge and 150 services", Time: now.Add(-2 * time.Hour)}
	storekit.Apply(t, st, rev2, applied(rev2, now.Add(-2*time.Hour)), storekit.Desired(objs...))

	hash := map[string]string{}
	for _, o := range objs {
		if c, ok := o.Spec.(*spec.CertificateSpec); ok {
			hash[o.Name] = assign.SpecHash(c)
		}
	}
	issue := func(cert, agent, serial string, notAfter time.Time) {
		t.Helper()
		v := state.CertificateVersion{Certificate: cert, Agent: agent, SpecHash: hash[cert], Serial: serial, SHA256: strings.Repeat("5e", 32),
			NotBefore: now.Add(-time.Hour), NotAfter: notAfter, CertPEM: "leaf", ChainPEM: "chain", Issuer: "internal-ca", IssuedAt: now.Add(-time.Hour)}
		in := store.Issuance{Version: v, RenewAt: notAfter.Add(-30 * 24 * time.Hour)}
		if serial == "5a03" { // renewed in the window the CA suggested
			in.Version.RenewalWindow = &state.RenewalWindow{Start: notAfter.Add(-31 * 24 * time.Hour), End: notAfter.Add(-29 * 24 * time.Hour)}
			in.ACME = &store.ACMEIssuance{NameSet: "shop.example.com", ARIRenewal: true}
		}
		if _, err := st.RecordIssuance(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	report := func(cert, agent, serial string, result state.DeploymentState, msg string) {
		t.Helper()
		if _, err := st.RecordReport(ctx, store.DeploymentReport{Certificate: cert, Agent: agent, SpecHash: hash[cert], Serial: serial,
			Result: result, Stage: "reload", Error: msg, At: now}); err != nil {
			t.Fatal(err)
		}
	}
	issue("shop-frontend", "web-01", "5a01", now.Add(60*24*time.Hour))
	report("shop-frontend", "web-01", "5a01", state.DeploymentInstalled, "")
	issue("shop-frontend", "web-02", "5a02", now.Add(20*24*time.Hour))
	report("shop-frontend", "web-02", "5a02", state.DeploymentInstalled, "")
	issue("shop-frontend", "web-02", "5a03", now.Add(89*24*time.Hour))
	issue("blog", "web-01", "b10c", now.Add(5*24*time.Hour))
	report("blog", "web-01", "b10c", state.DeploymentInstalled, "")
	issue("api-gateway", "web-02", "a9a7", now.Add(80*24*time.Hour))
	report("api-gateway", "web-02", "a9a7", state.DeploymentRolledBack, "reload: nginx -s reload: exit status 1")
	if _, err := st.RecordIssueFailure(ctx, store.IssueFailure{Certificate: "db-tls", Agent: "db-01", SpecHash: hash["db-tls"],
		Error: "CSR does not match the certificate: DNS names differ", At: now.Add(-10 * time.Minute),
		Base: time.Minute, Cap: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordAgentsSeen(ctx, []store.AgentSeen{{Name: "web-01", LastSeen: now, Version: "1.4.0", Hostname: "web-01.prod"},
		{Name: "web-02", LastSeen: now, Version: "1.4.0"}, {Name: "db-01", LastSeen: now.Add(-3 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}

	// Revision 3 is invalid: refused with its errors; revision 2 keeps serving.
	rev3 := state.Revision{Ref: "main", Commit: strings.Repeat("c3", 20), Author: "Carol <carol@example.com>",
		Message: "Rename the database <certificate>", Time: now.Add(-time.Hour)}
	errs := spec.ErrorList{{File: "certs/data.yaml", Line: 12, Message: `spec.dnsNames[1]: "db..example.com" is not a valid DNS name`},
		{File: "agents.yaml", Line: 3, Message: "metadata.name: must be a DNS label"}}
	status := applied(rev2, now.Add(-2*time.Hour))
	at := now.Add(-time.Hour)
	status.LastAttemptedRevision, status.LastAttemptedAt, status.Errors = rev3.String(), &at, errs
	status.Conditions = []state.Condition{
		{Type: state.ConditionReady, Status: "True", Reason: state.ReasonSucceeded, Message: "applied " + rev2.String()},
		{Type: state.ConditionReconciling, Status: "False", Reason: state.ReasonValidationFailed},
		{Type: state.ConditionStalled, Status: "True", Reason: state.ReasonValidationFailed, Message: "revision " + rev3.String() + " has 2 errors"},
	}
	lease, ok, err := st.TryLeader(ctx)
	if err != nil || !ok {
		t.Fatalf("TryLeader = %v, %v", ok, err)
	}
	defer lease.Release()
	if _, err := st.RecordAttempt(ctx, lease.Fence(), rev3, state.OutcomeInvalid, errs, status); err != nil {
		t.Fatal(err)
	}
}

func applied(rev state.Revision, at time.Time) state.Status {
	return state.Status{LastAppliedRevision: rev.String(), LastAppliedAt: &at, LastAttemptedRevision: rev.String(), LastAttemptedAt: &at,
		Conditions: []state.Condition{{Type: state.ConditionReady, Status: "True", Reason: state.ReasonSucceeded, Message: "applied " + rev.String()}}}
}

// firing is the alert the overview shows.
func firing() []alert.Alert {
	return []alert.Alert{{Name: alert.CertificateExpiringSoon, Severity: alert.Warning, Subject: "blog",
		Summary: "blog on web-01 ends in 5 days", Since: time.Now().Add(-time.Hour)}}
}
