package agentapi

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

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
// Snapshot and Presence (not from counters kept aside), so a deleted
// certificate or agent leaves no stale series behind.
//
// The certificates are assessed once per snapshot generation (and again
// when time alone may change a value, see certificateMetrics.until), not
// at every scrape. The aggregates are Collected; the per-certificate
// families (one series per certificate each) are not: at 50,000
// certificates building 200,000 const metrics per scrape was most of a
// scrape's time and its memory peak. They are rendered as exposition text
// with the assessment, and WriteMetricsText writes that text, which
// /metrics serves after the registry's own families.
type StateCollector struct {
	perCertificate bool
	snapshot       *Snapshot
	presence       *Presence

	certificates, earliest *prometheus.Desc
	agents                 *prometheus.Desc

	mu     sync.Mutex
	cached *certificateMetrics // nil until the first scrape after the first load
}

// certificateMetrics is one assessment of every certificate.
type certificateMetrics struct {
	// gen is the snapshot generation it was computed at.
	gen uint64
	// until, when not zero, is the earliest instant a value may change
	// with time alone: the earliest expiry of a ready certificate.
	// Readiness is the only value that depends on the clock, and it goes
	// from 1 to 0 only when an installed certificate expires
	// (assign.Assess); a certificate not ready stays so as time passes.
	until           time.Time
	ready, notReady int
	earliest        time.Time
	// text is the per-certificate families in the text format (empty
	// with them off).
	text []byte
}

// NewStateCollector returns the collector of the gauges; register it, and
// serve WriteMetricsText after the registry (httpapi.Config.MetricsText).
// perCertificate enables the per-certificate series
// (certops_certificate_{expiration,not_before,renewal}_timestamp_seconds and
// certops_certificate_ready); for very large fleets turn it off to export
// only the aggregates certops_certificates{state} and
// certops_certificate_expiration_earliest_timestamp_seconds.
func NewStateCollector(snapshot *Snapshot, presence *Presence, perCertificate bool) *StateCollector {
	return &StateCollector{
		perCertificate: perCertificate, snapshot: snapshot, presence: presence,
		certificates: prometheus.NewDesc("certops_certificates",
			"Certificates by readiness (ready, not_ready).", []string{"state"}, nil),
		earliest: prometheus.NewDesc("certops_certificate_expiration_earliest_timestamp_seconds",
			"Earliest expiry of any installed certificate (Unix time).", nil, nil),
		agents: prometheus.NewDesc("certops_agents",
			"Agents in the desired state by liveness (online, offline).", []string{"state"}, nil),
	}
}

func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.certificates
	ch <- c.earliest
	ch <- c.agents
}

func (c *StateCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.current()
	if m == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.certificates, prometheus.GaugeValue, float64(m.ready), "ready")
	ch <- prometheus.MustNewConstMetric(c.certificates, prometheus.GaugeValue, float64(m.notReady), "not_ready")
	if !m.earliest.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.earliest, prometheus.GaugeValue, unix(m.earliest))
	}
	online, offline := c.presence.counts(c.snapshot.agentNames(), c.snapshot.now())
	ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue, float64(online), "online")
	ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue, float64(offline), "offline")
}

// WriteMetricsText writes the per-certificate families in the Prometheus
// text format 0.0.4 (nothing with them off or before the first load).
// They are none of the registry's, so the text may follow its output.
func (c *StateCollector) WriteMetricsText(w io.Writer) error {
	m := c.current()
	if m == nil || len(m.text) == 0 {
		return nil
	}
	_, err := w.Write(m.text)
	return err
}

// current returns the assessment of the certificates, computed again when
// the snapshot changed or the clock passed its until; nil before the
// first load.
func (c *StateCollector) current() *certificateMetrics {
	s := c.snapshot
	if s.Ready() != nil {
		return nil
	}
	now := s.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.cached; m != nil && m.gen == s.generation() && (m.until.IsZero() || now.Before(m.until)) {
		return m
	}
	states, gen := s.certificateStates(now)
	m := &certificateMetrics{gen: gen}
	for _, st := range states {
		if st.Ready {
			m.ready++
			if m.until.IsZero() || st.Expiration.Before(m.until) {
				m.until = st.Expiration // after now: every agent's certificate is unexpired
			}
		} else {
			m.notReady++
		}
		if !st.Expiration.IsZero() && (m.earliest.IsZero() || st.Expiration.Before(m.earliest)) {
			m.earliest = st.Expiration
		}
	}
	if c.perCertificate {
		m.text = certificateText(states)
	}
	c.cached = m
	return m
}

