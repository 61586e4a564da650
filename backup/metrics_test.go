package backup_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/certops/certops/backup"
	"github.com/certops/certops/store"
)

func TestMetricsReadTheBackupHistory(t *testing.T) {
	ctx := context.Background()
	_, st := testDB(t)
	reg := prometheus.NewRegistry()
	if err := backup.RegisterMetrics(reg, st, nil); err != nil {
		t.Fatal(err)
	}
	const names = "certops_backup_last_success_timestamp_seconds certops_backup_last_size_bytes certops_backup_failures_total"
	want := func(last, size, failures string) string {
		return `# HELP certops_backup_failures_total Backup runs that failed.
# TYPE certops_backup_failures_total counter
certops_backup_failures_total ` + failures + `
# HELP certops_backup_last_size_bytes Size of the last successful backup in bytes.
# TYPE certops_backup_last_size_bytes gauge
certops_backup_last_size_bytes ` + size + `
# HELP certops_backup_last_success_timestamp_seconds Unix time the last successful backup finished; 0 if there has been none.
# TYPE certops_backup_last_success_timestamp_seconds gauge
certops_backup_last_success_timestamp_seconds ` + last + `
`
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want("0", "0", "0")), strings.Fields(names)...); err != nil {
		t.Errorf("before any backup: %v", err)
	}

	record := func(result string, finished time.Time, size int64) {
		t.Helper()
		_, err := st.RecordBackup(ctx, store.BackupRun{Destination: "/b", Object: "x", StartedAt: finished.Add(-time.Second),
			FinishedAt: finished, Size: size, Result: result})
		if err != nil {
			t.Fatal(err)
		}
	}
	record(store.BackupOK, t0, 1000)
	record(store.BackupOK, t0.Add(time.Hour), 2000)
	record(store.BackupFailed, t0.Add(2*time.Hour), 0)
	record(store.BackupFailed, t0.Add(3*time.Hour), 0)
	last := strconv.FormatInt(t0.Add(time.Hour).Unix(), 10)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(last, "2000", "2")), strings.Fields(names)...); err != nil {
		t.Errorf("after two successes and two failures: %v", err)
	}
}
