package backup_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/backup"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	url, st := testDB(t)
	want := tableRows(t, url) // before the run records itself
	dir := t.TempDir()

	rep, err := backup.Run(ctx, st, backup.Policy{Destination: backup.Dir(dir), Retention: backup.Retention{Count: 3}},
		backup.Options{DatabaseURL: url, Tools: tools(t), Now: clock(t0)})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	db, err := backup.DatabaseName(url)
	if err != nil {
		t.Fatal(err)
	}
	wantName := "certops-" + db + "-20261126T120001Z.dump"
	if got := fileNames(t, dir); !cmp.Equal(got, []string{wantName}) {
		t.Fatalf("destination holds %v, want [%s]", got, wantName)
	}
	run := lastRun(t, st)
	if run.Result != store.BackupOK || run.Object != wantName || run.Size == 0 || run.Destination != dir {
		t.Errorf("recorded run %+v, want ok, object %s, a size, destination %s", run, wantName, dir)
	}
	if rep.Run.ID != run.ID {
		t.Errorf("report run id %d, recorded %d", rep.Run.ID, run.ID)
	}

	target := pgtest.EmptyDB(t)
	res, err := backup.Restore(ctx, target, filepath.Join(dir, wantName), backup.RestoreOptions{Tools: tools(t)})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if res.SchemaVersion == 0 || res.SchemaVersion != res.Latest {
		t.Errorf("restored schema version %d, latest %d; want equal and non-zero", res.SchemaVersion, res.Latest)
	}
	got := tableRows(t, target)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored rows differ (-source +restored):\n%s", diff)
	}
	if len(got["objects"]) != 2 || len(got["revisions"]) != 2 {
		t.Errorf("restored %d objects, %d revisions; want 2, 2", len(got["objects"]), len(got["revisions"]))
	}
}

func TestRestoreRefusesNonEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	url, st := testDB(t)
	dir := t.TempDir()
	rep, err := backup.Run(ctx, st, backup.Policy{Destination: backup.Dir(dir)},
		backup.Options{DatabaseURL: url, Tools: tools(t), Now: clock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, rep.Run.Object)

	target := pgtest.DB(t) // migrated: has (empty) tables
	_, err = backup.Restore(ctx, target, file, backup.RestoreOptions{Tools: tools(t)})
	if !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("Restore into a migrated database: %v, want ErrNotEmpty", err)
	}
	if got := tableRows(t, target)["objects"]; len(got) != 0 {
		t.Errorf("refused restore left %d objects", len(got))
	}

	if _, err := backup.Restore(ctx, target, file, backup.RestoreOptions{Tools: tools(t), AllowNonEmpty: true}); err != nil {
		t.Fatalf("Restore with AllowNonEmpty: %v", err)
	}
	if got, want := tableRows(t, target)["objects"], tableRows(t, url)["objects"]; !cmp.Equal(got, want) {
		t.Errorf("objects after --clean restore = %v, want %v", got, want)
	}
}

// truncatingPgDump is a pg_dump that writes a dump and then cuts it short.
func truncatingPgDump(t *testing.T, real string, size int) string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "pg_dump")
	body := "#!/bin/sh\nset -e\n\"" + real + "\" \"$@\"\nfor a; do case $a in --file=*) f=${a#--file=};; esac; done\n" +
		"truncate -s " + strconv.Itoa(size) + " \"$f\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

