package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/store"
)

func TestBackupHistory(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	t0 := time.Date(2026, 11, 26, 2, 30, 0, 0, time.UTC)

	if _, err := s.LastBackupSuccess(ctx, "/b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LastBackupSuccess with no history: %v, want ErrNotFound", err)
	}
	if got, err := s.BackupStats(ctx); err != nil || got != (store.BackupStats{}) {
		t.Errorf("BackupStats with no history = %+v, %v; want zero", got, err)
	}
	runs := []store.BackupRun{
		{Policy: "nightly", Destination: "/b", Object: "a.dump", StartedAt: t0, FinishedAt: t0.Add(time.Minute), Size: 100, Result: store.BackupOK},
		{Policy: "nightly", Destination: "s3://x/", Object: "b.dump", StartedAt: t0.Add(time.Hour), FinishedAt: t0.Add(61 * time.Minute), Size: 200, Result: store.BackupOK},
		{Policy: "nightly", Destination: "/b", Object: "c.dump", StartedAt: t0.Add(2 * time.Hour), FinishedAt: t0.Add(121 * time.Minute), Result: store.BackupFailed, Error: "disk full"},
	}
	for i := range runs {
		id, err := s.RecordBackup(ctx, runs[i])
		if err != nil {
			t.Fatal(err)
		}
		runs[i].ID = id
	}
	if _, err := s.RecordBackup(ctx, store.BackupRun{Destination: "/b", Result: "maybe"}); err == nil {
		t.Error("RecordBackup accepted result \"maybe\"")
	}

	got, err := s.LastBackupSuccess(ctx, "/b")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(runs[0], got, timeEqual); diff != "" {
		t.Errorf("LastBackupSuccess(/b) (-want +got):\n%s", diff)
	}
	stats, err := s.BackupStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !stats.LastSuccess.Equal(runs[1].FinishedAt) || stats.LastSize != 200 || stats.Failures != 1 {
		t.Errorf("BackupStats = %+v, want last success %v, size 200, 1 failure", stats, runs[1].FinishedAt)
	}
	list, err := s.ListBackups(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.BackupRun{runs[2], runs[1]}, list, timeEqual); diff != "" {
		t.Errorf("ListBackups(2) (-want +got):\n%s", diff)
	}
}

var timeEqual = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
