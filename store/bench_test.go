package store_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// The full-reconcile quality bar: applying 50,000 certificates and 10,000
// agents to an empty store, against the floor of one bare COPY of the same
// rows (serialised from the same objects) into the objects table.

func BenchmarkApplyFull60K(b *testing.B) {
	ctx := context.Background()
	s := newStore(b)
	admin := adminPool(b, s)
	plan := reconcile.Compute(fleet(50_000, 10_000), nil) // hashes computed here, as the planner does
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		truncate(b, admin)
		b.StartTimer()
		if _, err := s.Apply(ctx, leader(b, s), revision("full"), plan, state.Status{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(plan.Changes)), "objects")
}

func BenchmarkCopyFloor60K(b *testing.B) {
	ctx := context.Background()
	s := newStore(b)
	admin := adminPool(b, s)
	objs := spec.State{Objects: fleet(50_000, 10_000)}.Sorted()
	for _, o := range objs {
		o.Hash()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		truncate(b, admin)
		b.StartTimer()
		_, err := admin.CopyFrom(ctx, pgx.Identifier{"objects"},
			[]string{"kind", "name", "labels", "annotations", "spec", "hash", "source_file", "source_line"},
			pgx.CopyFromSlice(len(objs), func(i int) ([]any, error) {
				o := objs[i]
				labels, _ := json.Marshal(o.Labels)
				annotations := []byte("{}")
				specJSON, err := json.Marshal(o.Spec)
				return []any{string(o.Kind), o.Name, labels, annotations, specJSON, o.Hash(), o.Source.File, int32(o.Source.Line)}, err
			}))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(objs)), "objects")
}

func BenchmarkStoredHashes60K(b *testing.B) {
	s := newStore(b)
	converge(b, s, "1", fleet(50_000, 10_000))
	b.ResetTimer()
	for range b.N {
		if _, err := s.StoredHashes(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkContentHashes60K(b *testing.B) {
	s := newStore(b)
	converge(b, s, "1", fleet(50_000, 10_000))
	b.ResetTimer()
	for range b.N {
		if _, _, err := s.ContentHashes(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func truncate(tb testing.TB, admin *pgxpool.Pool) {
	tb.Helper()
	if _, err := admin.Exec(context.Background(), "TRUNCATE objects, revision_actions, revisions"); err != nil {
		tb.Fatal(err)
	}
}
