package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Backup results.
const (
	BackupOK     = "ok"
	BackupFailed = "failed"
)

// BackupRun is one run of `certops backup` that tried to take a backup.
type BackupRun struct {
	ID int64 `json:"id"`
	// Policy is the BackupPolicy's name, "" for a run without one.
	Policy string `json:"policy,omitempty"`
	// Destination is where the dump went: a directory or s3://bucket/prefix/.
	Destination string `json:"destination"`
	// Object is the dump's name at the destination ("" if it never got one).
	Object     string    `json:"object,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	Size       int64     `json:"size"`
	// Result is BackupOK or BackupFailed; Error says why a run failed.
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// BackupStats summarise the backup history for metrics.
type BackupStats struct {
	// LastSuccess is when the last successful backup finished (zero: never),
	// and LastSize its size in bytes.
	LastSuccess time.Time
	LastSize    int64
	// Failures counts every failed run.
	Failures int64
}

// RecordBackup stores a finished run and returns its id.
func (s *Store) RecordBackup(ctx context.Context, r BackupRun) (int64, error) {
	if r.Result != BackupOK && r.Result != BackupFailed {
		return 0, fmt.Errorf("store: record backup: result %q is neither %q nor %q", r.Result, BackupOK, BackupFailed)
	}
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO backups
		(policy, destination, object, started_at, finished_at, size_bytes, result, error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		r.Policy, r.Destination, r.Object, r.StartedAt, r.FinishedAt, r.Size, r.Result, r.Error).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: record backup: %w", err)
	}
	return id, nil
}

const backupColumns = `id, policy, destination, object, started_at, finished_at, size_bytes, result, error`

// LastBackupSuccess returns the last successful run to destination, or an
// error wrapping ErrNotFound when there is none.
func (s *Store) LastBackupSuccess(ctx context.Context, destination string) (BackupRun, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+backupColumns+` FROM backups
		WHERE destination = $1 AND result = 'ok' ORDER BY finished_at DESC, id DESC LIMIT 1`, destination)
	if err != nil {
		return BackupRun{}, fmt.Errorf("store: last backup: %w", err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[BackupRun])
	if errors.Is(err, pgx.ErrNoRows) {
		return BackupRun{}, fmt.Errorf("store: no successful backup to %s: %w", destination, ErrNotFound)
	}
	if err != nil {
		return BackupRun{}, fmt.Errorf("store: last backup: %w", err)
	}
	return r, nil
}

// ListBackups returns the most recent runs, newest first; limit <= 0 means 100.
func (s *Store) ListBackups(ctx context.Context, limit int) ([]BackupRun, error) {
	if limit <= 0 {
		limit = DefaultPageSize
	}
	rows, err := s.pool.Query(ctx, "SELECT "+backupColumns+` FROM backups
		ORDER BY started_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("store: list backups: %w", err)
	}
	runs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[BackupRun])
	if err != nil {
		return nil, fmt.Errorf("store: list backups: %w", err)
	}
	return runs, nil
}

// BackupStats summarises the history of every destination.
func (s *Store) BackupStats(ctx context.Context) (BackupStats, error) {
	var st BackupStats
	var last *time.Time
	var size *int64
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT finished_at FROM backups WHERE result = 'ok' ORDER BY finished_at DESC, id DESC LIMIT 1),
		(SELECT size_bytes FROM backups WHERE result = 'ok' ORDER BY finished_at DESC, id DESC LIMIT 1),
		(SELECT count(*) FROM backups WHERE result = 'failed')`).Scan(&last, &size, &st.Failures)
	if err != nil {
		return BackupStats{}, fmt.Errorf("store: backup stats: %w", err)
	}
	if last != nil {
		st.LastSuccess, st.LastSize = *last, *size
	}
	return st, nil
}
