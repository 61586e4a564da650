package alerting

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/yaml"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/testkit"
)

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRuleFilePassesPromtoolCheckRules(t *testing.T) {
	out, err := RenderRuleFile(Rules())
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, "certops.rules.yaml", out)
	if got, err := testkit.GoTool(t, nil, "promtool", "check", "rules", path); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, got)
	}
}

func TestPrometheusRulePassesPromtoolCheckRules(t *testing.T) {
	out, err := RenderPrometheusRule(Rules(), PrometheusRuleOptions{Name: "certops", Namespace: "monitoring",
		Labels: map[string]string{"release": "prometheus"}})
	if err != nil {
		t.Fatal(err)
	}
	var obj PrometheusRule
	if err := yaml.UnmarshalStrict(out, &obj); err != nil {
		t.Fatalf("decode PrometheusRule: %v\n%s", err, out)
	}
	if got, want := fmt.Sprint(obj.APIVersion, " ", obj.Kind, " ", obj.Metadata.Namespace, "/", obj.Metadata.Name, " ", obj.Metadata.Labels),
		"monitoring.coreos.com/v1 PrometheusRule monitoring/certops map[release:prometheus]"; got != want {
		t.Errorf("object = %s, want %s", got, want)
	}
	groups, err := yaml.Marshal(obj.Spec)
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, "spec.yaml", groups)
	if got, err := testkit.GoTool(t, nil, "promtool", "check", "rules", path); err != nil {
		t.Fatalf("promtool check rules on the PrometheusRule's spec: %v\n%s", err, got)
	}
}

func TestEveryAlertHasRuleAnnotationsAndRunbook(t *testing.T) {
	names := map[string]bool{}
	for _, r := range Rules().Groups[0].Rules {
		if r.Alert == "" {
			continue
		}
		names[r.Alert] = true
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[k] == "" {
				t.Errorf("%s: no %s annotation", r.Alert, k)
			}
		}
		runbook := filepath.Join(testkit.ModuleRoot(t), "docs", "runbooks", RunbookFile(r.Alert))
		if _, err := os.Stat(runbook); err != nil {
			t.Errorf("%s: runbook: %v", r.Alert, err)
		}
	}
	for _, n := range []string{alert.CertificateExpiringSoon, alert.CertificateRenewalOverdue, alert.AgentOffline,
		alert.JobFailureRateHigh, alert.IssuanceFailures, alert.ReconcileStalled, alert.SourceStale, alert.BackupTooOld,
		alert.HostPolicyRefused, alert.ServedCertificateMismatch, alert.ServedCertificateExpiringSoon, alert.IssuerExpiringSoon,
		alert.RevokedCertificateInUse} {
		if !names[n] {
			t.Errorf("no rule for %s", n)
		}
	}
}

