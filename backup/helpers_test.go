package backup_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/backup"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit/storekit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testDB is a fresh migrated database with some rows in it, and a store on it.
func testDB(t *testing.T) (string, *store.Store) {
	t.Helper()
	url := pgtest.DB(t)
	st := storekit.OpenURL(t, url)
	execSQL(t, url, `INSERT INTO revisions (ref, commit, author, message, committed_at, outcome, errors, counts, action_count)
		VALUES ('main', 'abc123', 'Ann <ann@example.com>', 'first', '2026-11-01T10:00:00Z', 'applied', NULL, '{"Certificate":{"create":2}}', 2),
		       ('main', 'def456', 'Bob', 'bad: "quotes", commas, and
newlines', NULL, 'invalid', '[{"file":"a.yaml","line":3}]', NULL, 0)`)
	execSQL(t, url, `INSERT INTO objects (kind, name, labels, spec, hash, revision_id)
		VALUES ('Certificate', 'shop', '{"team":"shop"}', '{"commonName":"shop.example.com"}', 'h1', 1),
		       ('Certificate', 'blog', '{}', '{"commonName":"blog.example.com","dnsNames":["a","b"]}', 'h2', 1)`)
	execSQL(t, url, `INSERT INTO agent_status (name, last_seen, version, hostname) VALUES ('web-01', now(), '1.0', 'web-01.example.com')`)
	return url, st
}

// connect opens a connection to url, closed when the test ends.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func execSQL(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	if _, err := connect(t, url).Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// storePolicy stores a BackupPolicy object as the reconciler would.
func storePolicy(t *testing.T, url, name string, s spec.BackupPolicySpec) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	execSQL(t, url, `INSERT INTO objects (kind, name, spec, hash) VALUES ('BackupPolicy', $1, $2, 'x')`, name, b)
}

// tableRows is every table of the public schema with its rows as text, sorted.
func tableRows(t *testing.T, url string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, url)
	rows, err := conn.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]string)
	for _, table := range tables {
		rows, err := conn.Query(ctx, "SELECT t::text FROM "+pgx.Identifier{table}.Sanitize()+" t ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		if out[table], err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func tools(t *testing.T) backup.Tools {
	t.Helper()
	tl, err := backup.FindTools()
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

// clock is a fake clock that moves one second per reading.
func clock(start time.Time) func() time.Time {
	now := start
	return func() time.Time {
		now = now.Add(time.Second)
		return now
	}
}

// fileNames lists the directory's entries, sorted.
func fileNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// touch creates files with the given names in dir.
func touch(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("old backup "+n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func lastRun(t *testing.T, st *store.Store) store.BackupRun {
	t.Helper()
	runs, err := st.ListBackups(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) == 0 {
		t.Fatal("no backup run recorded")
	}
	return runs[0]
}
