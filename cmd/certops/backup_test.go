package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/testkit"
)

// backupDB is a migrated database holding one object and, if policy is not
// nil, the BackupPolicy "nightly".
func backupDB(t *testing.T, policy *spec.BackupPolicySpec) string {
	t.Helper()
	url := pgtest.DB(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO objects (kind, name, spec, hash) VALUES ('Issuer', 'ca', '{"localCA":{}}', 'h')`); err != nil {
		t.Fatal(err)
	}
	if policy != nil {
		b, err := json.Marshal(policy)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO objects (kind, name, spec, hash) VALUES ('BackupPolicy', 'nightly', $1, 'h')`, b); err != nil {
			t.Fatal(err)
		}
	}
	return url
}

func dumps(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "certops-*.dump"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBackupCommandFollowsTheSchedule(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	url := backupDB(t, &spec.BackupPolicySpec{
		Schedule:    "0 0 1 1 *", // yearly: after one backup, none is due for a while
		Retention:   spec.BackupRetention{Count: 5},
		Destination: spec.BackupDestination{Directory: dir},
	})
	env := map[string]string{"CERTOPS_DATABASE_URL": url}

	code, out, errOut := cli(ctx, env, "backup")
	if code != 0 || !strings.Contains(out, "backup written: certops-") {
		t.Fatalf("first backup: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if got := dumps(t, dir); len(got) != 1 {
		t.Fatalf("after the first backup: %v, want one dump", got)
	}
	firstDone := time.Now()

	code, out, errOut = cli(ctx, env, "backup")
	if code != 0 || !strings.Contains(out, "backup not due") {
		t.Fatalf("second backup: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if got := dumps(t, dir); len(got) != 1 {
		t.Errorf("a not-due run wrote a dump: %v", got)
	}

	// Backup names have one-second resolution: the forced one needs a later second.
	testkit.WaitFor(t, 2*time.Second, "the next second", func() bool {
		return time.Now().Truncate(time.Second).After(firstDone.Truncate(time.Second))
	})
	code, out, errOut = cli(ctx, env, "backup", "--force")
	if code != 0 || !strings.Contains(out, "backup written") {
		t.Fatalf("forced backup: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if got := dumps(t, dir); len(got) != 2 {
		t.Errorf("after the forced backup: %v, want two dumps", got)
	}

	// A hand run into another directory is due: it is another destination.
	// With --log-format json, every line on stderr is a JSON log record,
	// the outcome among them.
	other := t.TempDir()
	code, out, errOut = cli(ctx, env, "backup", "--destination", other, "--log-format", "json")
	if code != 0 || len(dumps(t, other)) != 1 {
		t.Errorf("backup --destination: exit %d, dumps %v\nstdout: %s\nstderr: %s", code, dumps(t, other), out, errOut)
	}
	written := false
	for line := range strings.Lines(strings.TrimSpace(errOut)) {
		var rec struct{ Msg, Object string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("stderr line is not a JSON log record: %q", line)
		}
		written = written || rec.Msg == "backup written" && strings.HasPrefix(rec.Object, "certops-")
	}
	if !written {
		t.Errorf("no JSON log record says the backup was written:\n%s", errOut)
	}
}

func TestBackupCommandErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("no policy", func(t *testing.T) {
		url := backupDB(t, nil)
		code, _, errOut := cli(ctx, nil, "backup", "--database-url", url)
		if code != 1 || !strings.Contains(errOut, "no BackupPolicy") {
			t.Errorf("exit %d, stderr %s; want 1 and 'no BackupPolicy'", code, errOut)
		}
		// A hand run with --destination needs no policy.
		dir := t.TempDir()
		code, _, errOut = cli(ctx, nil, "backup", "--database-url", url, "--destination", dir)
		if code != 0 || len(dumps(t, dir)) != 1 {
			t.Errorf("backup --destination without a policy: exit %d, stderr %s", code, errOut)
		}
	})
	t.Run("database unreachable", func(t *testing.T) {
		url := "postgres://postgres@" + testkit.ClosedAddr(t) + "/certops?sslmode=disable&connect_timeout=2"
		code, _, errOut := cli(ctx, nil, "backup", "--database-url", url, "--database-wait", "0s", "--destination", t.TempDir())
		if code != 1 || !strings.Contains(errOut, "database unreachable") {
			t.Errorf("exit %d, stderr %s; want 1 and 'database unreachable'", code, errOut)
		}
	})
	t.Run("destination is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		url := backupDB(t, nil)
		code, _, errOut := cli(ctx, nil, "backup", "--database-url", url, "--destination", file)
		if code != 1 || !strings.Contains(errOut, "not a directory") {
			t.Errorf("exit %d, stderr %s; want 1 and 'not a directory'", code, errOut)
		}
	})
}

func TestRestoreCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	url := backupDB(t, nil)
	if code, _, errOut := cli(ctx, nil, "backup", "--database-url", url, "--destination", dir); code != 0 {
		t.Fatalf("backup: %s", errOut)
	}
	file := dumps(t, dir)[0]

	target := pgtest.EmptyDB(t)
	code, out, errOut := cli(ctx, nil, "restore", "--database-url", target, "--file", file)
	if code != 0 || !strings.Contains(out, "as this binary expects") {
		t.Fatalf("restore into an empty database: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	code, _, errOut = cli(ctx, nil, "restore", "--database-url", target, "--file", file)
	if code != 1 || !strings.Contains(errOut, "not empty") || !strings.Contains(errOut, "--allow-non-empty") {
		t.Errorf("restore into a non-empty database: exit %d, stderr %s; want 1, 'not empty' and the flag", code, errOut)
	}
	code, _, errOut = cli(ctx, nil, "restore", "--database-url", target, "--file", file, "--allow-non-empty")
	if code != 0 {
		t.Errorf("restore --allow-non-empty: exit %d, stderr %s", code, errOut)
	}

	truncated := filepath.Join(t.TempDir(), "cut.dump")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = cli(ctx, nil, "restore", "--database-url", pgtest.EmptyDB(t), "--file", truncated)
	if code != 1 || !strings.Contains(errOut, "not a valid dump") {
		t.Errorf("restore of a truncated dump: exit %d, stderr %s; want 1 and 'not a valid dump'", code, errOut)
	}
}
