// Package bench holds the reconciler's end-to-end benchmarks over the fleet
// ladder (500/100, 5K/1K, 50K/10K certificates/agents): the floor (a plain
// git clone plus a COPY of the same rows), a full reconcile from a fresh
// clone, a one-file change, and an unchanged head, against a real git
// repository and a real PostgreSQL. Outside its _test files it holds only
// the floor's rows (FloorRows), shared with the real-process harness in
// bench/serve; see docs/performance.md for how to run both and the figures.
package bench
