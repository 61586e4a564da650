package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/fleet"
	"github.com/certops/certops/pgtest"
)

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
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"objects"}, FloorColumns(), pgx.CopyFromRows(rows))
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
		rows, err := FloorRows(dir)
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
