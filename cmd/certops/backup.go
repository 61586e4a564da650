package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/backup"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
)

// backupCmd takes one backup according to the BackupPolicy applied from
// Git, unless its schedule says none is due (the CronJob runs it often).
func backupCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "backup")
	var url, destination, policyName, workDir string
	var force bool
	var wait time.Duration
	f.StringEnv(&url, "database-url", "", "PostgreSQL connection URL of the database to back up")
	f.StringEnv(&destination, "destination", "", "back up into this directory instead of the policy's destination")
	f.StringEnv(&policyName, "policy", "", "the BackupPolicy to follow when Git defines more than one")
	f.StringEnv(&workDir, "work-dir", "", "directory for the dump while it is checked (default: the system temporary directory)")
	f.BoolVar(&force, "force", false, "back up even if the schedule says no backup is due") // flag only: no stray CERTOPS_FORCE
	f.DurationEnv(&wait, "database-wait", 30*time.Second, "how long to wait for the database to become reachable")
	newLogger := f.logFlags()
	if err := f.parseNoArgs(args); err != nil {
		return parseExit(err)
	}
	fail := func(err error) int { return env.fail("certops backup", err) }
	logger, err := newLogger()
	if err != nil {
		return fail(err)
	}
	if url == "" {
		return fail(failure.New(failure.Usage, "--database-url (CERTOPS_DATABASE_URL) is required"))
	}
	if destination != "" {
		if destination, err = filepath.Abs(destination); err != nil {
			return fail(err)
		}
	}
	tools, err := backup.FindTools()
	if err != nil {
		return fail(err)
	}
	st, err := store.OpenWait(ctx, url, wait, store.Options{}, logger)
	if err != nil {
		return fail(fmt.Errorf("database unreachable, no backup taken: %w", err))
	}
	defer st.Close()

	name, ps, err := backup.StoredPolicy(ctx, st, policyName)
	switch {
	case errors.Is(err, backup.ErrNoPolicy) && destination != "" && policyName == "":
		// A hand run without a policy: no schedule, keep everything.
	case err != nil:
		return fail(err)
	}
	if destination != "" {
		ps.Destination = spec.BackupDestination{Directory: destination}
	}
	policy, err := backup.NewPolicy(name, ps, env.getenv)
	if err != nil {
		return fail(err)
	}

	rep, err := backup.Run(ctx, st, policy, backup.Options{
		DatabaseURL: url, Tools: tools, TempDir: workDir, Force: force,
	})
	if !rep.Due {
		logger.Info("backup not due", "policy", name, "last_success", rep.LastSuccess, "next_due", rep.NextDue)
		if rep.NextDue.IsZero() {
			fmt.Fprintf(env.stdout, "backup not due: schedule %q never fires again\n", ps.Schedule)
		} else {
			fmt.Fprintf(env.stdout, "backup not due: last success %s, next due %s (--force to back up now)\n",
				rep.LastSuccess.UTC().Format(time.RFC3339), rep.NextDue.UTC().Format(time.RFC3339))
		}
		return 0
	}
	if rep.Run.Result == store.BackupOK {
		logger.Info("backup written", "policy", name, "object", rep.Run.Object, "size", rep.Run.Size,
			"destination", policy.Destination.String(), "removed", len(rep.Removed))
		fmt.Fprintf(env.stdout, "backup written: %s (%d bytes) in %s\n", rep.Run.Object, rep.Run.Size, policy.Destination)
		if len(rep.Removed) > 0 {
			fmt.Fprintf(env.stdout, "retention removed %d: %s\n", len(rep.Removed), strings.Join(rep.Removed, ", "))
		}
	}
	if err != nil {
		logger.Error("backup failed", "policy", name, "err", err)
		notifyBackupFailure(ctx, st, logger, err)
		return fail(err)
	}
	return 0
}