func TestTruncatedDumpIsRefused(t *testing.T) {
	ctx := context.Background()
	url, st := testDB(t)
	dir := t.TempDir()
	good, err := backup.Run(ctx, st, backup.Policy{Destination: backup.Dir(dir)},
		backup.Options{DatabaseURL: url, Tools: tools(t), Now: clock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	size := int(good.Run.Size)

	for _, cut := range []int{size - 100, size / 2, 200} {
		tl := tools(t)
		tl.PgDump = truncatingPgDump(t, tl.PgDump, cut)
		_, err := backup.Run(ctx, st, backup.Policy{Destination: backup.Dir(dir), Retention: backup.Retention{Count: 1}},
			backup.Options{DatabaseURL: url, Tools: tl, Now: clock(t0.Add(time.Hour)), Force: true})
		if err == nil || !strings.Contains(err.Error(), "not a valid dump") {
			t.Errorf("Run with a dump cut to %d of %d bytes: %v, want 'not a valid dump'", cut, size, err)
		}
		if run := lastRun(t, st); run.Result != store.BackupFailed || run.Error == "" {
			t.Errorf("recorded %+v, want failed with an error", run)
		}
		if got := fileNames(t, dir); !cmp.Equal(got, []string{good.Run.Object}) {
			t.Errorf("after the failed run the destination holds %v, want only %s", got, good.Run.Object)
		}
	}

	// Restore refuses a truncated file and leaves the database empty.
	data, err := os.ReadFile(filepath.Join(dir, good.Run.Object))
	if err != nil {
		t.Fatal(err)
	}
	cutFile := filepath.Join(t.TempDir(), "cut.dump")
	if err := os.WriteFile(cutFile, data[:len(data)-100], 0o600); err != nil {
		t.Fatal(err)
	}
	target := pgtest.EmptyDB(t)
	if _, err := backup.Restore(ctx, target, cutFile, backup.RestoreOptions{Tools: tools(t)}); err == nil {
		t.Error("Restore of a truncated dump succeeded")
	}
	if got := tableRows(t, target); len(got) != 0 {
		t.Errorf("refused restore created tables %v", got)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.dump")
	if err := os.WriteFile(garbage, []byte("PGDMP not really"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Restore(ctx, target, garbage, backup.RestoreOptions{Tools: tools(t)}); err == nil {
		t.Error("Restore of garbage succeeded")
	}
}

func TestUnwritableDestinationIsReportedAndKeepsOlderBackups(t *testing.T) {
	ctx := context.Background()
	url, st := testDB(t)
	db, _ := backup.DatabaseName(url)
	older := []string{
		backup.ObjectName(db, t0.Add(-48*time.Hour)),
		backup.ObjectName(db, t0.Add(-24*time.Hour)),
	}

	t.Run("path is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "not-a-dir")
		touch(t, filepath.Dir(file), "not-a-dir")
		_, err := backup.Run(ctx, st, backup.Policy{Destination: backup.Dir(filepath.Join(file, "sub"))},
			backup.Options{DatabaseURL: url, Tools: tools(t), Now: clock(t0)})
		if err == nil {
			t.Fatal("Run into a path below a file succeeded")
		}
		if run := lastRun(t, st); run.Result != store.BackupFailed || !strings.Contains(run.Error, "not-a-dir") {
			t.Errorf("recorded %+v, want failed naming the path", run)
		}
	})

	t.Run("file cannot be placed", func(t *testing.T) {
		dir := t.TempDir()
		touch(t, dir, older...)
		// The name this run will use is taken by a directory, so the
		// rename into place fails after the copy.
		blocked := backup.ObjectName(db, t0.Add(time.Second))
		if err := os.Mkdir(filepath.Join(dir, blocked), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := backup.Run(ctx, st, backup.Policy{Destination: backup.Dir(dir), Retention: backup.Retention{Count: 1}},
			backup.Options{DatabaseURL: url, Tools: tools(t), Now: clock(t0)})
		if err == nil {
			t.Fatal("Run succeeded")
		}
		if run := lastRun(t, st); run.Result != store.BackupFailed {
			t.Errorf("recorded %+v, want failed", run)
		}
		want := append([]string{blocked}, older...)
		if got := fileNames(t, dir); !cmp.Equal(got, sorted(want)) {
			t.Errorf("destination holds %v, want %v (older backups intact, no partial file)", got, sorted(want))
		}
	})
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func TestRetentionOfDirectory(t *testing.T) {
	ctx := context.Background()
	url, st := testDB(t)
	db, _ := backup.DatabaseName(url)
	name := func(ago time.Duration) string { return backup.ObjectName(db, t0.Add(-ago)) }
	foreign := []string{
		"notes.txt",
		"certops-otherdb-20200101T000000Z.dump", // another database
		"certops-" + db + "-2020.dump",          // not our time format
		"." + name(100*time.Hour) + ".partial",  // a leftover temporary file of an older version
		"." + name(100*time.Hour) + ".123.tmp",  // a leftover temporary file
	}
	tests := []struct {
		name      string
		retention backup.Retention
		existing  []string
		want      []string // besides the new backup and the foreign files
	}{
		{
			name:      "count",
			retention: backup.Retention{Count: 3},
			existing:  []string{name(1 * time.Hour), name(2 * time.Hour), name(3 * time.Hour), name(4 * time.Hour)},
			want:      []string{name(1 * time.Hour), name(2 * time.Hour)},
		},
		{
			name:      "max age",
			retention: backup.Retention{MaxAge: 150 * time.Minute},
			existing:  []string{name(1 * time.Hour), name(2 * time.Hour), name(3 * time.Hour), name(400 * time.Hour)},
			want:      []string{name(1 * time.Hour), name(2 * time.Hour)},
		},
		{
			name:      "count and max age",
			retention: backup.Retention{Count: 2, MaxAge: 150 * time.Minute},
			existing:  []string{name(1 * time.Hour), name(2 * time.Hour), name(3 * time.Hour)},
			want:      []string{name(1 * time.Hour)},
		},
		{
			name:      "count of one keeps only the new backup",
			retention: backup.Retention{Count: 1},
			existing:  []string{name(1 * time.Hour)},
			want:      nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			touch(t, dir, tt.existing...)
			touch(t, dir, foreign...)
			rep, err := backup.Run(ctx, st, backup.Policy{Destination: backup.Dir(dir), Retention: tt.retention},
				backup.Options{DatabaseURL: url, Tools: tools(t), Now: clock(t0)})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			want := append(append([]string{rep.Run.Object}, tt.want...), foreign...)
			if got := fileNames(t, dir); !cmp.Equal(got, sorted(want)) {
				t.Errorf("kept %v\nwant %v", got, sorted(want))
			}
		})
	}
}

func TestRetentionNeverExpiresTheNewest(t *testing.T) {
	now := t0
	list := []backup.Stored{
		{Name: "a", Time: now.Add(-1000 * time.Hour)},
		{Name: "b", Time: now.Add(-2000 * time.Hour)},
		{Name: "c", Time: now.Add(-500 * time.Hour)},
	}
	for _, r := range []backup.Retention{{MaxAge: time.Hour}, {Count: 1, MaxAge: time.Minute}} {
		var got []string
		for _, s := range r.Expired(list, now) {
			got = append(got, s.Name)
		}
		if want := []string{"a", "b"}; !cmp.Equal(got, want) {
			t.Errorf("%+v expired %v, want %v (the newest, c, kept)", r, got, want)
		}
	}
	if got := (backup.Retention{}).Expired(list, now); len(got) != 0 {
		t.Errorf("zero retention expired %v, want none", got)
	}
}

func TestScheduleDecidesWhetherABackupIsDue(t *testing.T) {
	ctx := context.Background()
	url, st := testDB(t)
	dir := t.TempDir()
	sched, err := spec.ParseSchedule("30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	policy := backup.Policy{Name: "nightly", Schedule: &sched, Destination: backup.Dir(dir), Retention: backup.Retention{Count: 10}}
	runAt := func(at time.Time, force bool) backup.Report {
		t.Helper()
		rep, err := backup.Run(ctx, st, policy, backup.Options{DatabaseURL: url, Tools: tools(t), Now: clock(at), Force: force})
		if err != nil {
			t.Fatalf("Run at %v: %v", at, err)
		}
		return rep
	}
	night := time.Date(2026, 11, 26, 2, 30, 0, 0, time.UTC)

	if rep := runAt(night.Add(10*time.Minute), false); !rep.Due {
		t.Fatal("first run was not due: with no earlier backup it must be")
	}
	rep := runAt(night.Add(2*time.Hour), false)
	if rep.Due {
		t.Error("run two hours after the nightly backup was due")
	}
	if want := night.AddDate(0, 0, 1); !rep.NextDue.Equal(want) {
		t.Errorf("NextDue = %v, want %v", rep.NextDue, want)
	}
	if got := fileNames(t, dir); len(got) != 1 {
		t.Errorf("not-due run wrote a file: %v", got)
	}
	if rep := runAt(night.Add(3*time.Hour), true); !rep.Due || rep.Run.Result != store.BackupOK {
		t.Errorf("forced run: due %v, result %q; want a backup", rep.Due, rep.Run.Result)
	}
	if got := fileNames(t, dir); len(got) != 2 {
		t.Errorf("after the forced run the destination holds %v, want 2 backups", got)
	}
	if rep := runAt(night.AddDate(0, 0, 1).Add(time.Minute), false); !rep.Due {
		t.Error("run after the next night's slot was not due")
	}
}

func TestStoredPolicy(t *testing.T) {
	ctx := context.Background()
	url, st := testDB(t)
	if _, _, err := backup.StoredPolicy(ctx, st, ""); !errors.Is(err, backup.ErrNoPolicy) {
		t.Errorf("StoredPolicy without a policy: %v, want ErrNoPolicy", err)
	}
	want := spec.BackupPolicySpec{
		Schedule:    "30 2 * * *",
		Retention:   spec.BackupRetention{Count: 14, MaxAge: "336h"},
		Destination: spec.BackupDestination{Directory: "/var/backups/certops"},
	}
	storePolicy(t, url, "nightly", want)
	name, got, err := backup.StoredPolicy(ctx, st, "")
	if err != nil || name != "nightly" {
		t.Fatalf("StoredPolicy = %q, %v; want nightly", name, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	p, err := backup.NewPolicy(name, got, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if p.Destination.String() != "/var/backups/certops" || p.Retention != (backup.Retention{Count: 14, MaxAge: 336 * time.Hour}) || p.Schedule == nil {
		t.Errorf("NewPolicy = %+v", p)
	}
	if _, _, err := backup.StoredPolicy(ctx, st, "weekly"); !errors.Is(err, backup.ErrNoPolicy) {
		t.Errorf("StoredPolicy(weekly): %v, want ErrNoPolicy", err)
	}
}
