package retention

import "github.com/prometheus/client_golang/prometheus"

// Pruned is the certops_pruned_rows_total counter of table.
func (m *Metrics) Pruned(table string) prometheus.Counter { return m.pruned.WithLabelValues(table) }