// certificateFamilies are the per-certificate gauges, in name order; value
// returns false for a certificate without a series in the family.
var certificateFamilies = []struct {
	name, help string
	value      func(st *CertificateState) (float64, bool)
}{
	{"certops_certificate_expiration_timestamp_seconds",
		"Earliest expiry of the certificate as installed on its agents (Unix time).",
		func(st *CertificateState) (float64, bool) { return unix(st.Expiration), !st.Expiration.IsZero() }},
	{"certops_certificate_not_before_timestamp_seconds",
		"Start of validity of the installed certificate that expires first (Unix time).",
		func(st *CertificateState) (float64, bool) { return unix(st.NotBefore), !st.NotBefore.IsZero() }},
	{"certops_certificate_ready",
		"1 when every agent of the certificate has a valid certificate for its current spec installed.",
		func(st *CertificateState) (float64, bool) { return boolValue(st.Ready), true }},
	{"certops_certificate_renewal_timestamp_seconds",
		"Earliest time an agent of the certificate is due to renew it (Unix time).",
		func(st *CertificateState) (float64, bool) { return unix(st.Renewal), !st.Renewal.IsZero() }},
}

// textChunk is how many series certificateText encodes at a time.
const textChunk = 512

// certificateText renders the per-certificate families of states (sorted
// here by name, as the registry sorts) in the text format 0.0.4: per
// family one # HELP and # TYPE, then one gauge line per certificate, a
// family without any series left out. The encoding is expfmt's
// (escaping of label values, float formatting): it encodes a reused
// family of at most textChunk metrics at a time, and keeps the HELP and
// TYPE lines of the first chunk only.
func certificateText(states []CertificateState) []byte {
	slices.SortFunc(states, func(a, b CertificateState) int { return strings.Compare(a.Name, b.Name) })
	metrics := make([]*dto.Metric, textChunk)
	for i := range metrics {
		label, value := "certificate", 0.0
		metrics[i] = &dto.Metric{Label: []*dto.LabelPair{{Name: &label, Value: new(string)}}, Gauge: &dto.Gauge{Value: &value}}
	}
	var out, chunk bytes.Buffer
	out.Grow(certificateTextSize(states))
	for _, f := range certificateFamilies {
		mf := &dto.MetricFamily{Name: &f.name, Help: &f.help, Type: dto.MetricType_GAUGE.Enum()}
		first := true
		flush := func() {
			if len(mf.Metric) == 0 {
				return
			}
			chunk.Reset()
			if _, err := expfmt.MetricFamilyToText(&chunk, mf); err != nil {
				panic(fmt.Sprintf("agent API: encode %s: %v", f.name, err)) // a family with a name and metrics does not fail
			}
			b := chunk.Bytes()
			if !first { // drop "# HELP …\n# TYPE …\n": the help text is escaped to one line
				for range 2 {
					b = b[bytes.IndexByte(b, '\n')+1:]
				}
			}
			out.Write(b)
			first, mf.Metric = false, mf.Metric[:0]
		}
		for i := range states {
			v, ok := f.value(&states[i])
			if !ok {
				continue
			}
			m := metrics[len(mf.Metric)]
			*m.Label[0].Value, *m.Gauge.Value = states[i].Name, v
			if mf.Metric = append(mf.Metric, m); len(mf.Metric) == textChunk {
				flush()
			}
		}
		flush()
	}
	if b := out.Bytes(); cap(b) > len(b)+len(b)/4 {
		return bytes.Clone(b) // kept until the next change: not with much spare capacity
	}
	return out.Bytes()
}

// certificateTextSize is about the size of states' text, so that it is
// written without growing its buffer: a value is taken as its family's
// width (a timestamp with nanoseconds takes up to 22 characters in
// expfmt's format, 1.7651736001234567e+09; readiness one); a label value
// to escape makes it more.
func certificateTextSize(states []CertificateState) int {
	n := 0
	for _, f := range certificateFamilies {
		width := 22
		if f.name == "certops_certificate_ready" {
			width = 1
		}
		n += len("# HELP ") + len(f.name) + 1 + len(f.help) + len("\n# TYPE ") + len(f.name) + len(" gauge\n")
		for i := range states {
			if _, ok := f.value(&states[i]); ok {
				n += len(f.name) + len(`{certificate=""} `) + len(states[i].Name) + width + 1
			}
		}
	}
	return n
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
