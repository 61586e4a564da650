package alerting

import (
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/certops/certops/alert"
)

// DefaultRunbookBaseURL is where the runbooks (docs/runbooks/alert-*.md)
// are published; the runbook_url of each alert is this plus its file name.
const DefaultRunbookBaseURL = "https://github.com/certops/certops/blob/main/docs/runbooks/"

// RuleGroups is a Prometheus rule file: the shape of both `promtool check
// rules` input and a PrometheusRule's spec.
type RuleGroups struct {
	Groups []RuleGroup `json:"groups"`
}

// RuleGroup is one group of rules, evaluated in order.
type RuleGroup struct {
	Name  string `json:"name"`
	Rules []Rule `json:"rules"`
}

// Rule is a recording rule (Record) or an alerting rule (Alert).
type Rule struct {
	Record      string            `json:"record,omitempty"`
	Alert       string            `json:"alert,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Rules returns certops' recording and alerting rules, with runbook links
// under DefaultRunbookBaseURL. They are the same for every AlertPolicy:
// each rule compares a metric with a certops_alert_threshold_* gauge, so the
// thresholds in Git take effect without reloading Prometheus.
//
// The rules aggregate across the reconciler's replicas (min/max without
// instance labels), so they assume one certops installation per Prometheus
// (or per rule evaluation scope).
func Rules() RuleGroups { return RulesWithRunbooks(DefaultRunbookBaseURL) }

// RulesWithRunbooks is Rules with the runbooks published under base.
func RulesWithRunbooks(base string) RuleGroups {
	if base != "" && !strings.HasSuffix(base, "/") {
		base += "/"
	}
	rules := expiryRecords()
	for _, a := range alertRules() {
		a.Annotations["runbook_url"] = base + RunbookFile(a.Alert)
		rules = append(rules, a)
	}
	return RuleGroups{Groups: []RuleGroup{{Name: "certops", Rules: rules}}}
}

// RunbookFile is the runbook of an alert: CertopsAgentOffline →
// alert-agent-offline.md.
func RunbookFile(alertName string) string {
	var b strings.Builder
	b.WriteString("alert")
	for _, r := range strings.TrimPrefix(alertName, "Certops") {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('-')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String() + ".md"
}

// Recording rules of certificate expiry. certops:certificate_expiring is
// the time left (seconds) of each certificate that has reached a
// severity's threshold, labelled with that severity. The served_ records
// are the same for what the services serve (the agents' served checks).
const (
	recordRemainingSeconds       = "certops:certificate_expiry_remaining_seconds"
	recordRemainingRatio         = "certops:certificate_expiry_remaining_ratio"
	recordExpiring               = "certops:certificate_expiring"
	recordServedRemainingSeconds = "certops:served_certificate_expiry_remaining_seconds"
	recordServedRemainingRatio   = "certops:served_certificate_expiry_remaining_ratio"
	recordServedExpiring         = "certops:served_certificate_expiring"
)

func expiryRecords() []Rule {
	return append(expiryRecordsOf(recordRemainingSeconds, recordRemainingRatio, recordExpiring, metricExpiration, metricNotBefore),
		expiryRecordsOf(recordServedRemainingSeconds, recordServedRemainingRatio, recordServedExpiring, metricServedExpiration, metricServedNotBefore)...)
}

// expiryRecordsOf are the records of time left (remaining), fraction of
// lifetime left (ratio) and reaching a certificateExpiring threshold
// (expiring) of the certificates whose validity the metrics notAfter and
// notBefore give.
func expiryRecordsOf(remaining, ratio, expiring, notAfter, notBefore string) []Rule {
	rules := []Rule{
		{Record: remaining, Expr: fmt.Sprintf("min by (certificate) (%s) - time()", notAfter)},
		{Record: ratio, Expr: fmt.Sprintf(`min by (certificate) (
  (%[1]s - time())
  /
  ((%[1]s - %[2]s) > 0)
)`, notAfter, notBefore)},
	}
	for _, sev := range []alert.Severity{alert.Warning, alert.Critical} {
		rules = append(rules, Rule{
			Record: expiring,
			Expr: fmt.Sprintf(`%[1]s
  <= on() group_left() max(%[3]s{severity="%[5]s"})
or
%[1]s
  and on(certificate)
(%[2]s <= on() group_left() max(%[4]s{severity="%[5]s"}))`,
				remaining, ratio, metricExpirySeconds, metricExpiryRatio, sev),
			Labels: map[string]string{labelSeverity: string(sev)},
		})
	}
	return rules
}

// alertRules are the alerting rules, without their runbook links. The
// `for` durations only ride out scrape gaps and flapping: each threshold
// already says how long a condition must last.
func alertRules() []Rule {
	threshold := func(metric string) string { return "on() group_left() max(" + metric + ")" }
	return []Rule{
		{
			Alert:  alert.CertificateExpiringSoon,
			Expr:   fmt.Sprintf(`%[1]s{severity="warning"} unless on(certificate) %[1]s{severity="critical"}`, recordExpiring),
			For:    "15m",
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "Certificate {{ $labels.certificate }} expires soon",
				"description": "Certificate {{ $labels.certificate }} expires in {{ $value | humanizeDuration }}: below the warning threshold (AlertPolicy spec.certificateExpiring.warning: remaining or remainingFraction of its lifetime).",
			},
		},
		{
			Alert:  alert.CertificateExpiringSoon,
			Expr:   recordExpiring + `{severity="critical"}`,
			For:    "5m",
			Labels: map[string]string{labelSeverity: string(alert.Critical)},
			Annotations: map[string]string{
				"summary":     "Certificate {{ $labels.certificate }} expires very soon",
				"description": "Certificate {{ $labels.certificate }} expires in {{ $value | humanizeDuration }} (negative: expired): below the critical threshold (AlertPolicy spec.certificateExpiring.critical: remaining or remainingFraction of its lifetime).",
			},
		},
		{
			Alert: alert.CertificateRenewalOverdue,
			Expr: fmt.Sprintf("time() - min by (certificate) (%s)\n  >= %s",
				metricRenewal, threshold(metricRenewalOverdue)),
			For:    "10m",
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "Certificate {{ $labels.certificate }} was not renewed",
				"description": "Certificate {{ $labels.certificate }} was due for renewal {{ $value | humanizeDuration }} ago (threshold: AlertPolicy spec.renewalOverdueAfter).",
			},
		},
		{
			Alert: alert.AgentOffline,
			Expr: fmt.Sprintf("time() - max by (agent) (%s)\n  >= %s",
				metricAgentLastSeen, threshold(metricAgentOffline)),
			For:    "5m",
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "Agent {{ $labels.agent }} is offline",
				"description": "Agent {{ $labels.agent }} has not been heard of for {{ $value | humanizeDuration }} (threshold: AlertPolicy spec.agentOfflineAfter). Its certificates are not renewed while it is offline.",
			},
		},
		{
			// A ratio of counts over the policy's window, guarded by a
			// minimum count: it fires at any volume (2 failed of 3), unlike
			// a ratio of rates clamped to a minimum of 1/s.
			Alert: alert.JobFailureRateHigh,
			Expr: fmt.Sprintf(`(
  max(%[1]s) / max(%[2]s)
    >= on() max(%[3]s)
)
and on()
(max(%[2]s) >= on() max(%[4]s))`, metricJobsFailedInWindow, metricJobsInWindow, metricJobFailureRatio, metricJobFailureMinJobs),
			For:    "5m",
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "Certificate jobs are failing",
				"description": "{{ $value | humanizePercentage }} of the deployments attempted within the window failed (threshold: AlertPolicy spec.jobFailureRatio: ratio, window, minJobs).",
			},
		},
		{
			Alert:  alert.IssuanceFailures,
			Expr:   fmt.Sprintf("max(%s)\n  > on() max(%s)", metricIssuanceFailuresWin, metricIssuanceFailures),
			For:    "5m",
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "Certificate issuance is failing",
				"description": "{{ $value }} deployments had their latest issue attempt fail within the window (threshold: AlertPolicy spec.issuanceFailures: more than count within window).",
			},
		},
		{
			// No threshold: a refusal is a configuration error worth a look
			// whatever the AlertPolicy, and not retried faster than the
			// agent's backoff, so a window catches each one.
			Alert:  alert.HostPolicyRefused,
			Expr:   fmt.Sprintf(`sum(increase(%s{stage="policy"}[30m])) > 0`, metricDeploymentFailures),
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "An agent's host policy refused a deployment",
				"description": "Agents reported deployments refused by their host policy (HostPolicyRefused, stage policy) within 30 minutes: the config repository asks an agent to write outside its allowedDirs or run a reload not in its allowedReloads. The certificate's lastError names the agent and the rule.",
			},
		},
		{
			Alert: alert.ReconcileStalled,
			Expr: fmt.Sprintf("time() - max(%s > 0)\n  >= on() max(%s)",
				metricNotReadySince, metricReconcileStalled),
			For:    "1m",
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "The config repository is not being applied",
				"description": "The reconciler has not been Ready for {{ $value | humanizeDuration }} (threshold: AlertPolicy spec.reconcileStalledAfter): changes pushed to Git are not applied. GET /api/v1/status shows why.",
			},
		},
		{
			Alert: alert.SourceStale,
			Expr: fmt.Sprintf("time() - max(%s)\n  >= on() max(%s)",
				metricSourceLastOK, metricSourceStale),
			For:    "5m",
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "The config repository has not been fetched",
				"description": "No fetch of the config repository succeeded for {{ $value | humanizeDuration }} (threshold: AlertPolicy spec.sourceStaleAfter).",
			},
		},
		{
			Alert: alert.ServedCertificateMismatch,
			Expr: fmt.Sprintf("time() - min by (certificate) (%s)\n  >= %s",
				metricServedMismatchSince, threshold(metricServedMismatch)),
			For:    "5m",
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "Certificate {{ $labels.certificate }} is installed but not served",
				"description": "A service at the verify address of certificate {{ $labels.certificate }} has served another certificate than the one its agent installed for {{ $value | humanizeDuration }} (threshold: AlertPolicy spec.servedMismatchAfter): the renewed certificate was not loaded. GET /api/v1/certificates/{{ $labels.certificate }} shows servedSerial and servedMismatchSince per agent.",
			},
		},
		{
			// No threshold in the AlertPolicy: a revoked serial is replaced
			// at once, so one still in use past the grace is an outage.
			Alert: alert.RevokedCertificateInUse,
			Expr: fmt.Sprintf("time() - min by (certificate) (%s)\n  >= %d",
				metricRevokedInUseSince, int(alert.RevokedInUseGrace.Seconds())),
			For:    "1m",
			Labels: map[string]string{labelSeverity: string(alert.Critical)},
			Annotations: map[string]string{
				"summary":     "A revoked certificate of {{ $labels.certificate }} is still installed or served",
				"description": "A serial of certificate {{ $labels.certificate }} revoked by a Revocation in Git {{ $value | humanizeDuration }} ago is still installed by an agent or served at its verify address, although its replacement was due at once: clients that check revocation refuse it. GET /api/v1/certificates/{{ $labels.certificate }} shows revoked: true per agent.",
			},
		},
		{
			Alert:  alert.ServedCertificateExpiringSoon,
			Expr:   fmt.Sprintf(`%[1]s{severity="warning"} unless on(certificate) %[1]s{severity="critical"}`, recordServedExpiring),
			For:    "15m",
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "The certificate served for {{ $labels.certificate }} expires soon",
				"description": "The certificate a service serves for {{ $labels.certificate }} (the agents' served checks) expires in {{ $value | humanizeDuration }}: below the warning threshold (AlertPolicy spec.certificateExpiring.warning: remaining or remainingFraction of its lifetime).",
			},
		},
		{
			Alert:  alert.ServedCertificateExpiringSoon,
			Expr:   recordServedExpiring + `{severity="critical"}`,
			For:    "5m",
			Labels: map[string]string{labelSeverity: string(alert.Critical)},
			Annotations: map[string]string{
				"summary":     "The certificate served for {{ $labels.certificate }} expires very soon",
				"description": "The certificate a service serves for {{ $labels.certificate }} (the agents' served checks) expires in {{ $value | humanizeDuration }} (negative: expired): below the critical threshold (AlertPolicy spec.certificateExpiring.critical: remaining or remainingFraction of its lifetime).",
			},
		},
		{
			// A CA ending sooner than a new certificate would last: what it
			// signs now is cut short (pki signs no further than the CA's
			// own end), and once it ends nothing can be renewed.
			Alert: alert.IssuerExpiringSoon,
			Expr: fmt.Sprintf("min by (issuer) (%s) - time()\n  < max by (issuer) (%s)",
				metricIssuerCAExpiration, metricIssuerLongest),
			For:    "15m",
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "The CA of issuer {{ $labels.issuer }} expires before the certificates it signs would",
				"description": "The CA certificate of issuer {{ $labels.issuer }} ends in {{ $value | humanizeDuration }} (negative: ended), sooner than the longest certificate it issues lasts (spec.duration): certificates it signs now are cut short at the CA's end, and once it ends nothing it signs can be renewed. Rotate the CA files of the issuer.",
			},
		},
		{
			// No backup yet (0 or absent) is infinitely old; only a
			// BackupPolicy in Git makes backups expected.
			Alert: alert.BackupTooOld,
			Expr: fmt.Sprintf(`(
  time() - max(%[1]s or vector(0))
    >= on() max(%[2]s)
)
and on()
(max(%[3]s%[4]s) > 0)`, metricBackupLastOK, metricBackupAge, metricObjects, backupPolicySelector),
			For:    "15m",
			Labels: map[string]string{labelSeverity: string(alert.Warning)},
			Annotations: map[string]string{
				"summary":     "No recent database backup",
				"description": "The last successful backup is {{ $value | humanizeDuration }} old (threshold: AlertPolicy spec.backupTooOldAfter).",
			},
		},
	}
}

// RenderRuleFile renders g as a Prometheus rule file.
func RenderRuleFile(g RuleGroups) ([]byte, error) {
	out, err := yaml.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("alerting: render rules: %w", err)
	}
	return out, nil
}

// PrometheusRuleOptions name the PrometheusRule object.
type PrometheusRuleOptions struct {
	Name      string // default "certops"
	Namespace string // omitted when empty
	Labels    map[string]string
}

// PrometheusRule is a monitoring.coreos.com/v1 PrometheusRule.
type PrometheusRule struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Metadata   PrometheusRuleMeta `json:"metadata"`
	Spec       RuleGroups         `json:"spec"`
}

// PrometheusRuleMeta is the object metadata of a PrometheusRule.
type PrometheusRuleMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// RenderPrometheusRule renders g as a PrometheusRule object.
func RenderPrometheusRule(g RuleGroups, opt PrometheusRuleOptions) ([]byte, error) {
	if opt.Name == "" {
		opt.Name = "certops"
	}
	out, err := yaml.Marshal(PrometheusRule{
		APIVersion: "monitoring.coreos.com/v1",
		Kind:       "PrometheusRule",
		Metadata:   PrometheusRuleMeta(opt),
		Spec:       g,
	})
	if err != nil {
		return nil, fmt.Errorf("alerting: render PrometheusRule: %w", err)
	}
	return out, nil
}
