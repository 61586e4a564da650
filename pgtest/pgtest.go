// Package pgtest gives database tests a real PostgreSQL, one fresh migrated
// database per test. Import it only from _test files.
//
// A test package opts in from its TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and each test calls DB(t) for a connection URL of its own database.
//
// With DATABASE_URL set, databases are created on that server (the URL needs
// the right to CREATE DATABASE; PostgreSQL 13 or later). Otherwise every test
// package of a `go test` run — separate processes running in parallel —
// shares one throwaway cluster started with localpg (see cluster.go).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/certops/certops/migrations"
)

// EnvURL names the environment variable with an existing server's admin URL.
const EnvURL = "DATABASE_URL"

// current is the harness of this test process. The API (Main in TestMain, DB
// in tests) has no other way to hand it over: it is set once by Main before
// any test runs.
var current *harness

// Main runs the package's tests and then drops its databases and releases
// the shared cluster. Call it from TestMain.
func Main(m *testing.M) {
	h := &harness{logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	current = h
	code := m.Run()
	if err := h.close(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// DB creates a fresh database with the full certops schema for this test and
// returns its URL. The database is dropped when the test ends.
func DB(t testing.TB) string {
	t.Helper()
	h := ready(t)
	return h.createDB(t, h.template)
}

// EmptyDB creates a fresh database without any schema (for migration tests)
// and returns its URL. The database is dropped when the test ends.
func EmptyDB(t testing.TB) string {
	t.Helper()
	h := ready(t)
	return h.createDB(t, "template0")
}

func ready(t testing.TB) *harness {
	t.Helper()
	if current == nil {
		t.Fatal("pgtest: call pgtest.Main(m) from the package's TestMain")
	}
	if err := current.setup(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return current
}

// harness is one test process's view of the server: an admin pool, the
// package's migrated template database and a counter for test databases.
type harness struct {
	logger *slog.Logger

	once     sync.Once
	err      error
	admin    *pgxpool.Pool
	adminURL string
	prefix   string // certops_test_<pkg>_<random>
	template string // certops_tmpl_<pkg>_<random>
	seq      atomic.Int64
	release  func(context.Context) error // gives back the shared cluster
}

// setup connects to the server (starting or joining the shared cluster) and
// builds the template database, once per process, on first use.
func (h *harness) setup() error {
	h.once.Do(func() { h.err = h.doSetup(context.Background()) })
	return h.err
}

func (h *harness) doSetup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	h.adminURL = os.Getenv(EnvURL)
	if h.adminURL == "" {
		adminURL, release, err := joinSharedCluster(ctx, h.logger)
		if err != nil {
			return err
		}
		h.adminURL, h.release = adminURL, release
	}
	admin, err := pgxpool.New(ctx, h.adminURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redact(h.adminURL), err)
	}
	h.admin = admin

	pkg, suffix := packageName(), randomSuffix()
	h.prefix = "certops_test_" + pkg + "_" + suffix
	h.template = "certops_tmpl_" + pkg + "_" + suffix
	if _, err := h.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{h.template}.Sanitize()); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	return h.migrate(ctx, h.urlFor(h.template))
}

func (h *harness) migrate(ctx context.Context, dbURL string) error {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return fmt.Errorf("parse %s: %w", redact(dbURL), err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close() // the template must have no sessions when it is copied
	if err := migrations.Up(ctx, db); err != nil {
		return fmt.Errorf("migrate template database: %w", err)
	}
	return nil
}

// createDB creates a database copied from template for the test and drops it
// at the end of the test.
func (h *harness) createDB(t testing.TB, template string) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("%s_%d", h.prefix, h.seq.Add(1))
	sql := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{template}.Sanitize())
	if _, err := h.admin.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: create test database: %v", err)
	}
	t.Cleanup(func() {
		if err := h.dropDB(ctx, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return h.urlFor(name)
}

func (h *harness) dropDB(ctx context.Context, name string) error {
	if _, err := h.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// close drops the template database and leaves the shared cluster; the last
// process to leave stops it.
func (h *harness) close(ctx context.Context) error {
	if h.admin == nil && h.release == nil {
		return nil // never used
	}
	var errs []error
	if h.admin != nil {
		if err := h.dropDB(ctx, h.template); err != nil {
			errs = append(errs, err)
		}
		h.admin.Close()
	}
	if h.release != nil {
		if err := h.release(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("teardown: %v", errs)
	}
	return nil
}

// urlFor is the admin URL pointed at database name.
func (h *harness) urlFor(name string) string {
	if u, err := url.Parse(h.adminURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		u.RawPath = ""
		return u.String()
	}
	// A keyword/value connection string: a later dbname wins.
	return h.adminURL + " dbname=" + name
}

// packageName is the test binary's package ("store" for store.test),
// reduced to what is safe in a database name.
func packageName() string {
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	name = regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(name), "_")
	if len(name) > 20 {
		name = name[:20]
	}
	return name
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// redact hides a password in a URL for error messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
