package alerting

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit/storekit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const gatherRepo = `apiVersion: certops/v1
kind: Issuer
metadata: {name: internal-ca}
spec:
  localCA: {certFile: /etc/certops/ca/tls.crt, keyFile: /etc/certops/ca/tls.key}
---
apiVersion: certops/v1
kind: Agent
metadata: {name: web-01, labels: {role: web}}
spec: {tokenSHA256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
---
apiVersion: certops/v1
kind: Agent
metadata: {name: web-02}
spec: {tokenSHA256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a09}
---
apiVersion: certops/v1
kind: Certificate
metadata: {name: shop}
spec:
  issuerRef: internal-ca
  commonName: shop.example.com
  duration: 144h
  deploy:
    agentSelector: {matchLabels: {role: web}}
    files: {cert: /etc/ssl/shop/cert.pem, key: /etc/ssl/shop/key.pem}
---
apiVersion: certops/v1
kind: AlertPolicy
metadata: {name: default}
spec:
  agentOfflineAfter: 10m
  jobFailureRatio: {ratio: 0.5, window: 1h, minJobs: 1}
  issuanceFailures: {count: 0, window: 1h}
---
apiVersion: certops/v1
kind: BackupPolicy
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  retention: {count: 7}
  destination: {directory: /var/backups/certops}
`

// TestGatherReadsFactsFromPostgres applies a repository to a real
// database, records what agents did, and checks the facts and alerts.
func TestGatherReadsFactsFromPostgres(t *testing.T) {
	ctx := context.Background()
	s := storekit.Open(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "repo.yaml"), []byte(gatherRepo), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := spec.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.StoredHashes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rev := state.Revision{Ref: "main", Commit: "0123456789012345678901234567890123456789"}
	lease, ok, err := s.TryLeader(ctx) // writes of desired state are the leader's
	if err != nil || !ok {
		t.Fatalf("TryLeader = %v, %v", ok, err)
	}
	defer lease.Release()
	if _, err := s.Apply(ctx, lease.Fence(), rev, reconcile.Compute(st.Objects, stored), state.Status{}); err != nil {
		t.Fatal(err)
	}

	now := time.Now().UTC().Truncate(time.Second)
	notBefore, notAfter := now.Add(-130*time.Hour), now.Add(14*time.Hour) // under 10% of 144h left
	if _, err := s.RecordIssuance(ctx, store.Issuance{RenewAt: now.Add(-2 * time.Hour), Version: state.CertificateVersion{
		Certificate: "shop", Agent: "web-01", SpecHash: "h", Serial: "01", SHA256: "x",
		NotBefore: notBefore, NotAfter: notAfter, CertPEM: "pem", Issuer: "internal-ca", IssuedAt: now.Add(-time.Minute),
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: "web-01", SpecHash: "h",
		Serial: "01", Result: state.DeploymentInstalled, At: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	// web-02 is not targeted (no role label): its failure counts as a job
	// but not for the certificate's facts.
	if _, err := s.RecordIssueFailure(ctx, store.IssueFailure{Certificate: "shop", Agent: "web-02", SpecHash: "h",
		Error: "refused", At: now.Add(-time.Minute), Base: time.Second, Cap: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// web-01's service still serves an older certificate, since 40 minutes.
	servedNB, servedNA := now.Add(-200*time.Hour), now.Add(100*time.Hour)
	if _, err := s.RecordServed(ctx, "web-01", []store.ServedCheck{{Certificate: "shop", Serial: "0f",
		NotBefore: servedNB, NotAfter: servedNA, CheckedAt: now.Add(-40 * time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordAgentsSeen(ctx, []store.AgentSeen{{Name: "web-01", LastSeen: now.Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	fetched, notReady := now.Add(-time.Hour), now.Add(-40*time.Minute)
	if err := s.SetStatus(ctx, lease.Fence(), state.Status{LastFetchAt: &fetched, Conditions: []state.Condition{{
		Type: state.ConditionReady, Status: "False", Reason: "ValidationFailed", Message: "2 errors", LastTransitionTime: notReady,
	}}}); err != nil {
		t.Fatal(err)
	}

	in, err := Gather(ctx, s, now)
	if err != nil {
		t.Fatal(err)
	}
	if in.Policy == nil || in.Policy.AgentOfflineAfter != "10m" {
		t.Errorf("Policy = %+v, want the AlertPolicy from the store", in.Policy)
	}
	if diff := cmp.Diff(in.Certificates, []Certificate{{Name: "shop", NotBefore: notBefore, NotAfter: notAfter, RenewAt: now.Add(-2 * time.Hour),
		ServedNotBefore: servedNB, ServedNotAfter: servedNA, ServedMismatchSince: now.Add(-40 * time.Minute), ServedMismatchAgents: []string{"web-01"}}},
		cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("Certificates (-got +want):\n%s", diff)
	}
	if got, want := in.Jobs, (Jobs{Total: 2, Failed: 1}); got != want {
		t.Errorf("Jobs = %+v, want %+v", got, want)
	}
	if got, want := in.IssuanceFailures, 1; got != want {
		t.Errorf("IssuanceFailures = %d, want %d", got, want)
	}
	if in.Backup == nil {
		t.Error("Backup = nil, want set: the repository has a BackupPolicy")
	}
	if len(in.Agents) != 2 || !in.Agents[0].LastSeen.Equal(now.Add(-time.Minute)) || !in.Agents[1].LastSeen.IsZero() || in.Agents[1].Added.IsZero() {
		t.Errorf("Agents = %+v, want web-01 seen a minute ago and web-02 never seen", in.Agents)
	}
	if diff := cmp.Diff(in.Issuers, []Issuer{{Name: "internal-ca", LongestDuration: 144 * time.Hour}}); diff != "" {
		t.Errorf("Issuers (-got +want):\n%s", diff)
	}
	in.Backup = nil // left to the backup package
	var got []string
	for _, a := range Evaluate(in) {
		got = append(got, a.Key())
	}
	want := []string{
		alert.CertificateExpiringSoon + "/critical/shop",
		alert.CertificateRenewalOverdue + "/warning/shop",
		alert.IssuanceFailures + "/warning/",
		alert.JobFailureRateHigh + "/warning/",
		alert.ReconcileStalled + "/warning/",
		alert.ServedCertificateMismatch + "/warning/shop",
		alert.SourceStale + "/warning/",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("alerts (-got +want):\n%s", diff)
	}

	// The Monitor (whose alerts the status API and notifications show)
	// adds what it knows of the issuers' CAs: internal-ca ends in 100h,
	// before a 144h certificate would.
	m := NewMonitor(s, prometheus.NewRegistry(), nil, MonitorOptions{Now: func() time.Time { return now },
		CAExpirations: func() map[string]time.Time { return map[string]time.Time{"internal-ca": now.Add(100 * time.Hour)} }})
	alerts, err := m.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, a := range m.Alerts() {
		keys[a.Key()] = true
	}
	for _, k := range []string{alert.IssuerExpiringSoon + "/warning/internal-ca", alert.ServedCertificateMismatch + "/warning/shop"} {
		if !keys[k] {
			t.Errorf("Monitor alerts %v lack %s", alerts, k)
		}
	}
}
