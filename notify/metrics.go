package notify

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/store"
)

// Metrics counts delivery attempts and tracks the queue.
type Metrics struct {
	attempts *prometheus.CounterVec
	queue    prometheus.Gauge
}

// NewMetrics creates the notification metrics and registers them with reg.
// Collectors already registered with reg are reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certops_notifications_total",
			Help: "Notification delivery attempts by channel type and result: sent, failed (will be retried) or dead (given up).",
		}, []string{"channel_type", "result"})),
		queue: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certops_notification_queue",
			Help: "Notifications waiting to be delivered (pending or failed and to be retried).",
		})),
	}
	for _, typ := range []string{ChannelSlack, ChannelSMTP, ChannelWebhook} {
		for _, result := range []string{store.OutboxSent, store.OutboxFailed, store.OutboxDead} {
			m.attempts.WithLabelValues(typ, result)
		}
	}
	return m
}

// register registers c with reg, or returns the identical collector
// registered before.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			panic(fmt.Sprintf("notify: register metrics: %v", err)) // programming error: conflicting descriptor
		}
		return are.ExistingCollector.(C)
	}
	return c
}

func (m *Metrics) observe(channelType, result string) {
	if m == nil {
		return
	}
	m.attempts.WithLabelValues(channelType, result).Inc()
}
