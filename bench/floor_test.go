package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/fleet"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
)

// floorRows loads the fleet at dir and renders every object (issuers, agents,
// certificates) as a row of measureFloor's columns, spec as its canonical
// JSON: the
// rows a full reconcile writes, built before any timer starts.
func floorRows(dir string) ([][]any, error) {
	st, err := spec.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	objs := st.Sorted()
	rows := make([][]any, len(objs))
	for i, o := range objs {
		labels := []byte("{}")
		if len(o.Labels) > 0 {
			if labels, err = json.Marshal(o.Labels); err != nil {
				return nil, fmt.Errorf("%s: labels: %w", o.Key(), err)
			}
		}
		specJSON, err := spec.CanonicalJSON(o.Spec)
		if err != nil {
			return nil, fmt.Errorf("%s: spec: %w", o.Key(), err)
		}
		rows[i] = []any{string(o.Kind), o.Name, labels, []byte("{}"), specJSON, o.Hash(), o.Source.File, int32(o.Source.Line)}
	}
	return rows, nil
}

// floorTimes is one measurement of the floor.
type floorTimes struct {
	clone, copy time.Duration
}

func (f floorTimes) total() time.Duration { return f.clone + f.copy }

// measureFloor times the floor once: a plain `git clone` of file://dir (pack
// protocol, full history, working tree checked out) into a new directory, and
// one COPY of rows into the objects table of a fresh migrated database.
// Creating the database, connecting and cleaning up are not timed.
func measureFloor(ctx context.Context, b *testing.B, dir string, rows [][]any) floorTimes {
	b.Helper()
	// The columns the store's own COPY fills, less revision_id.
	columns := []string{"kind", "name", "labels", "annotations", "spec", "hash", "source_file", "source_line"}
	parent, err := os.MkdirTemp(b.TempDir(), "clone-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(parent)
	conn, err := pgx.Connect(ctx, pgtest.DB(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	start := time.Now()
	if _, err := fleet.Git(ctx, parent, "clone", "-q", fileURL(dir), "clone"); err != nil {
		b.Fatal(err)
	}
	cloned := time.Now()
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"objects"}, columns, pgx.CopyFromRows(rows))
	if err != nil {
		b.Fatal(err)
	}
	copied := time.Now()
	if n != int64(len(rows)) {
		b.Fatalf("COPY wrote %d rows, want %d", n, len(rows))
	}
	return floorTimes{clone: cloned.Sub(start), copy: copied.Sub(cloned)}
}

// BenchmarkFloor measures the floor of a full reconcile: a plain git clone
// of the fleet repository plus a COPY of its objects into an empty table.
// ns/op is the clone plus the COPY only, as measureFloor times them.
func BenchmarkFloor(b *testing.B) {
	forEachSize(b, func(b *testing.B, size fleet.Size) {
		ctx := b.Context()
		dir := newFleet(ctx, b, size)
		rows, err := floorRows(dir)
		if err != nil {
			b.Fatal(err)
		}
		var sum floorTimes
		for b.Loop() {
			f := measureFloor(ctx, b, dir, rows)
			sum.clone += f.clone
			sum.copy += f.copy
		}
		b.ReportMetric(float64(sum.total())/float64(b.N), "ns/op")
		b.ReportMetric(ms(sum.clone)/float64(b.N), "clone_ms")
		b.ReportMetric(ms(sum.copy)/float64(b.N), "copy_ms")
		b.ReportMetric(float64(len(rows)), "objects")
	})
}