func TestThresholdAndFactMetricsPassPromtoolCheckMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	th := NewThresholdMetrics(reg)
	half := 0.5
	th.Set(&spec.AlertPolicySpec{CertificateExpiring: &spec.ExpiryThresholds{
		Warning:  &spec.ExpiryThreshold{Remaining: "720h", RemainingFraction: &half},
		Critical: &spec.ExpiryThreshold{Remaining: "168h"},
	}})
	facts := NewFactMetrics(reg)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	facts.Set(Input{Now: now, Agents: []Agent{{Name: "web-01", LastSeen: now}, {Name: "web-02", Added: now}},
		Jobs: Jobs{Total: 3, Failed: 2}, IssuanceFailures: 1, Reconcile: Reconcile{NotReadySince: now},
		Certificates: []Certificate{
			{Name: "shop", ServedNotBefore: now, ServedNotAfter: now.Add(time.Hour), ServedMismatchSince: now, RevokedInUseSince: now},
			{Name: "quiet"},
		},
		Issuers: []Issuer{{Name: "internal-ca", CANotAfter: now, LongestDuration: time.Hour}, {Name: "le", LongestDuration: 2 * time.Hour}}})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`certops_alert_threshold_certificate_expiry_seconds{severity="warning"} 2.592e+06`,
		`certops_alert_threshold_certificate_expiry_ratio{severity="warning"} 0.5`,
		`certops_alert_threshold_job_failure_min_jobs 3`,
		`certops_agent_last_seen_timestamp_seconds{agent="web-02"}`,
		`certops_jobs_failed_in_window 2`,
		`certops_alert_threshold_served_mismatch_seconds 1800`,
		`certops_served_certificate_mismatch_since_timestamp_seconds{certificate="shop"}`,
		`certops_revoked_certificate_in_use_since_timestamp_seconds{certificate="shop"}`,
		`certops_served_certificate_expiration_timestamp_seconds{certificate="shop"}`,
		`certops_served_certificate_not_before_timestamp_seconds{certificate="shop"}`,
		`certops_issuer_ca_expiration_timestamp_seconds{issuer="internal-ca"}`,
		`certops_issuer_longest_certificate_duration_seconds{issuer="le"} 7200`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	for _, absent := range []string{`{certificate="quiet"}`, `certops_issuer_ca_expiration_timestamp_seconds{issuer="le"}`} {
		if strings.Contains(string(body), absent) {
			t.Errorf("exposition has %s: nothing is known of it", absent)
		}
	}
	if strings.Contains(string(body), `certops_alert_threshold_certificate_expiry_ratio{severity="critical"}`) {
		t.Error("exposition has a critical ratio threshold, but the policy turned that trigger off")
	}
	if got, err := testkit.GoTool(t, bytes.NewReader(body), "promtool", "check", "metrics"); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n%s", err, got, body)
	}
}

// ---- promtool test rules ----

// unitTests is a promtool rule unit test file.
type unitTests struct {
	RuleFiles          []string    `json:"rule_files"`
	EvaluationInterval string      `json:"evaluation_interval"`
	Tests              []unitGroup `json:"tests"`
}

type unitGroup struct {
	Name          string       `json:"name"`
	Interval      string       `json:"interval"`
	InputSeries   []series     `json:"input_series"`
	AlertRuleTest []alertCheck `json:"alert_rule_test"`
}

type series struct {
	Series string `json:"series"`
	Values string `json:"values"`
}

type alertCheck struct {
	EvalTime  string     `json:"eval_time"`
	Alertname string     `json:"alertname"`
	ExpAlerts []expAlert `json:"exp_alerts"`
}

type expAlert struct {
	ExpLabels      map[string]string `json:"exp_labels"`
	ExpAnnotations map[string]string `json:"exp_annotations"`
}

// firing is an expected alert: its labels besides alertname and its value
// as the annotations show it.
type firing struct {
	labels map[string]string
	value  string
}

// check expects exactly the alerts want of name at eval time at.
func check(at, name string, want ...firing) alertCheck {
	c := alertCheck{EvalTime: at, Alertname: name, ExpAlerts: []expAlert{}}
	for _, f := range want {
		c.ExpAlerts = append(c.ExpAlerts, expAlert{ExpLabels: f.labels, ExpAnnotations: expandAnnotations(name, f)})
	}
	return c
}

var (
	labelRef = regexp.MustCompile(`\{\{ \$labels\.(\w+) \}\}`)
	valueRef = regexp.MustCompile(`\{\{ \$value[^}]*\}\}`)
)

// expandAnnotations expands the annotations of the rule for name and the
// alert's severity the way Prometheus does for the template forms the rules
// use: label references and the (already humanized) value.
func expandAnnotations(name string, f firing) map[string]string {
	for _, r := range Rules().Groups[0].Rules {
		if r.Alert != name || r.Labels[labelSeverity] != f.labels[labelSeverity] {
			continue
		}
		out := map[string]string{}
		for k, v := range r.Annotations {
			v = labelRef.ReplaceAllStringFunc(v, func(m string) string { return f.labels[labelRef.FindStringSubmatch(m)[1]] })
			out[k] = valueRef.ReplaceAllLiteralString(v, f.value)
		}
		return out
	}
	panic("no rule " + name)
}

