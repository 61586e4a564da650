package httpapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/httpapi"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit/storekit"
)

type deploymentStatus struct {
	Agent, State, Serial, CurrentSerial, LastError string
	NotAfter, RenewAt, LastAttempt                 *time.Time
}

type certificateResponse struct {
	Name   string
	Status struct {
		Ready       bool
		Reason      string
		SpecHash    string
		NotAfter    *time.Time
		RenewAt     *time.Time
		IssuerError string
		Deployments []deploymentStatus
	}
}

type agentResponse struct {
	Name   string
	Status struct {
		State          string
		LastSeen       *time.Time
		Version        string
		Hostname       string
		Assignments    []string
		PolicyRefusals []struct{ Certificate, Error string }
	}
}

func TestCertificateAndAgentStatus(t *testing.T) {
	ctx := context.Background()
	st := storekit.Open(t)
	shop := &spec.CertificateSpec{IssuerRef: "ca", CommonName: "shop.example.com", DNSNames: []string{"shop.example.com"},
		Deploy: &spec.Deployment{Agents: []string{"web-01", "gone"}, AgentSelector: &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}},
			Files: spec.DeployFiles{Cert: "/etc/ssl/shop.pem"}}}
	desired := storekit.Desired([]*spec.Object{
		{Kind: spec.KindAgent, Name: "web-01", Labels: map[string]string{"role": "web"}, Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("a", 64)}},
		{Kind: spec.KindAgent, Name: "web-02", Labels: map[string]string{"role": "web"}, Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("b", 64)}},
		{Kind: spec.KindAgent, Name: "db-01", Labels: map[string]string{"role": "db"}, Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("c", 64)}},
		{Kind: spec.KindCertificate, Name: "shop", Spec: shop},
		{Kind: spec.KindCertificate, Name: "other", Spec: &spec.CertificateSpec{IssuerRef: "ca", CommonName: "o.example.com",
			Deploy: &spec.Deployment{Agents: []string{"db-01"}, Files: spec.DeployFiles{Cert: "/o.pem"}}}},
	}...)
	rev := state.Revision{Ref: "main", Commit: strings.Repeat("2", 40), Time: time.Now()}
	storekit.Apply(t, st, rev, state.Status{LastAppliedRevision: rev.String()}, desired)
	srv := httptest.NewServer(httpapi.NewHandler(st, httpapi.Config{Gatherer: prometheus.NewRegistry()}, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)

	// With the issuers known, a certificate whose names its issuer may not
	// sign says so before any agent asks.
	refusing := httptest.NewServer(httpapi.NewHandler(st, httpapi.Config{Gatherer: prometheus.NewRegistry(),
		Issuers: refuseNames{"o.example.com"}}, slog.New(slog.DiscardHandler)))
	t.Cleanup(refusing.Close)
	var c certificateResponse
	do(t, "GET", refusing.URL+"/api/v1/certificates/other", "", &c)
	if c.Status.Ready || c.Status.Reason != "names of o.example.com refused" || c.Status.IssuerError != c.Status.Reason {
		t.Errorf("a certificate its issuer cannot sign: %+v", c.Status)
	}
	c = certificateResponse{}
	do(t, "GET", refusing.URL+"/api/v1/certificates/shop", "", &c)
	if c.Status.IssuerError != "" {
		t.Errorf("a certificate its issuer can sign: issuerError %q", c.Status.IssuerError)
	}

	c = certificateResponse{}
	do(t, "GET", srv.URL+"/api/v1/certificates/shop", "", &c)
	if c.Status.Ready || c.Status.Reason != "waiting for agent web-01 to request issuance (and 1 more agent(s) not ready)" ||
		len(c.Status.Deployments) != 2 || c.Status.Deployments[1].Agent != "web-02" || c.Status.Deployments[1].State != "pending" {
		t.Fatalf("before issuance: %+v", c.Status)
	}

	// web-01 gets and installs a certificate; web-02's issuance fails.
	now := time.Now().UTC().Truncate(time.Second)
	hash := assign.SpecHash(shop)
	v := state.CertificateVersion{Certificate: "shop", Agent: "web-01", SpecHash: hash, Serial: "0a1b", SHA256: "ff",
		NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour), CertPEM: "cert", ChainPEM: "chain", Issuer: "ca", IssuedAt: now}
	if _, err := st.RecordIssuance(ctx, store.Issuance{Version: v, RenewAt: now.Add(60 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: "web-01", SpecHash: hash, Serial: "0a1b",
		Result: state.DeploymentInstalled, At: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RecordIssueFailure(ctx, store.IssueFailure{Certificate: "shop", Agent: "web-02", SpecHash: hash,
		Error: "CSR does not match: extra DNS name", At: now, Base: time.Minute, Cap: time.Hour}); err != nil {
		t.Fatal(err)
	}
	c = certificateResponse{}
	do(t, "GET", srv.URL+"/api/v1/certificates/shop", "", &c)
	d1, d2 := c.Status.Deployments[0], c.Status.Deployments[1]
	if c.Status.Ready || c.Status.Reason != "issuance for agent web-02 failed: CSR does not match: extra DNS name" ||
		d1.State != "installed" || d1.Serial != "0a1b" || d1.CurrentSerial != "0a1b" || d1.NotAfter == nil || !d1.NotAfter.Equal(v.NotAfter) ||
		d1.RenewAt == nil || d2.State != "issue-failed" || d2.LastError == "" || d2.LastAttempt == nil ||
		c.Status.NotAfter == nil || !c.Status.NotAfter.Equal(v.NotAfter) || c.Status.SpecHash != hash {
		t.Errorf("after issuance: %+v", c.Status)
	}

	// The list carries a compact status, one query per page.
	var l struct {
		Items []struct {
			Name   string
			Status store.DeploymentSummary
		}
	}
	do(t, "GET", srv.URL+"/api/v1/certificates", "", &l)
	if len(l.Items) != 2 || l.Items[1].Name != "shop" || l.Items[1].Status.Deployments != 2 || l.Items[1].Status.States["installed"] != 1 {
		t.Errorf("list: %+v", l.Items)
	}

	// Agents: liveness and assignments.
	if err := st.RecordAgentsSeen(ctx, []store.AgentSeen{{Name: "web-01", LastSeen: time.Now(), Version: "0.3.0", Hostname: "web-01.lan"},
		{Name: "web-02", LastSeen: time.Now().Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	var a agentResponse
	do(t, "GET", srv.URL+"/api/v1/agents/web-01", "", &a)
	if a.Status.State != "online" || a.Status.Version != "0.3.0" || a.Status.Hostname != "web-01.lan" || a.Status.LastSeen == nil ||
		strings.Join(a.Status.Assignments, ",") != "shop" {
		t.Errorf("web-01: %+v", a.Status)
	}
	a = agentResponse{}
	do(t, "GET", srv.URL+"/api/v1/agents/web-02", "", &a)
	if a.Status.State != "offline" || strings.Join(a.Status.Assignments, ",") != "shop" {
		t.Errorf("web-02: %+v", a.Status)
	}
	a = agentResponse{}
	do(t, "GET", srv.URL+"/api/v1/agents/db-01", "", &a)
	if a.Status.State != "offline" || a.Status.LastSeen != nil || strings.Join(a.Status.Assignments, ",") != "other" {
		t.Errorf("db-01: %+v", a.Status)
	}
	// A refusal by db-01's host policy shows on the agent.
	refused := "policy: HostPolicyRefused: reload [bash -c x] is not in allowedReloads"
	if _, err := st.RecordReport(ctx, store.DeploymentReport{Certificate: "other", Agent: "db-01", SpecHash: "h",
		Result: state.DeploymentFailed, Stage: agentproto.StagePolicy, Error: refused, At: now}); err != nil {
		t.Fatal(err)
	}
	a = agentResponse{}
	do(t, "GET", srv.URL+"/api/v1/agents/db-01", "", &a)
	if len(a.Status.PolicyRefusals) != 1 || a.Status.PolicyRefusals[0].Certificate != "other" || a.Status.PolicyRefusals[0].Error != refused {
		t.Errorf("db-01's policy refusals: %+v", a.Status.PolicyRefusals)
	}
	a = agentResponse{}
	do(t, "GET", srv.URL+"/api/v1/agents/web-01", "", &a)
	if a.Status.PolicyRefusals == nil || len(a.Status.PolicyRefusals) != 0 {
		t.Errorf("web-01's policy refusals: %+v, want []", a.Status.PolicyRefusals)
	}
	var al struct {
		Items []struct {
			Name   string
			Status struct{ State string }
		}
	}
	do(t, "GET", srv.URL+"/api/v1/agents", "", &al)
	if len(al.Items) != 3 || al.Items[1].Name != "web-01" || al.Items[1].Status.State != "online" || al.Items[2].Status.State != "offline" {
		t.Errorf("agent list: %+v", al.Items)
	}
}

// refuseNames is a NameChecker that refuses the certificates with these
// common names.
type refuseNames []string

func (r refuseNames) CheckNames(_ string, c *spec.CertificateSpec) error {
	if slices.Contains(r, c.CommonName) {
		return fmt.Errorf("names of %s refused", c.CommonName)
	}
	return nil
}

// A suspended certificate says so in its status, and so does each
// deployment on a suspended agent and the agent itself; the spec hash is
// the one of the same spec unsuspended (suspending reissues nothing).
func TestSuspendedIsShown(t *testing.T) {
	st := storekit.Open(t)
	cert := &spec.CertificateSpec{IssuerRef: "ca", CommonName: "shop.example.com", Suspend: true,
		Deploy: &spec.Deployment{AgentSelector: &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}},
			Files: spec.DeployFiles{Cert: "/etc/ssl/shop.pem"}}}
	desired := storekit.Desired([]*spec.Object{
		{Kind: spec.KindAgent, Name: "web-01", Labels: map[string]string{"role": "web"}, Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("a", 64), Suspend: true}},
		{Kind: spec.KindAgent, Name: "web-02", Labels: map[string]string{"role": "web"}, Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("b", 64)}},
		{Kind: spec.KindCertificate, Name: "shop", Spec: cert},
	}...)
	rev := state.Revision{Ref: "main", Commit: strings.Repeat("3", 40), Time: time.Now()}
	storekit.Apply(t, st, rev, state.Status{LastAppliedRevision: rev.String()}, desired)
	svc := httpapi.NewService(st, httpapi.Config{})

	c, err := svc.Certificate(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	unsuspended := *cert
	unsuspended.Suspend = false
	if !c.Status.Suspended || !strings.HasPrefix(c.Status.Reason, "Suspended") || c.Status.SpecHash != assign.SpecHash(&unsuspended) {
		t.Errorf("suspended certificate status: %+v", c.Status)
	}
	if len(c.Status.Deployments) != 2 || !c.Status.Deployments[0].Suspended || c.Status.Deployments[1].Suspended {
		t.Errorf("deployments: %+v; want web-01 suspended, web-02 not", c.Status.Deployments)
	}
	for name, want := range map[string]bool{"web-01": true, "web-02": false} {
		a, err := svc.Agent(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status.Suspended != want {
			t.Errorf("agent %s: suspended = %v, want %v", name, a.Status.Suspended, want)
		}
	}
}

// TestDeploymentShowsDesiredInstalledServed: the certificate status shows,
// per deployment, what certops issued (currentSerial), what the agent
// installed (serial) and what the service serves (served*), raw JSON
// field names included.
func TestDeploymentShowsDesiredInstalledServed(t *testing.T) {
	ctx := context.Background()
	st := storekit.Open(t)
	shop := &spec.CertificateSpec{IssuerRef: "ca", CommonName: "shop.example.com",
		Deploy: &spec.Deployment{Agents: []string{"web-01", "web-02"}, Files: spec.DeployFiles{Cert: "/etc/ssl/shop.pem"},
			Verify: &spec.Verify{Address: "127.0.0.1:443"}}}
	desired := storekit.Desired([]*spec.Object{
		{Kind: spec.KindAgent, Name: "web-01", Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("a", 64)}},
		{Kind: spec.KindAgent, Name: "web-02", Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("b", 64)}},
		{Kind: spec.KindCertificate, Name: "shop", Spec: shop},
	}...)
	rev := state.Revision{Ref: "main", Commit: strings.Repeat("3", 40), Time: time.Now()}
	storekit.Apply(t, st, rev, state.Status{LastAppliedRevision: rev.String()}, desired)
	srv := httptest.NewServer(httpapi.NewHandler(st, httpapi.Config{Gatherer: prometheus.NewRegistry()}, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)

	now := time.Now().UTC().Truncate(time.Second)
	hash := assign.SpecHash(shop)
	for _, agent := range []string{"web-01", "web-02"} {
		for i, serial := range []string{"0a", "0b"} {
			v := state.CertificateVersion{Certificate: "shop", Agent: agent, SpecHash: hash, Serial: serial + agent[4:], SHA256: "ff",
				NotBefore: now, NotAfter: now.Add(time.Duration(i+1) * time.Hour), CertPEM: "c", ChainPEM: "c", Issuer: "ca", IssuedAt: now}
			if _, err := st.RecordIssuance(ctx, store.Issuance{Version: v, RenewAt: now}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: agent, SpecHash: hash, Serial: "0b" + agent[4:],
			Result: state.DeploymentInstalled, At: now}); err != nil {
			t.Fatal(err)
		}
	}
	// web-01's service still serves the first certificate; web-02's check failed.
	if _, err := st.RecordServed(ctx, "web-01", []store.ServedCheck{{Certificate: "shop", Serial: "0a01", NotBefore: now,
		NotAfter: now.Add(time.Hour), CheckedAt: now}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RecordServed(ctx, "web-02", []store.ServedCheck{{Certificate: "shop", Error: "connection refused", CheckedAt: now}}); err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Status struct{ Deployments []map[string]any }
	}
	do(t, "GET", srv.URL+"/api/v1/certificates/shop", "", &raw)
	ts := func(t time.Time) string { return t.Format(time.RFC3339) }
	want := []map[string]any{
		{"agent": "web-01", "currentSerial": "0b01", "serial": "0b01", "servedSerial": "0a01",
			"servedNotAfter": ts(now.Add(time.Hour)), "servedCheckedAt": ts(now), "servedMismatchSince": ts(now)},
		{"agent": "web-02", "currentSerial": "0b02", "serial": "0b02", "servedCheckedAt": ts(now), "servedError": "connection refused"},
	}
	if len(raw.Status.Deployments) != 2 {
		t.Fatalf("deployments: %+v", raw.Status.Deployments)
	}
	for i, w := range want {
		got := raw.Status.Deployments[i]
		for k, v := range w {
			if got[k] != v {
				t.Errorf("deployment %d: %s = %v, want %v", i, k, got[k], v)
			}
		}
		for _, k := range []string{"servedSerial", "servedNotAfter", "servedError", "servedMismatchSince"} {
			if _, ok := w[k]; !ok && got[k] != nil {
				t.Errorf("deployment %d: %s = %v, want it absent", i, k, got[k])
			}
		}
	}
}
