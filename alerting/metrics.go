package alerting

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
)

// Threshold gauge names: what the rules of Rules compare against.
const (
	metricExpirySeconds       = "certops_alert_threshold_certificate_expiry_seconds"
	metricExpiryRatio         = "certops_alert_threshold_certificate_expiry_ratio"
	metricRenewalOverdue      = "certops_alert_threshold_renewal_overdue_seconds"
	metricAgentOffline        = "certops_alert_threshold_agent_offline_seconds"
	metricJobFailureRatio     = "certops_alert_threshold_job_failure_ratio"
	metricJobFailureMinJobs   = "certops_alert_threshold_job_failure_min_jobs"
	metricJobFailureWindow    = "certops_alert_threshold_job_failure_window_seconds"
	metricIssuanceFailures    = "certops_alert_threshold_issuance_failures"
	metricIssuanceWindow      = "certops_alert_threshold_issuance_failure_window_seconds"
	metricReconcileStalled    = "certops_alert_threshold_reconcile_stalled_seconds"
	metricSourceStale         = "certops_alert_threshold_source_stale_seconds"
	metricBackupAge           = "certops_alert_threshold_backup_age_seconds"
	metricServedMismatch      = "certops_alert_threshold_served_mismatch_seconds"
	metricAgentLastSeen       = "certops_agent_last_seen_timestamp_seconds"
	metricJobsInWindow        = "certops_jobs_in_window"
	metricJobsFailedInWindow  = "certops_jobs_failed_in_window"
	metricIssuanceFailuresWin = "certops_issuance_failures_in_window"
	metricNotReadySince       = "certops_reconcile_not_ready_since_timestamp_seconds"
	// Served checks (from Postgres) and issuer CAs.
	metricServedMismatchSince = "certops_served_certificate_mismatch_since_timestamp_seconds"
	metricRevokedInUseSince   = "certops_revoked_certificate_in_use_since_timestamp_seconds"
	metricServedExpiration    = "certops_served_certificate_expiration_timestamp_seconds"
	metricServedNotBefore     = "certops_served_certificate_not_before_timestamp_seconds"
	metricIssuerCAExpiration  = "certops_issuer_ca_expiration_timestamp_seconds"
	metricIssuerLongest       = "certops_issuer_longest_certificate_duration_seconds"
	// Of package agentapi: failed deployment reports by stage.
	metricDeploymentFailures = "certops_deployment_failures_total"
)

// Metrics the rules read that other packages export.
const (
	metricExpiration     = "certops_certificate_expiration_timestamp_seconds" // agentapi
	metricNotBefore      = "certops_certificate_not_before_timestamp_seconds" // agentapi
	metricRenewal        = "certops_certificate_renewal_timestamp_seconds"    // agentapi
	metricSourceLastOK   = "certops_source_last_success_timestamp_seconds"    // reconcile
	metricObjects        = "certops_objects"                                  // reconcile
	metricBackupLastOK   = "certops_backup_last_success_timestamp_seconds"    // backup
	labelSeverity        = "severity"
	labelCertificate     = "certificate"
	labelAgent           = "agent"
	labelIssuer          = "issuer"
	backupPolicySelector = `{kind="BackupPolicy"}`
)

// ThresholdMetrics exports the thresholds of the AlertPolicy as gauges.
type ThresholdMetrics struct {
	expirySeconds, expiryRatio *prometheus.GaugeVec
	renewalOverdue             prometheus.Gauge
	agentOffline               prometheus.Gauge
	jobFailureRatio            prometheus.Gauge
	jobFailureMinJobs          prometheus.Gauge
	jobFailureWindow           prometheus.Gauge
	issuanceFailures           prometheus.Gauge
	issuanceWindow             prometheus.Gauge
	reconcileStalled           prometheus.Gauge
	sourceStale                prometheus.Gauge
	backupAge                  prometheus.Gauge
	servedMismatch             prometheus.Gauge
}

