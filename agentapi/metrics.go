package agentapi

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/agentproto"
)

// Metrics are the agent API's Prometheus metrics. Labels only carry names
// from the desired state and fixed values, so cardinality is bounded by the
// fleet's size (and, with per-certificate series off, by constants).
type Metrics struct {
	issuance          *prometheus.CounterVec
	issuanceDuration  *prometheus.HistogramVec
	deployments       *prometheus.CounterVec
	deploymentFailure *prometheus.CounterVec
	rollbacks         prometheus.Counter
	rateLimitWaits    *prometheus.CounterVec
}

// NewMetrics registers the counters and histograms with reg (nil: a
// private registry); the gauges are the StateCollector's.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		issuance: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certops_issuance_total",
			Help: "Issue requests by issuer and result (success, rejected: CSR does not match the spec, failure: the issuer failed, error: not stored).",
		}, []string{"issuer", "result"}),
		issuanceDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "certops_issuance_duration_seconds",
			Help:    "Time the issuer took to sign, by issuer.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"issuer"}),
		deployments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certops_deployments_total",
			Help: "Deployment attempts reported by agents, by result (installed, failed, rolled-back).",
		}, []string{"result"}),
		deploymentFailure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certops_deployment_failures_total",
			Help: "Failed deployment attempts reported by agents, by the stage that failed (policy, install, reload, verify).",
		}, []string{"stage"}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "certops_rollbacks_total",
			Help: "Deployments rolled back to the previous files after a failed reload or verification.",
		}),
		rateLimitWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certops_acme_rate_limit_waits_total",
			Help: "ACME orders held back because they would exceed the issuer's certificates per name set per week, by issuer.",
		}, []string{"issuer"}),
	}
	for _, r := range []string{agentproto.ResultInstalled, agentproto.ResultFailed, agentproto.ResultRolledBack} {
		m.deployments.WithLabelValues(r)
	}
	for _, st := range []string{agentproto.StagePolicy, agentproto.StageInstall, agentproto.StageReload, agentproto.StageVerify} {
		m.deploymentFailure.WithLabelValues(st)
	}
	reg.MustRegister(m.issuance, m.issuanceDuration, m.deployments, m.deploymentFailure, m.rollbacks, m.rateLimitWaits)
	return m
}

// report counts an agent's report.
func (m *Metrics) report(rep agentproto.Report) {
	m.deployments.WithLabelValues(rep.Result).Inc()
	if rep.Result == agentproto.ResultInstalled {
		return
	}
	switch rep.Stage {
	case agentproto.StagePolicy, agentproto.StageInstall, agentproto.StageReload, agentproto.StageVerify:
		m.deploymentFailure.WithLabelValues(rep.Stage).Inc()
	}
	if rep.Result == agentproto.ResultRolledBack {
		m.rollbacks.Inc()
	}
}

// StateCollector computes the certificate and agent gauges from the
// Snapshot and Presence at scrape time, so a deleted certificate or agent
// leaves no stale series behind.
type StateCollector struct {
	perCertificate bool
	snapshot       *Snapshot
	presence       *Presence

	expiration, notBefore  *prometheus.Desc
	renewal, ready         *prometheus.Desc
	certificates, earliest *prometheus.Desc
	agents                 *prometheus.Desc
}

// NewStateCollector returns the collector of the gauges; register it.
// perCertificate enables the per-certificate series
// (certops_certificate_{expiration,not_before,renewal}_timestamp_seconds and
// certops_certificate_ready); for very large fleets turn it off to export
// only the aggregates certops_certificates{state} and
// certops_certificate_expiration_earliest_timestamp_seconds.
func NewStateCollector(snapshot *Snapshot, presence *Presence, perCertificate bool) *StateCollector {
	return &StateCollector{
		perCertificate: perCertificate, snapshot: snapshot, presence: presence,
		expiration: prometheus.NewDesc("certops_certificate_expiration_timestamp_seconds",
			"Earliest expiry of the certificate as installed on its agents (Unix time).", []string{"certificate"}, nil),
		notBefore: prometheus.NewDesc("certops_certificate_not_before_timestamp_seconds",
			"Start of validity of the installed certificate that expires first (Unix time).", []string{"certificate"}, nil),
		renewal: prometheus.NewDesc("certops_certificate_renewal_timestamp_seconds",
			"Earliest time an agent of the certificate is due to renew it (Unix time).", []string{"certificate"}, nil),
		ready: prometheus.NewDesc("certops_certificate_ready",
			"1 when every agent of the certificate has a valid certificate for its current spec installed.", []string{"certificate"}, nil),
		certificates: prometheus.NewDesc("certops_certificates",
			"Certificates by readiness (ready, not_ready).", []string{"state"}, nil),
		earliest: prometheus.NewDesc("certops_certificate_expiration_earliest_timestamp_seconds",
			"Earliest expiry of any installed certificate (Unix time).", nil, nil),
		agents: prometheus.NewDesc("certops_agents",
			"Agents in the desired state by liveness (online, offline).", []string{"state"}, nil),
	}
}

func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.perCertificate {
		ch <- c.expiration
		ch <- c.notBefore
		ch <- c.renewal
		ch <- c.ready
	}
	ch <- c.certificates
	ch <- c.earliest
	ch <- c.agents
}

func (c *StateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot
	if s.Ready() != nil {
		return
	}
	now := s.now()
	var ready, notReady int
	var earliest time.Time
	for _, st := range s.certificateStates(now) {
		if st.Ready {
			ready++
		} else {
			notReady++
		}
		if !st.Expiration.IsZero() && (earliest.IsZero() || st.Expiration.Before(earliest)) {
			earliest = st.Expiration
		}
		if !c.perCertificate {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, boolValue(st.Ready), st.Name)
		if !st.Expiration.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.expiration, prometheus.GaugeValue, unix(st.Expiration), st.Name)
		}
		if !st.NotBefore.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.notBefore, prometheus.GaugeValue, unix(st.NotBefore), st.Name)
		}
		if !st.Renewal.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.renewal, prometheus.GaugeValue, unix(st.Renewal), st.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.certificates, prometheus.GaugeValue, float64(ready), "ready")
	ch <- prometheus.MustNewConstMetric(c.certificates, prometheus.GaugeValue, float64(notReady), "not_ready")
	if !earliest.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.earliest, prometheus.GaugeValue, unix(earliest))
	}
	online, offline := c.presence.counts(s.agentNames(), now)
	ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue, float64(online), "online")
	ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue, float64(offline), "offline")
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
