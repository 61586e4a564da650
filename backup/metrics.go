package backup

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/store"
)

// StatsReader reads the backup history summary; *store.Store is one.
type StatsReader interface {
	BackupStats(ctx context.Context) (store.BackupStats, error)
}

// RegisterMetrics registers the backup metrics with reg. They are read from
// the backups table at scrape time, so every replica exports the same
// values, whichever process ran the backup:
//
//   - certops_backup_last_success_timestamp_seconds (0: never),
//   - certops_backup_last_size_bytes,
//   - certops_backup_failures_total.
//
// When the database cannot be read the metrics are left out of the scrape
// and the error is logged.
func RegisterMetrics(reg prometheus.Registerer, src StatsReader, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return reg.Register(&collector{
		src:    src,
		logger: logger,
		lastSuccess: prometheus.NewDesc("certops_backup_last_success_timestamp_seconds",
			"Unix time the last successful backup finished; 0 if there has been none.", nil, nil),
		lastSize: prometheus.NewDesc("certops_backup_last_size_bytes",
			"Size of the last successful backup in bytes.", nil, nil),
		failures: prometheus.NewDesc("certops_backup_failures_total",
			"Backup runs that failed.", nil, nil),
	})
}

// scrapeTimeout bounds the database query of one scrape.
const scrapeTimeout = 5 * time.Second

type collector struct {
	src                             StatsReader
	logger                          *slog.Logger
	lastSuccess, lastSize, failures *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lastSuccess
	ch <- c.lastSize
	ch <- c.failures
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	st, err := c.src.BackupStats(ctx)
	if err != nil {
		c.logger.Warn("backup metrics: read the backup history", "err", err)
		return
	}
	var last float64
	if !st.LastSuccess.IsZero() {
		last = float64(st.LastSuccess.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, last)
	ch <- prometheus.MustNewConstMetric(c.lastSize, prometheus.GaugeValue, float64(st.LastSize))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(st.Failures))
}