// NewThresholdMetrics creates the threshold gauges, registers them with reg
// and sets them to the defaults (see Defaults), so the rules work before
// the first policy is read.
func NewThresholdMetrics(reg prometheus.Registerer) *ThresholdMetrics {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m := &ThresholdMetrics{
		expirySeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricExpirySeconds,
			Help: "AlertPolicy certificateExpiring.<severity>.remaining: alert when a certificate has this little time left (absent: trigger off).",
		}, []string{labelSeverity}),
		expiryRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricExpiryRatio,
			Help: "AlertPolicy certificateExpiring.<severity>.remainingFraction: alert when a certificate has this fraction of its lifetime left (absent: trigger off).",
		}, []string{labelSeverity}),
		renewalOverdue:    gauge(metricRenewalOverdue, "AlertPolicy renewalOverdueAfter: alert when a certificate is this long past its renewal time."),
		agentOffline:      gauge(metricAgentOffline, "AlertPolicy agentOfflineAfter: alert when an agent has not been seen for this long."),
		jobFailureRatio:   gauge(metricJobFailureRatio, "AlertPolicy jobFailureRatio.ratio: alert when this fraction of the jobs in the window failed."),
		jobFailureMinJobs: gauge(metricJobFailureMinJobs, "AlertPolicy jobFailureRatio.minJobs: the job failure ratio alerts only with at least this many jobs in the window."),
		jobFailureWindow:  gauge(metricJobFailureWindow, "AlertPolicy jobFailureRatio.window: the window of certops_jobs_in_window and certops_jobs_failed_in_window."),
		issuanceFailures:  gauge(metricIssuanceFailures, "AlertPolicy issuanceFailures.count: alert when more issuance failures than this happen within the window."),
		issuanceWindow:    gauge(metricIssuanceWindow, "AlertPolicy issuanceFailures.window: the window of certops_issuance_failures_in_window."),
		reconcileStalled:  gauge(metricReconcileStalled, "AlertPolicy reconcileStalledAfter: alert when the reconciler has not been Ready for this long."),
		sourceStale:       gauge(metricSourceStale, "AlertPolicy sourceStaleAfter: alert when no fetch of the config repository succeeded for this long."),
		backupAge:         gauge(metricBackupAge, "AlertPolicy backupTooOldAfter: alert when the last successful backup is this old."),
		servedMismatch:    gauge(metricServedMismatch, "AlertPolicy servedMismatchAfter: alert when a service has served another certificate than the one installed for this long."),
	}
	reg.MustRegister(m.expirySeconds, m.expiryRatio, m.renewalOverdue, m.agentOffline, m.jobFailureRatio,
		m.jobFailureMinJobs, m.jobFailureWindow, m.issuanceFailures, m.issuanceWindow, m.reconcileStalled,
		m.sourceStale, m.backupAge, m.servedMismatch)
	m.Set(nil)
	return m
}

// Set exports the thresholds of policy; nil exports the defaults (see
// Defaults and Resolve).
func (m *ThresholdMetrics) Set(policy *spec.AlertPolicySpec) { m.set(Resolve(policy)) }

func (m *ThresholdMetrics) set(t Thresholds) {
	for _, sev := range []alert.Severity{alert.Warning, alert.Critical} {
		e := t.Expiry(sev)
		setOrDelete(m.expirySeconds, string(sev), e.Remaining.Seconds())
		setOrDelete(m.expiryRatio, string(sev), e.RemainingFraction)
	}
	m.renewalOverdue.Set(t.RenewalOverdue.Seconds())
	m.agentOffline.Set(t.AgentOffline.Seconds())
	m.jobFailureRatio.Set(t.JobFailureRatio)
	m.jobFailureMinJobs.Set(float64(t.JobFailureMinJobs))
	m.jobFailureWindow.Set(t.JobFailureWindow.Seconds())
	m.issuanceFailures.Set(float64(t.IssuanceFailures))
	m.issuanceWindow.Set(t.IssuanceFailureWindow.Seconds())
	m.reconcileStalled.Set(t.ReconcileStalled.Seconds())
	m.sourceStale.Set(t.SourceStale.Seconds())
	m.backupAge.Set(t.BackupTooOld.Seconds())
	m.servedMismatch.Set(t.ServedMismatch.Seconds())
}

// setOrDelete sets the series of a trigger, or removes it when the trigger
// is off (0): an absent threshold matches nothing in the rules.
func setOrDelete(v *prometheus.GaugeVec, severity string, value float64) {
	if value <= 0 {
		v.DeleteLabelValues(severity)
		return
	}
	v.WithLabelValues(severity).Set(value)
}

// FactMetrics exports the facts the rules need that no other package
// exports, computed by Gather from Postgres. They are the same on every
// replica, so the rules aggregate them with max(). The gauges are made at
// scrape time from the last Set, so a scrape never sees half an update and
// a deleted agent leaves no stale series behind.
type FactMetrics struct {
	last           atomic.Pointer[Input]
	perCertificate bool // export the served expiry series of every certificate

	agentLastSeen, jobs, jobsFailed, issuanceFailures, notReadySince *prometheus.Desc
	servedMismatchSince, servedExpiration, servedNotBefore           *prometheus.Desc
	issuerCAExpiration, issuerLongest                                *prometheus.Desc
	revokedInUseSince                                                *prometheus.Desc
}

