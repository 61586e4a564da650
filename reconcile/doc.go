// Package reconcile turns revisions of the config repository into stored
// state. Compute is the plan: a pure function of the desired objects and the
// stored hashes. The Reconciler is the loop: it fetches the head, loads and
// validates it whole (re-parsing only changed files), plans, and applies the
// plan through the Store in one transaction, sorting every failure into
// stalled (needs a human) or transient (retried with backoff).
package reconcile
