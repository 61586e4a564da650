package alerting

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fired is an alert reduced to what the tests compare.
type fired struct {
	Name     string
	Severity alert.Severity
	Subject  string
	Since    time.Time
}

func firedOf(as []alert.Alert) []fired {
	out := []fired{}
	for _, a := range as {
		if a.Summary == "" || a.Description == "" {
			panic("alert without text: " + a.Key())
		}
		out = append(out, fired{a.Name, a.Severity, a.Subject, a.Since})
	}
	return out
}

func fraction(f float64) *float64 { return &f }

func TestEvaluate(t *testing.T) {
	hour := time.Hour
	policy := func(edit func(*spec.AlertPolicySpec)) *spec.AlertPolicySpec {
		p := &spec.AlertPolicySpec{}
		edit(p)
		return p
	}
	// A 6-day certificate issued at t0: with the default fractions it
	// reaches 20% left at t0+115.2h and 10% at t0+129.6h.
	short := Certificate{Name: "short", NotBefore: t0, NotAfter: t0.Add(144 * hour)}
	tests := []struct {
		name string
		in   Input
		want []fired
	}{
		{"nothing", Input{Now: t0}, []fired{}},
		{
			"expiry below default warning fraction",
			Input{Now: t0.Add(115 * hour), Certificates: []Certificate{short}},
			[]fired{},
		},
		{
			"expiry at default warning fraction",
			Input{Now: t0.Add(115*hour + 12*time.Minute), Certificates: []Certificate{short}},
			[]fired{{alert.CertificateExpiringSoon, alert.Warning, "short", t0.Add(115*hour + 12*time.Minute)}},
		},
		{
			"expiry at default critical fraction replaces warning",
			Input{Now: t0.Add(130 * hour), Certificates: []Certificate{short}},
			[]fired{{alert.CertificateExpiringSoon, alert.Critical, "short", t0.Add(129*hour + 36*time.Minute)}},
		},
		{
			"expiry by time left, after a policy change adds it",
			Input{Now: t0.Add(100 * hour), Certificates: []Certificate{short},
				Policy: policy(func(p *spec.AlertPolicySpec) {
					p.CertificateExpiring = &spec.ExpiryThresholds{Warning: &spec.ExpiryThreshold{Remaining: "48h"}}
				})},
			[]fired{{alert.CertificateExpiringSoon, alert.Warning, "short", t0.Add(96 * hour)}},
		},
		{
			"expiry: a policy's severity replaces the default fraction",
			Input{Now: t0.Add(120 * hour), Certificates: []Certificate{short},
				Policy: policy(func(p *spec.AlertPolicySpec) {
					p.CertificateExpiring = &spec.ExpiryThresholds{Warning: &spec.ExpiryThreshold{Remaining: "1h"}}
				})},
			[]fired{},
		},
		{
			"expiry: no notBefore, only time left counts",
			Input{Now: t0.Add(140 * hour), Certificates: []Certificate{{Name: "x", NotAfter: t0.Add(144 * hour)}},
				Policy: policy(func(p *spec.AlertPolicySpec) {
					p.CertificateExpiring = &spec.ExpiryThresholds{Critical: &spec.ExpiryThreshold{Remaining: "4h", RemainingFraction: fraction(0.5)}}
				})},
			[]fired{{alert.CertificateExpiringSoon, alert.Critical, "x", t0.Add(140 * hour)}},
		},
		{
			"renewal overdue below threshold",
			Input{Now: t0.Add(59 * time.Minute), Certificates: []Certificate{{Name: "c", RenewAt: t0}}},
			[]fired{},
		},
		{
			"renewal overdue at default threshold",
			Input{Now: t0.Add(hour), Certificates: []Certificate{{Name: "c", RenewAt: t0}}},
			[]fired{{alert.CertificateRenewalOverdue, alert.Warning, "c", t0.Add(hour)}},
		},
		{
			"renewal overdue after raising the threshold",
			Input{Now: t0.Add(hour), Certificates: []Certificate{{Name: "c", RenewAt: t0}},
				Policy: policy(func(p *spec.AlertPolicySpec) { p.RenewalOverdueAfter = "2h" })},
			[]fired{},
		},
		{
			"agent offline at threshold, online below, never seen counts from added",
			Input{Now: t0.Add(15 * time.Minute), Agents: []Agent{
				{Name: "a", LastSeen: t0},
				{Name: "b", LastSeen: t0.Add(time.Minute)},
				{Name: "new", Added: t0},
			}},
			[]fired{
				{alert.AgentOffline, alert.Warning, "a", t0.Add(15 * time.Minute)},
				{alert.AgentOffline, alert.Warning, "new", t0.Add(15 * time.Minute)},
			},
		},
		{
			"agent offline after lowering the threshold",
			Input{Now: t0.Add(5 * time.Minute), Agents: []Agent{{Name: "a", LastSeen: t0}},
				Policy: policy(func(p *spec.AlertPolicySpec) { p.AgentOfflineAfter = "5m" })},
			[]fired{{alert.AgentOffline, alert.Warning, "a", t0.Add(5 * time.Minute)}},
		},
		{
			"job failures: 2 of 3 with minJobs 3",
			Input{Now: t0, Jobs: Jobs{Total: 3, Failed: 2},
				Policy: policy(func(p *spec.AlertPolicySpec) {
					p.JobFailureRatio = &spec.FailureRatio{Ratio: 0.5, Window: "1h", MinJobs: 3}
				})},
			[]fired{{alert.JobFailureRateHigh, alert.Warning, "", t0}},
		},
		{
			"job failures: below minJobs",
			Input{Now: t0, Jobs: Jobs{Total: 3, Failed: 3},
				Policy: policy(func(p *spec.AlertPolicySpec) {
					p.JobFailureRatio = &spec.FailureRatio{Ratio: 0.5, Window: "1h", MinJobs: 4}
				})},
			[]fired{},
		},
		{
			"job failures: below ratio",
			Input{Now: t0, Jobs: Jobs{Total: 10, Failed: 2}},
			[]fired{},
		},
		{
			"job failures: at default ratio",
			Input{Now: t0, Jobs: Jobs{Total: 4, Failed: 1}},
			[]fired{{alert.JobFailureRateHigh, alert.Warning, "", t0}},
		},
		{
			"issuance failures: at count is quiet, more fires",
			Input{Now: t0, IssuanceFailures: 3},
			[]fired{},
		},
		{
			"issuance failures: more than default count",
			Input{Now: t0, IssuanceFailures: 4},
			[]fired{{alert.IssuanceFailures, alert.Warning, "", t0}},
		},
		{
			"issuance failures: count 0 fires on one",
			Input{Now: t0, IssuanceFailures: 1,
				Policy: policy(func(p *spec.AlertPolicySpec) { p.IssuanceFailures = &spec.CountThreshold{Count: 0, Window: "1h"} })},
			[]fired{{alert.IssuanceFailures, alert.Warning, "", t0}},
		},
		{
			"reconcile not ready below threshold",
			Input{Now: t0.Add(29 * time.Minute), Reconcile: Reconcile{NotReadySince: t0, Reason: "ValidationFailed"}},
			[]fired{},
		},
		{
			"reconcile stalled at threshold",
			Input{Now: t0.Add(30 * time.Minute), Reconcile: Reconcile{NotReadySince: t0, Reason: "ValidationFailed"}},
			[]fired{{alert.ReconcileStalled, alert.Warning, "", t0.Add(30 * time.Minute)}},
		},
		{
			"reconcile stalled after raising the threshold",
			Input{Now: t0.Add(30 * time.Minute), Reconcile: Reconcile{NotReadySince: t0},
				Policy: policy(func(p *spec.AlertPolicySpec) { p.ReconcileStalled = "1h" })},
			[]fired{},
		},
		{
			"source stale at threshold",
			Input{Now: t0.Add(15 * time.Minute), Reconcile: Reconcile{LastFetch: t0}},
			[]fired{{alert.SourceStale, alert.Warning, "", t0.Add(15 * time.Minute)}},
		},
		{
			"source fresh below threshold, and after raising it",
			Input{Now: t0.Add(15 * time.Minute), Reconcile: Reconcile{LastFetch: t0},
				Policy: policy(func(p *spec.AlertPolicySpec) { p.SourceStale = "20m" })},
			[]fired{},
		},
		{
			"backup at threshold",
			Input{Now: t0.Add(48 * hour), Backup: &Backup{LastSuccess: t0}},
			[]fired{{alert.BackupTooOld, alert.Warning, "", t0.Add(48 * hour)}},
		},
		{
			"backup below threshold",
			Input{Now: t0.Add(47 * hour), Backup: &Backup{LastSuccess: t0}},
			[]fired{},
		},
		{
			"backup after lowering the threshold",
			Input{Now: t0.Add(25 * hour), Backup: &Backup{LastSuccess: t0},
				Policy: policy(func(p *spec.AlertPolicySpec) { p.BackupTooOld = "25h" })},
			[]fired{{alert.BackupTooOld, alert.Warning, "", t0.Add(25 * hour)}},
		},
		{
			"backup never succeeded",
			Input{Now: t0, Backup: &Backup{}},
			[]fired{{alert.BackupTooOld, alert.Warning, "", t0}},
		},
		{
			"no BackupPolicy",
			Input{Now: t0},
			[]fired{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := firedOf(Evaluate(tt.in))
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Evaluate (-got +want):\n%s", diff)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	got := Resolve(&spec.AlertPolicySpec{
		CertificateExpiring: &spec.ExpiryThresholds{Critical: &spec.ExpiryThreshold{Remaining: "72h"}},
		AgentOfflineAfter:   "10m",
		JobFailureRatio:     &spec.FailureRatio{Ratio: 0.5, Window: "6h", MinJobs: 2},
		IssuanceFailures:    &spec.CountThreshold{Count: 5, Window: "30m"},
	})
	want := Defaults()
	want.Critical = ExpiryThreshold{Remaining: 72 * time.Hour}
	want.AgentOffline = 10 * time.Minute
	want.JobFailureRatio, want.JobFailureWindow, want.JobFailureMinJobs = 0.5, 6*time.Hour, 2
	want.IssuanceFailures, want.IssuanceFailureWindow = 5, 30*time.Minute
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Resolve (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(Resolve(nil), Defaults()); diff != "" {
		t.Errorf("Resolve(nil) (-got +want):\n%s", diff)
	}
}

// TestEvaluateServedAndIssuer: certops' own evaluation of the served
// mismatch (after servedMismatchAfter, default 30m), the served expiry
// (the certificateExpiring thresholds applied to what is served) and a
// local CA ending before the certificates it signs would.
func TestEvaluateServedAndIssuer(t *testing.T) {
	hour := time.Hour
	mismatched := Certificate{Name: "shop", NotBefore: t0, NotAfter: t0.Add(144 * hour),
		ServedMismatchSince: t0, ServedMismatchAgents: []string{"web-01", "web-02"}}
	// What is served is an older 6-day certificate: 20% left at t0+91.2h,
	// 10% at t0+105.6h.
	staleServed := Certificate{Name: "api", NotBefore: t0, NotAfter: t0.Add(144 * hour),
		ServedNotBefore: t0.Add(-24 * hour), ServedNotAfter: t0.Add(120 * hour)}
	ca := Issuer{Name: "internal-ca", CANotAfter: t0.Add(90 * 24 * hour), LongestDuration: 30 * 24 * hour}
	tests := []struct {
		name string
		in   Input
		want []fired
	}{
		{"mismatch shorter than the default 30m", Input{Now: t0.Add(29 * time.Minute), Certificates: []Certificate{mismatched}}, []fired{}},
		{"mismatch at the default 30m", Input{Now: t0.Add(30 * time.Minute), Certificates: []Certificate{mismatched}},
			[]fired{{alert.ServedCertificateMismatch, alert.Warning, "shop", t0.Add(30 * time.Minute)}}},
		{"mismatch with servedMismatchAfter 2h", Input{Now: t0.Add(time.Hour), Certificates: []Certificate{mismatched},
			Policy: &spec.AlertPolicySpec{ServedMismatchAfter: "2h"}}, []fired{}},
		{"no mismatch", Input{Now: t0.Add(10 * hour), Certificates: []Certificate{{Name: "ok", NotBefore: t0, NotAfter: t0.Add(144 * hour),
			ServedNotBefore: t0, ServedNotAfter: t0.Add(144 * hour)}}}, []fired{}},
		{"served expiry at the warning fraction, installed fine", Input{Now: t0.Add(92 * hour), Certificates: []Certificate{staleServed}},
			[]fired{{alert.ServedCertificateExpiringSoon, alert.Warning, "api", t0.Add(91*hour + 12*time.Minute)}}},
		{"served expiry at the critical fraction", Input{Now: t0.Add(106 * hour), Certificates: []Certificate{staleServed}},
			[]fired{{alert.ServedCertificateExpiringSoon, alert.Critical, "api", t0.Add(105*hour + 36*time.Minute)}}},
		{"served expiry by time left from the policy", Input{Now: t0.Add(100 * hour), Certificates: []Certificate{staleServed},
			Policy: &spec.AlertPolicySpec{CertificateExpiring: &spec.ExpiryThresholds{Warning: &spec.ExpiryThreshold{Remaining: "24h"}}}},
			[]fired{{alert.ServedCertificateExpiringSoon, alert.Warning, "api", t0.Add(96 * hour)}}},
		{"issuer CA outlasts the longest certificate", Input{Now: t0.Add(59 * 24 * hour), Issuers: []Issuer{ca}}, []fired{}},
		{"issuer CA ends before a new certificate would", Input{Now: t0.Add(61 * 24 * hour), Issuers: []Issuer{ca}},
			[]fired{{alert.IssuerExpiringSoon, alert.Warning, "internal-ca", t0.Add(60 * 24 * hour)}}},
		{"issuer CA ended", Input{Now: t0.Add(91 * 24 * hour), Issuers: []Issuer{ca}},
			[]fired{{alert.IssuerExpiringSoon, alert.Warning, "internal-ca", t0.Add(60 * 24 * hour)}}},
		{"issuer without a known CA (acme)", Input{Now: t0.Add(91 * 24 * hour), Issuers: []Issuer{{Name: "le", LongestDuration: 90 * 24 * hour}}}, []fired{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(firedOf(Evaluate(tc.in)), tc.want); diff != "" {
				t.Errorf("alerts (-got +want):\n%s", diff)
			}
		})
	}
	// The mismatch names the agents.
	for _, a := range Evaluate(Input{Now: t0.Add(time.Hour), Certificates: []Certificate{mismatched}}) {
		if a.Name == alert.ServedCertificateMismatch && !strings.Contains(a.Description, "agents web-01, web-02") {
			t.Errorf("description %q does not name the agents", a.Description)
		}
	}
}
