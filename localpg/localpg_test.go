package localpg_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/localpg"
)

func TestStartCreateStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, nil))

	c, err := localpg.Start(ctx, localpg.Options{Fast: true, Logger: logger})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	dir := c.Dir()
	t.Cleanup(func() { _ = c.Stop(context.Background()) })

	if err := c.CreateDatabase(ctx, "certops-x"); err != nil {
		t.Fatalf("CreateDatabase: %v", err)
	}
	conn, err := pgx.Connect(ctx, c.URL("certops-x"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	var user, db string
	var fsync string
	if err := conn.QueryRow(ctx, "SELECT current_user, current_database(), current_setting('fsync')").Scan(&user, &db, &fsync); err != nil {
		t.Fatalf("query: %v", err)
	}
	conn.Close(ctx)
	if user != "postgres" || db != "certops-x" || fsync != "off" {
		t.Errorf("got user=%q db=%q fsync=%q, want postgres, certops-x, off", user, db, fsync)
	}
	if err := c.DropDatabase(ctx, "certops-x"); err != nil {
		t.Fatalf("DropDatabase: %v", err)
	}

	// Another handle on the same cluster sees it running and can stop it.
	other, err := localpg.Attach(localpg.Options{Dir: dir, Port: c.Port()})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if !other.Running(ctx) {
		t.Fatal("attached cluster not running")
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if other.Running(ctx) {
		t.Error("cluster still running after Stop")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Stop left the temporary directory %s behind (stat err %v)", dir, err)
	}
}

func TestRestartKeepsData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(tempDir(t), "cluster")

	c, err := localpg.Start(ctx, localpg.Options{Dir: dir, Fast: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := c.CreateDatabase(ctx, "kept"); err != nil {
		t.Fatalf("CreateDatabase: %v", err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	c, err = localpg.Start(ctx, localpg.Options{Dir: dir, Fast: true})
	if err != nil {
		t.Fatalf("second Start: %v", err)
	}
	defer c.Stop(ctx)
	conn, err := pgx.Connect(ctx, c.URL("kept"))
	if err != nil {
		t.Fatalf("database did not survive a restart: %v", err)
	}
	conn.Close(ctx)
}

func TestMissingBinariesError(t *testing.T) {
	t.Setenv(localpg.BinEnv, t.TempDir())
	_, err := localpg.Start(context.Background(), localpg.Options{Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "initdb not found in") {
		t.Errorf("Start with an empty %s: got %v, want an 'initdb not found' error", localpg.BinEnv, err)
	}
}

// tempDir is a directory the postgres user can traverse into (t.TempDir's
// parents are private to the test's user).
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "localpg-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
