package alerting

import (
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
