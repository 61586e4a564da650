// Package backup takes logical backups of the certops database with pg_dump,
// checks them with pg_restore, stores them in a directory or an
// S3-compatible bucket, prunes old ones by the BackupPolicy's retention, and
// restores them. Each backup run is recorded in the database, which both
// drives the policy's schedule and feeds the backup metrics.
package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
)

// Store is what a backup run needs from the certops database.
type Store interface {
	GetObject(ctx context.Context, kind spec.Kind, name string) (store.StoredObject, error)
	ListObjects(ctx context.Context, q store.ObjectQuery) ([]store.StoredObject, string, error)
	LastBackupSuccess(ctx context.Context, destination string) (store.BackupRun, error)
	RecordBackup(ctx context.Context, r store.BackupRun) (int64, error)
}

// Policy is a BackupPolicy ready to run.
type Policy struct {
	// Name is the BackupPolicy's name ("" for a hand run without one).
	Name string
	// Schedule says when a backup is due; nil makes every run due.
	Schedule *spec.Schedule
	// Retention says which older backups to delete after a new one.
	Retention Retention
	// Destination is where backups are stored.
	Destination Destination
}

// Options configure a backup run.
type Options struct {
	// DatabaseURL is the database to dump (a postgres:// URL or key=value string).
	DatabaseURL string
	// Tools are pg_dump and pg_restore.
	Tools Tools
	// TempDir holds the dump while it is checked; "" means os.TempDir().
	TempDir string
	// Force takes a backup even when the schedule says none is due.
	Force bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Report is the outcome of Run.
type Report struct {
	// Due is false when the schedule said no backup was due and none was taken.
	Due bool
	// LastSuccess is when the previous successful backup to the destination
	// finished (zero: never), and NextDue when the schedule fires next after it.
	LastSuccess, NextDue time.Time
	// Run is the run as recorded (for a due run).
	Run store.BackupRun
	// Removed are the backups retention deleted.
	Removed []string
}

// ErrRetention marks an error of the retention step: the new backup was
// stored and recorded as successful, but older ones could not be pruned.
var ErrRetention = errors.New("retention")

// Run takes one backup according to p, unless the schedule says none is due
// since the last successful one (opts.Force overrides). The attempt is
// recorded in st whether it succeeds or fails; a failed run leaves every
// older backup in place.
func Run(ctx context.Context, st Store, p Policy, opts Options) (Report, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	start := now().UTC()
	dest := p.Destination.String()
	var rep Report
	last, err := st.LastBackupSuccess(ctx, dest)
	switch {
	case err == nil:
		rep.LastSuccess = last.FinishedAt
	case !errors.Is(err, store.ErrNotFound):
		return rep, fmt.Errorf("backup: read the last backup: %w", err)
	}
	rep.Due, rep.NextDue = due(p.Schedule, rep.LastSuccess, start)
	if !rep.Due && !opts.Force {
		return rep, nil
	}
	rep.Due = true

	run := store.BackupRun{Policy: p.Name, Destination: dest, StartedAt: start}
	removed, runErr := take(ctx, p, opts, now, &run)
	run.FinishedAt = now().UTC()
	run.Result = store.BackupOK
	if runErr != nil {
		run.Error = runErr.Error()
		if !errors.Is(runErr, ErrRetention) {
			run.Result = store.BackupFailed
		}
	}
	rep.Removed = removed
	id, err := st.RecordBackup(context.WithoutCancel(ctx), run)
	run.ID = id
	rep.Run = run
	if err != nil {
		return rep, errors.Join(runErr, fmt.Errorf("backup: %w", err))
	}
	return rep, runErr
}

// due reports whether the schedule fired after the last success (always,
// without a schedule or a success) and when it fires next after it.
func due(s *spec.Schedule, lastSuccess, now time.Time) (bool, time.Time) {
	if s == nil || lastSuccess.IsZero() {
		return true, time.Time{}
	}
	next, ok := s.Next(lastSuccess)
	if !ok {
		return false, time.Time{}
	}
	return !next.After(now), next
}

// take dumps, checks and stores one backup and applies retention, filling in
// run; it returns the names retention removed.
func take(ctx context.Context, p Policy, opts Options, now func() time.Time, run *store.BackupRun) ([]string, error) {
	db, err := DatabaseName(opts.DatabaseURL)
	if err != nil {
		return nil, err
	}
	run.Object = ObjectName(db, run.StartedAt)

	tmp, err := os.MkdirTemp(opts.TempDir, "certops-backup-")
	if err != nil {
		return nil, fmt.Errorf("backup: temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	file := filepath.Join(tmp, run.Object)
	if err := opts.Tools.Dump(ctx, opts.DatabaseURL, file); err != nil {
		return nil, err
	}
	if err := opts.Tools.Check(ctx, file); err != nil {
		return nil, err
	}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	run.Size = fi.Size()
	if err := p.Destination.Put(ctx, run.Object, file); err != nil {
		return nil, fmt.Errorf("backup: store %s in %s: %w", run.Object, p.Destination, err)
	}
	return prune(ctx, p.Destination, db, run.Object, p.Retention, now())
}

// prune applies retention to the backups of database db at dest, keeping
// the one just written (newest) whatever the policy says.
func prune(ctx context.Context, dest Destination, db, newest string, r Retention, now time.Time) ([]string, error) {
	all, err := dest.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: %w: list %s: %w", ErrRetention, dest, err)
	}
	var ours []Stored
	for _, s := range all {
		if s.Database == db {
			ours = append(ours, s)
		}
	}
	var removed []string
	var errs []error
	for _, s := range r.Expired(ours, now) {
		if s.Name == newest {
			continue
		}
		if err := dest.Delete(ctx, s.Name); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", s.Name, err))
			continue
		}
		removed = append(removed, s.Name)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("backup: %w: %w", ErrRetention, err)
	}
	return removed, nil
}
