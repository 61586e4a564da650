package reconcile

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// Metrics are the reconciler's Prometheus metrics.
type Metrics struct {
	reconciles       *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	fetches          *prometheus.CounterVec
	revisionInfo     *prometheus.GaugeVec
	lastApplied      prometheus.Gauge
	lastFetch        prometheus.Gauge
	objects          *prometheus.GaugeVec
	pruneBlocked     prometheus.Counter
	driftRepaired    prometheus.Counter
	leader           prometheus.Gauge
	validationErrors prometheus.Gauge
}

// NewMetrics creates the reconciler's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certops_reconcile_total",
			Help: "Reconcile attempts by result (success, unchanged, stalled, transient).",
		}, []string{"result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "certops_reconcile_duration_seconds",
			Help:    "Time spent per reconcile phase (fetch, load, plan, apply).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"phase"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certops_source_fetch_total",
			Help: "Source fetches by result (unchanged, changed, error).",
		}, []string{"result"}),
		revisionInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certops_applied_revision_info",
			Help: "The applied revision; always 1, labelled with ref and commit.",
		}, []string{"ref", "commit"}),
		lastApplied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certops_last_applied_timestamp_seconds",
			Help: "Unix time of the last successful apply.",
		}),
		lastFetch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certops_source_last_success_timestamp_seconds",
			Help: "Unix time of the last successful source fetch or ref check.",
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certops_objects",
			Help: "Desired-state objects applied, by kind.",
		}, []string{"kind"}),
		pruneBlocked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "certops_prune_blocked_total",
			Help: "Revisions refused by the prune guard.",
		}),
		driftRepaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "certops_drift_repaired_total",
			Help: "Objects repaired after an out-of-band change in the database.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certops_leader",
			Help: "1 when this replica holds the reconcile lease.",
		}),
		validationErrors: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certops_revision_validation_errors",
			Help: "Validation errors of the last attempted revision.",
		}),
	}
	reg.MustRegister(m.reconciles, m.duration, m.fetches, m.revisionInfo, m.lastApplied, m.lastFetch,
		m.objects, m.pruneBlocked, m.driftRepaired, m.leader, m.validationErrors)
	for _, r := range []state.Result{state.ResultSuccess, state.ResultUnchanged, state.ResultStalled, state.ResultTransient} {
		m.reconciles.WithLabelValues(string(r))
	}
	for _, k := range spec.Kinds {
		m.objects.WithLabelValues(string(k))
	}
	return m
}

func (m *Metrics) setObjects(st spec.State) {
	counts := map[spec.Kind]int{}
	for k := range st.Objects {
		counts[k.Kind]++
	}
	for _, k := range spec.Kinds {
		m.objects.WithLabelValues(string(k)).Set(float64(counts[k]))
	}
}

func (m *Metrics) setRevision(rev state.Revision) {
	m.revisionInfo.Reset()
	m.revisionInfo.WithLabelValues(rev.Ref, rev.Commit).Set(1)
}
