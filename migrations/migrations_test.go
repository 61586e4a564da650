package migrations_test

import (
	"context"
	"database/sql"
	"log/slog"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/pressly/goose/v3"

	"github.com/certops/certops/migrations"
	"github.com/certops/certops/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestUpIsIdempotentAndReversible(t *testing.T) {
	ctx := context.Background()
	db := open(t, pgtest.EmptyDB(t))

	if got, err := migrations.Version(ctx, db); err != nil || got != 0 {
		t.Fatalf("Version of an empty database = %d, %v; want 0, nil", got, err)
	}
	latest, err := migrations.Latest(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := migrations.Up(ctx, db); err != nil {
			t.Fatalf("Up #%d: %v", i+1, err)
		}
		if got, err := migrations.Version(ctx, db); err != nil || got != latest {
			t.Fatalf("Version after Up #%d = %d, %v; want %d", i+1, got, err, latest)
		}
	}
	for _, table := range []string{"objects", "revisions", "revision_actions", "source_status"} {
		if !tableExists(t, db, table) {
			t.Errorf("table %s missing after Up", table)
		}
	}

	// Every Down section runs and leaves nothing behind; Up works again after.
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("DownTo(0): %v", err)
	}
	if tableExists(t, db, "objects") {
		t.Error("objects still exists after migrating down")
	}
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("Up after down: %v", err)
	}
}

func TestConcurrentUp(t *testing.T) {
	ctx := context.Background()
	url := pgtest.EmptyDB(t)
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- migrations.Up(ctx, open(t, url)) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Up: %v", err)
		}
	}
}

func open(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var ok bool
	if err := db.QueryRow("SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}