// notifyBackupFailure queues a BackupFailed notification for the channels
// of the AlertPolicy; the reconciler's notifier delivers it.
func notifyBackupFailure(ctx context.Context, st *store.Store, logger *slog.Logger, cause error) {
	n := notify.New(st, logger, notify.NewMetrics(prometheus.NewRegistry()), notify.Options{})
	err := n.Event(ctx, alert.Alert{Name: alert.BackupFailed, Severity: alert.Critical,
		Summary: "Backup failed", Description: cause.Error(), Since: time.Now()})
	if err != nil {
		logger.Warn("queue backup failure notification", "err", err)
	}
}

// restoreCmd restores a dump made by backupCmd into a database.
func restoreCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "restore")
	var url, file, workDir string
	var allowNonEmpty bool
	var s3 spec.S3Target
	f.StringEnv(&url, "database-url", "", "PostgreSQL connection URL of the (empty) database to restore into")
	f.StringEnv(&file, "file", "", "the dump: a local file or s3://BUCKET/KEY")
	f.BoolVar(&allowNonEmpty, "allow-non-empty", false, "restore into a database that has tables, replacing the dump's objects") // flag only, never from the environment
	f.StringEnv(&workDir, "work-dir", "", "directory for a downloaded dump (default: the system temporary directory)")
	f.StringEnv(&s3.Endpoint, "s3-endpoint", "", "S3 endpoint URL for s3:// files (default: AWS)")
	f.StringEnv(&s3.Region, "s3-region", "", "S3 region for s3:// files")
	f.StringEnv(&s3.AccessKeyIDEnv, "s3-access-key-id-env", "", "environment variable holding the S3 access key id")
	f.StringEnv(&s3.SecretAccessKeyEnv, "s3-secret-access-key-env", "", "environment variable holding the S3 secret key")
	f.StringEnv(&s3.CredentialsFile, "s3-credentials-file", "", "AWS-style credentials file for S3")
	if err := f.parseNoArgs(args); err != nil {
		return parseExit(err)
	}
	fail := func(err error) int { return env.fail("certops restore", err) }
	if url == "" || file == "" {
		return fail(failure.New(failure.Usage, "--database-url (CERTOPS_DATABASE_URL) and --file are required"))
	}
	tools, err := backup.FindTools()
	if err != nil {
		return fail(err)
	}
	if rest, ok := strings.CutPrefix(file, "s3://"); ok {
		bucket, key, _ := strings.Cut(rest, "/")
		if bucket == "" || key == "" {
			return fail(failure.New(failure.Usage, "--file "+file+": want s3://BUCKET/KEY"))
		}
		s3.Bucket = bucket
		client, err := backup.NewS3(s3, env.getenv)
		if err != nil {
			return fail(err)
		}
		tmp, err := os.MkdirTemp(workDir, "certops-restore-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(tmp)
		file = filepath.Join(tmp, filepath.Base(key))
		if err := client.Fetch(ctx, key, file); err != nil {
			return fail(err)
		}
	}
	rep, err := backup.Restore(ctx, url, file, backup.RestoreOptions{Tools: tools, AllowNonEmpty: allowNonEmpty})
	if err != nil {
		if errors.Is(err, backup.ErrNotEmpty) {
			err = fmt.Errorf("%w (--allow-non-empty)", err)
		}
		return fail(err)
	}
	fmt.Fprintf(env.stdout, "restored %s: schema version %d", file, rep.SchemaVersion)
	switch {
	case rep.SchemaVersion < rep.Latest:
		fmt.Fprintf(env.stdout, "; this binary expects %d: run certops migrate\n", rep.Latest)
	case rep.SchemaVersion > rep.Latest:
		fmt.Fprintf(env.stdout, "; this binary only knows up to %d: run a certops release at least as new as the one that made the dump\n", rep.Latest)
	default:
		fmt.Fprintln(env.stdout, ", as this binary expects")
	}
	return 0
}