// NewFactMetrics creates the fact gauges and registers them with reg. They
// are absent until the first Set.
//
// Their cardinality is bounded by the desired state: one series per agent,
// per issuer named by certificates, per certificate with a served
// mismatch or a revoked serial in use, and per certificate whose served certificate was seen (the
// last two unless turned off, see MonitorOptions.NoPerCertificateSeries).
func NewFactMetrics(reg prometheus.Registerer) *FactMetrics {
	m := &FactMetrics{
		perCertificate: true,
		servedMismatchSince: prometheus.NewDesc(metricServedMismatchSince,
			"Since when an agent's service has served another certificate than the one installed (Unix time), the earliest over the certificate's agents; absent while none does.",
			[]string{labelCertificate}, nil),
		servedExpiration: prometheus.NewDesc(metricServedExpiration,
			"Expiry of the served certificate (the agents' served checks of deploy.verify.address) that expires first (Unix time).",
			[]string{labelCertificate}, nil),
		servedNotBefore: prometheus.NewDesc(metricServedNotBefore,
			"Start of validity of the served certificate that expires first (Unix time).",
			[]string{labelCertificate}, nil),
		revokedInUseSince: prometheus.NewDesc(metricRevokedInUseSince,
			"When the earliest revoked serial (a Revocation from Git) that an agent still has installed or its service still serves was revoked (Unix time); absent while none is.",
			[]string{labelCertificate}, nil),
		issuerCAExpiration: prometheus.NewDesc(metricIssuerCAExpiration,
			"When the CA certificate of a localCA issuer ends (Unix time), as loaded by this replica.",
			[]string{labelIssuer}, nil),
		issuerLongest: prometheus.NewDesc(metricIssuerLongest,
			"The longest spec.duration of the certificates naming the issuer.",
			[]string{labelIssuer}, nil),
		agentLastSeen: prometheus.NewDesc(metricAgentLastSeen,
			"When the agent was last heard of by any replica (Unix time); for an agent never seen, when it was added to the desired state.",
			[]string{labelAgent}, nil),
		jobs: prometheus.NewDesc(metricJobsInWindow,
			"Deployments (a certificate on an agent) whose latest issue or deploy attempt falls within the AlertPolicy's jobFailureRatio.window.",
			nil, nil),
		jobsFailed: prometheus.NewDesc(metricJobsFailedInWindow,
			"Of certops_jobs_in_window, those whose latest attempt failed (issue-failed, failed, rolled-back).",
			nil, nil),
		issuanceFailures: prometheus.NewDesc(metricIssuanceFailuresWin,
			"Deployments whose latest issue attempt failed within the AlertPolicy's issuanceFailures.window.",
			nil, nil),
		notReadySince: prometheus.NewDesc(metricNotReadySince,
			"Since when the reconciler's Ready condition has been False (Unix time); 0 while Ready.",
			nil, nil),
	}
	reg.MustRegister(m)
	return m
}

// Set makes the gauges show the facts of in.
func (m *FactMetrics) Set(in Input) { m.last.Store(&in) }

// Describe implements prometheus.Collector.
func (m *FactMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.agentLastSeen, m.jobs, m.jobsFailed, m.issuanceFailures, m.notReadySince,
		m.servedMismatchSince, m.servedExpiration, m.servedNotBefore, m.issuerCAExpiration, m.issuerLongest, m.revokedInUseSince} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *FactMetrics) Collect(ch chan<- prometheus.Metric) {
	in := m.last.Load()
	if in == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, a := range in.Agents {
		gauge(m.agentLastSeen, unix(a.lastHeard()), a.Name)
	}
	gauge(m.jobs, float64(in.Jobs.Total))
	gauge(m.jobsFailed, float64(in.Jobs.Failed))
	gauge(m.issuanceFailures, float64(in.IssuanceFailures))
	gauge(m.notReadySince, unix(in.Reconcile.NotReadySince))
	for _, c := range in.Certificates {
		if !c.ServedMismatchSince.IsZero() {
			gauge(m.servedMismatchSince, unix(c.ServedMismatchSince), c.Name)
		}
		if !c.RevokedInUseSince.IsZero() {
			gauge(m.revokedInUseSince, unix(c.RevokedInUseSince), c.Name)
		}
		if m.perCertificate && !c.ServedNotAfter.IsZero() {
			gauge(m.servedExpiration, unix(c.ServedNotAfter), c.Name)
			gauge(m.servedNotBefore, unix(c.ServedNotBefore), c.Name)
		}
	}
	for _, is := range in.Issuers {
		gauge(m.issuerLongest, is.LongestDuration.Seconds(), is.Name)
		if !is.CANotAfter.IsZero() {
			gauge(m.issuerCAExpiration, unix(is.CANotAfter), is.Name)
		}
	}
}

// unix is t in Unix seconds, 0 for the zero time.
func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