func warning(value string, labels ...string) firing  { return alertOf(alert.Warning, value, labels) }
func critical(value string, labels ...string) firing { return alertOf(alert.Critical, value, labels) }
func alertOf(sev alert.Severity, value string, kv []string) firing {
	l := map[string]string{labelSeverity: string(sev)}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return firing{labels: l, value: value}
}

// TestRulesFireAtThresholds feeds series to the rules with promtool: each
// alert fires once its threshold gauge is reached and stays quiet below,
// also when the threshold gauge changes in the middle of a test. Times
// start at 0, so timestamps are small numbers of seconds.
func TestRulesFireAtThresholds(t *testing.T) {
	rules, err := RenderRuleFile(Rules())
	if err != nil {
		t.Fatal(err)
	}
	groups := []unitGroup{
		{
			Name: "agent offline: fires when last seen reaches the threshold, after for: 5m",
			InputSeries: []series{
				{`certops_agent_last_seen_timestamp_seconds{agent="web-01"}`, "0x60"},
				{`certops_agent_last_seen_timestamp_seconds{agent="web-02"}`, "0+60x60"},
				{metricAgentOffline, "600x60"},
			},
			AlertRuleTest: []alertCheck{
				check("9m", alert.AgentOffline),
				check("14m", alert.AgentOffline), // pending since 10m
				check("15m", alert.AgentOffline, warning("15m 0s", "agent", "web-01")),
			},
		},
		{
			Name: "agent offline: a lower threshold fires, a higher one clears",
			InputSeries: []series{
				{`certops_agent_last_seen_timestamp_seconds{agent="web-01"}`, "0x60"},
				{metricAgentOffline, "3600x30 600x30"},
				{`certops_agent_last_seen_timestamp_seconds{agent="web-02"}`, "0x60"},
				{metricAgentOffline + `{instance="other"}`, "_x60"},
			},
			AlertRuleTest: []alertCheck{
				check("30m", alert.AgentOffline),
				check("40m", alert.AgentOffline, warning("40m 0s", "agent", "web-01"), warning("40m 0s", "agent", "web-02")),
			},
		},
		{
			Name: "agent offline: raising the threshold clears the alert",
			InputSeries: []series{
				{`certops_agent_last_seen_timestamp_seconds{agent="web-01"}`, "0x60"},
				{metricAgentOffline, "600x30 7200x30"},
			},
			AlertRuleTest: []alertCheck{
				check("25m", alert.AgentOffline, warning("25m 0s", "agent", "web-01")),
				check("40m", alert.AgentOffline),
			},
		},
		{
			// Certificate a lives 1h (0 to 3600 s): 60% of its lifetime is
			// left at 24m, 25% at 45m.
			Name: "certificate expiring: fraction of lifetime, critical replaces warning",
			InputSeries: []series{
				{`certops_certificate_not_before_timestamp_seconds{certificate="a"}`, "0x60"},
				{`certops_certificate_expiration_timestamp_seconds{certificate="a"}`, "3600x60"},
				{`certops_certificate_not_before_timestamp_seconds{certificate="long"}`, "0x60"},
				{`certops_certificate_expiration_timestamp_seconds{certificate="long"}`, "1000000x60"},
				{metricExpiryRatio + `{severity="warning"}`, "0.6x60"},
				{metricExpiryRatio + `{severity="critical"}`, "0.25x60"},
			},
			AlertRuleTest: []alertCheck{
				check("23m", alert.CertificateExpiringSoon),
				check("38m", alert.CertificateExpiringSoon), // pending since 24m
				check("39m", alert.CertificateExpiringSoon, warning("21m 0s", "certificate", "a")),
				check("49m", alert.CertificateExpiringSoon), // critical pending, warning suppressed
				check("50m", alert.CertificateExpiringSoon, critical("10m 0s", "certificate", "a")),
				check("61m", alert.CertificateExpiringSoon, critical("-1m 0s", "certificate", "a")),
			},
		},
		{
			// Certificate b has 1,000,000 s left at 0; the warning threshold
			// 998,800 s is reached at 20m. No notBefore: only time left counts.
			Name: "certificate expiring: time left",
			InputSeries: []series{
				{`certops_certificate_expiration_timestamp_seconds{certificate="b"}`, "1000000x60"},
				{metricExpirySeconds + `{severity="warning"}`, "998800x60"},
				{metricExpiryRatio + `{severity="warning"}`, "0.5x60"},
			},
			AlertRuleTest: []alertCheck{
				check("19m", alert.CertificateExpiringSoon),
				check("34m", alert.CertificateExpiringSoon), // pending since 20m
				check("35m", alert.CertificateExpiringSoon, warning("11d 13h 11m 40s", "certificate", "b")),
			},
		},
		{
			Name: "certificate expiring: a threshold raised by a push fires",
			InputSeries: []series{
				{`certops_certificate_not_before_timestamp_seconds{certificate="a"}`, "0x60"},
				{`certops_certificate_expiration_timestamp_seconds{certificate="a"}`, "3600x60"},
				{metricExpiryRatio + `{severity="warning"}`, "0.1x30 0.6x30"},
			},
			AlertRuleTest: []alertCheck{
				check("30m", alert.CertificateExpiringSoon),
				check("50m", alert.CertificateExpiringSoon, warning("10m 0s", "certificate", "a")),
			},
		},
		{
			Name: "renewal overdue: at the threshold, and after lowering it",
			InputSeries: []series{
				{`certops_certificate_renewal_timestamp_seconds{certificate="a"}`, "600x60"},
				{metricRenewalOverdue, "1800x60"},
				{`certops_certificate_renewal_timestamp_seconds{certificate="b"}`, "600x60"},
			},
			AlertRuleTest: []alertCheck{
				check("49m", alert.CertificateRenewalOverdue), // pending since 40m
				check("50m", alert.CertificateRenewalOverdue, warning("40m 0s", "certificate", "a"), warning("40m 0s", "certificate", "b")),
			},
		},
		{
			Name: "renewal overdue: a lower threshold fires",
			InputSeries: []series{
				{`certops_certificate_renewal_timestamp_seconds{certificate="a"}`, "600x60"},
				{metricRenewalOverdue, "7200x30 600x30"},
			},
			AlertRuleTest: []alertCheck{
				check("30m", alert.CertificateRenewalOverdue),
				check("45m", alert.CertificateRenewalOverdue, warning("35m 0s", "certificate", "a")),
			},
		},
		{
			Name: "job failure ratio: 2 failed of 3 jobs fires with minJobs 3",
			InputSeries: []series{
				{metricJobsInWindow, "3x30"},
				{metricJobsFailedInWindow, "2x30"},
				{metricJobFailureRatio, "0.5x30"},
				{metricJobFailureMinJobs, "3x30"},
			},
			AlertRuleTest: []alertCheck{
				check("4m", alert.JobFailureRateHigh),
				check("5m", alert.JobFailureRateHigh, warning("66.67%")),
			},
		},
		{
			Name: "job failure ratio: fires at the ratio, quiet below it",
			InputSeries: []series{
				{metricJobsInWindow, "4x20"},
				{metricJobsFailedInWindow, "2x10 1x10"},
				{metricJobFailureRatio, "0.5x20"},
				{metricJobFailureMinJobs, "1x20"},
			},
			AlertRuleTest: []alertCheck{
				check("10m", alert.JobFailureRateHigh, warning("50%")),
				check("20m", alert.JobFailureRateHigh),
			},
		},
		{
			Name: "job failure ratio: below minJobs quiet, until minJobs is lowered",
			InputSeries: []series{
				{metricJobsInWindow, "3x30"},
				{metricJobsFailedInWindow, "3x30"},
				{metricJobFailureRatio, "0.5x30"},
				{metricJobFailureMinJobs, "4x10 3x20"},
			},
			AlertRuleTest: []alertCheck{
				check("10m", alert.JobFailureRateHigh),
				check("20m", alert.JobFailureRateHigh, warning("100%")),
			},
		},
		{
			Name: "job failure ratio: no jobs, no alert",
			InputSeries: []series{
				{metricJobsInWindow, "0x30"},
				{metricJobsFailedInWindow, "0x30"},
				{metricJobFailureRatio, "0.5x30"},
				{metricJobFailureMinJobs, "0x30"},
			},
			AlertRuleTest: []alertCheck{check("20m", alert.JobFailureRateHigh)},
		},
		{
			Name: "issuance failures: more than the count fires; lowering the count fires",
			InputSeries: []series{
				{metricIssuanceFailuresWin, "3x30"},
				{metricIssuanceFailures, "3x15 2x15"},
			},
			AlertRuleTest: []alertCheck{
				check("10m", alert.IssuanceFailures),
				check("25m", alert.IssuanceFailures, warning("3")),
			},
		},
		{
			// Replica a counts a refusal at 10m; replica b's series stays flat.
			Name: "host policy refused: fires on a refusal, clears after the window",
			InputSeries: []series{
				{metricDeploymentFailures + `{stage="policy",instance="a"}`, "0x10 1x80"},
				{metricDeploymentFailures + `{stage="policy",instance="b"}`, "0x90"},
				{metricDeploymentFailures + `{stage="reload",instance="a"}`, "0+1x90"},
			},
			AlertRuleTest: []alertCheck{
				check("9m", alert.HostPolicyRefused),
				check("12m", alert.HostPolicyRefused, warning("")),
				check("60m", alert.HostPolicyRefused),
			},
		},
		{
			// a: mismatched since 10m (replica b says 15m: the earliest
			// wins); b: mismatched from 10m to 30m, then served right.
			Name: "served mismatch: fires once it lasted the threshold, after for: 5m",
			InputSeries: []series{
				{metricServedMismatchSince + `{certificate="a",instance="a"}`, "600x60"},
				{metricServedMismatchSince + `{certificate="a",instance="b"}`, "900x60"},
				{metricServedMismatchSince + `{certificate="b"}`, "600x20 _x40"},
				{metricServedMismatch, "1800x60"},
			},
			AlertRuleTest: []alertCheck{
				check("39m", alert.ServedCertificateMismatch),
				check("44m", alert.ServedCertificateMismatch), // pending since 40m
				check("45m", alert.ServedCertificateMismatch, warning("35m 0s", "certificate", "a")),
			},
		},
		{
			// a: revoked at 10m (replica b says 12m: the earliest wins),
			// still in use; b: revoked at 10m, replaced at 20m.
			Name: "revoked certificate in use: fires 15m after the revocation, after for: 1m; replacing it resolves",
			InputSeries: []series{
				{metricRevokedInUseSince + `{certificate="a",instance="a"}`, "600x60"},
				{metricRevokedInUseSince + `{certificate="a",instance="b"}`, "720x60"},
				{metricRevokedInUseSince + `{certificate="b"}`, "600x10 _x50"},
			},
			AlertRuleTest: []alertCheck{
				check("24m", alert.RevokedCertificateInUse),
				check("25m", alert.RevokedCertificateInUse), // pending since 25m
				check("26m", alert.RevokedCertificateInUse, critical("16m 0s", "certificate", "a")),
			},
		},
		{
			Name: "served mismatch: a lower threshold fires, a cleared mismatch resolves",
			InputSeries: []series{
				{metricServedMismatchSince + `{certificate="a"}`, "600x40 _x20"},
				{metricServedMismatch, "3600x20 600x40"},
			},
			AlertRuleTest: []alertCheck{
				check("19m", alert.ServedCertificateMismatch),
				check("25m", alert.ServedCertificateMismatch), // pending since 21m
				check("26m", alert.ServedCertificateMismatch, warning("16m 0s", "certificate", "a")),
				check("45m", alert.ServedCertificateMismatch),
			},
		},
		{
			// What is served for a lives 1h (0 to 3600 s): 60% of its
			// lifetime is left at 24m, 25% at 45m. What is installed (the
			// certops_certificate_* series) is fine and changes nothing.
			Name: "served certificate expiring: fraction of lifetime, critical replaces warning",
			InputSeries: []series{
				{metricServedNotBefore + `{certificate="a"}`, "0x60"},
				{metricServedExpiration + `{certificate="a"}`, "3600x60"},
				{`certops_certificate_not_before_timestamp_seconds{certificate="a"}`, "1800x60"},
				{`certops_certificate_expiration_timestamp_seconds{certificate="a"}`, "1000000x60"},
				{metricServedNotBefore + `{certificate="long"}`, "0x60"},
				{metricServedExpiration + `{certificate="long"}`, "1000000x60"},
				{metricExpiryRatio + `{severity="warning"}`, "0.6x60"},
				{metricExpiryRatio + `{severity="critical"}`, "0.25x60"},
			},
			AlertRuleTest: []alertCheck{
				check("23m", alert.ServedCertificateExpiringSoon),
				check("38m", alert.ServedCertificateExpiringSoon), // pending since 24m
				check("39m", alert.ServedCertificateExpiringSoon, warning("21m 0s", "certificate", "a")),
				check("39m", alert.CertificateExpiringSoon),
				check("49m", alert.ServedCertificateExpiringSoon), // critical pending, warning suppressed
				check("50m", alert.ServedCertificateExpiringSoon, critical("10m 0s", "certificate", "a")),
			},
		},
		{
			Name: "served certificate expiring: time left",
			InputSeries: []series{
				{metricServedExpiration + `{certificate="b"}`, "1000000x60"},
				{metricExpirySeconds + `{severity="warning"}`, "998800x60"},
			},
			AlertRuleTest: []alertCheck{
				check("19m", alert.ServedCertificateExpiringSoon),
				check("35m", alert.ServedCertificateExpiringSoon, warning("11d 13h 11m 40s", "certificate", "b")),
			},
		},
		{
			// ca ends at 2h and issues 1h certificates: from 60m on, a new
			// one would outlive it. far outlasts its certificates; acme has
			// no CA series.
			Name: "issuer expiring: the CA ends before the longest certificate would",
			InputSeries: []series{
				{metricIssuerCAExpiration + `{issuer="ca",instance="a"}`, "7200x120"},
				{metricIssuerCAExpiration + `{issuer="ca",instance="b"}`, "7200x120"},
				{metricIssuerLongest + `{issuer="ca"}`, "3600x120"},
				{metricIssuerCAExpiration + `{issuer="far"}`, "1000000x120"},
				{metricIssuerLongest + `{issuer="far"}`, "3600x120"},
				{metricIssuerLongest + `{issuer="acme"}`, "7776000x120"},
			},
			AlertRuleTest: []alertCheck{
				check("60m", alert.IssuerExpiringSoon),
				check("75m", alert.IssuerExpiringSoon), // pending since 61m
				check("76m", alert.IssuerExpiringSoon, warning("44m 0s", "issuer", "ca")),
			},
		},
		{
			Name: "issuer expiring: a longer certificate duration pushed fires",
			InputSeries: []series{
				{metricIssuerCAExpiration + `{issuer="ca"}`, "100000x60"},
				{metricIssuerLongest + `{issuer="ca"}`, "3600x20 200000x40"},
			},
			AlertRuleTest: []alertCheck{
				check("20m", alert.IssuerExpiringSoon),
				check("40m", alert.IssuerExpiringSoon, warning("1d 3h 6m 40s", "issuer", "ca")),
			},
		},
		{
			Name: "reconcile stalled: not Ready since 10m, threshold 30m",
			InputSeries: []series{
				{metricNotReadySince, "0x10 600x40 0x10"},
				{metricReconcileStalled, "1800x60"},
			},
			AlertRuleTest: []alertCheck{
				check("5m", alert.ReconcileStalled),
				check("40m", alert.ReconcileStalled), // pending
				check("41m", alert.ReconcileStalled, warning("31m 0s")),
				check("55m", alert.ReconcileStalled), // Ready again
			},
		},
		{
			Name: "reconcile stalled: a lower threshold fires",
			InputSeries: []series{
				{metricNotReadySince, "600x60"},
				{metricReconcileStalled, "3600x30 600x30"},
			},
			AlertRuleTest: []alertCheck{
				check("30m", alert.ReconcileStalled),
				check("35m", alert.ReconcileStalled, warning("25m 0s")),
			},
		},
		{
			Name: "source stale: fetches stop at 20m, threshold 15m",
			InputSeries: []series{
				{metricSourceLastOK, "0+60x20 1200x40"},
				{metricSourceLastOK + `{instance="follower"}`, "0x60"},
				{metricSourceStale, "900x60"},
			},
			AlertRuleTest: []alertCheck{
				check("20m", alert.SourceStale),
				check("39m", alert.SourceStale), // pending since 35m
				check("40m", alert.SourceStale, warning("20m 0s")),
			},
		},
		{
			Name: "source stale: a lower threshold fires",
			InputSeries: []series{
				{metricSourceLastOK, "0+60x20 1200x40"},
				{metricSourceStale, "3600x40 600x20"},
			},
			AlertRuleTest: []alertCheck{
				check("40m", alert.SourceStale),
				check("50m", alert.SourceStale, warning("30m 0s")),
			},
		},
		{
			Name: "backup too old: at the threshold, only with a BackupPolicy",
			InputSeries: []series{
				{metricBackupLastOK, "0x60"},
				{metricObjects + backupPolicySelector, "1x50 0x10"},
				{metricBackupAge, "1800x60"},
			},
			AlertRuleTest: []alertCheck{
				check("44m", alert.BackupTooOld), // pending since 30m
				check("45m", alert.BackupTooOld, warning("45m 0s")),
				check("60m", alert.BackupTooOld),
			},
		},
		{
			Name: "backup too old: a lower threshold fires",
			InputSeries: []series{
				{metricBackupLastOK, "600x60"},
				{metricObjects + backupPolicySelector, "1x60"},
				{metricBackupAge, "7200x30 600x30"},
			},
			AlertRuleTest: []alertCheck{
				check("30m", alert.BackupTooOld),
				check("50m", alert.BackupTooOld, warning("40m 0s")),
			},
		},
		{
			Name: "backup too old: never backed up",
			InputSeries: []series{
				{metricObjects + backupPolicySelector, "1x60"},
				{metricBackupAge, "600x60"},
			},
			AlertRuleTest: []alertCheck{
				check("24m", alert.BackupTooOld),
				check("30m", alert.BackupTooOld, warning("30m 0s")),
			},
		},
	}
	for i := range groups {
		groups[i].Interval = "1m"
	}
	dir := t.TempDir()
	rulePath := filepath.Join(dir, "certops.rules.yaml")
	if err := os.WriteFile(rulePath, rules, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := yaml.Marshal(unitTests{RuleFiles: []string{rulePath}, EvaluationInterval: "1m", Tests: groups})
	if err != nil {
		t.Fatal(err)
	}
	testPath := filepath.Join(dir, "certops.rules.test.yaml")
	if err := os.WriteFile(testPath, tests, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := testkit.GoTool(t, nil, "promtool", "test", "rules", testPath); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, got)
	}
}
