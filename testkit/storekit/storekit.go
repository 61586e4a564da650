// Package storekit opens stores on fresh test databases and fills them as
// the reconciler does. Import it only from tests. Unlike package testkit it
// needs PostgreSQL (through pgtest) and imports store and reconcile, so
// the internal tests of those packages and of the packages they import
// (state, spec, assign, migrations, ...) cannot use it.
package storekit

import (
	"context"
	"log/slog"
	"testing"

	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// Open returns a store on a fresh migrated database (pgtest.DB), closed
// when the test ends.
func Open(t testing.TB) *store.Store {
	t.Helper()
	return OpenURL(t, pgtest.DB(t))
}

// OpenURL returns a store on the database at url, closed when the test ends.
func OpenURL(t testing.TB, url string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

// Desired is objs as a desired state, keyed as the loader keys them.
func Desired(objs ...*spec.Object) map[spec.Key]*spec.Object {
	m := make(map[spec.Key]*spec.Object, len(objs))
	for _, o := range objs {
		m[o.Key()] = o
	}
	return m
}

// Apply makes desired the whole desired state of st as the reconciler
// does: it takes the reconcile lease, plans desired against the stored
// hashes, applies the plan as revision rev with status in one transaction
// under the lease's fence, and releases the lease. It returns the plan and
// the revision's id. It fails the test while another holds the lease.
func Apply(t testing.TB, st *store.Store, rev state.Revision, status state.Status, desired map[spec.Key]*spec.Object) (state.Plan, int64) {
	t.Helper()
	ctx := context.Background()
	lease, ok, err := st.TryLeader(ctx)
	if err != nil || !ok {
		t.Fatalf("TryLeader = %v, %v; want the lease to apply %s", ok, err, rev)
	}
	defer lease.Release()
	stored, err := st.StoredHashes(ctx)
	if err != nil {
		t.Fatalf("StoredHashes: %v", err)
	}
	plan := reconcile.Compute(desired, stored)
	id, err := st.Apply(ctx, lease.Fence(), rev, plan, status)
	if err != nil {
		t.Fatalf("Apply %s: %v", rev, err)
	}
	return plan, id
}
