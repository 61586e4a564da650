// Package chart is the certops Helm chart (Chart.yaml, values.yaml,
// templates/). It has no Go code of its own: its tests render the chart with
// the pinned helm (go tool helm) over the scenarios in ci/, decode every
// rendered object strictly into its Kubernetes API type and check what the
// chart promises — hook ordering, StatefulSet strategy, commands, security
// contexts, the PrometheusRule against `certops rules`, and the schema.
package chart
