// Package store keeps certops' state in PostgreSQL: the applied desired state
// (objects), the revision history and the reconciler's status, shared by
// every replica. Its exported methods are the transaction boundaries; the
// unexported helpers take the pgx.Tx they run in.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/certops/certops/migrations"
)

// ErrNotFound is returned (wrapped) when a requested object does not exist.
var ErrNotFound = errors.New("not found")

// Advisory lock keys ("certops" + a byte). 0x02 is taken by migrations.
const (
	leaderLockKey int64 = 0x63657274_6f707301
	applyLockKey  int64 = 0x63657274_6f707303
)

// Store is a handle on the certops database. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	url    string
	logger *slog.Logger

	// leaseCheck is how often a Lease verifies its connection.
	leaseCheck time.Duration
	// beforeCommit, set only by tests (export_test.go), runs inside every
	// write transaction just before it commits; an error aborts it.
	beforeCommit func(context.Context, pgx.Tx) error
}

// Open connects to the database at url (a postgres:// URL or key=value
// string) and checks that it answers.
func Open(ctx context.Context, url string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: parse database URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{pool: pool, url: url, logger: logger, leaseCheck: 2 * time.Second}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes every connection. Leases should be released first.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping database: %w", err)
	}
	return nil
}

// Migrate applies pending schema migrations. Replicas may call it
// concurrently; they are serialised.
func (s *Store) Migrate(ctx context.Context) error {
	cfg, err := pgx.ParseConfig(s.url)
	if err != nil {
		return fmt.Errorf("store: parse database URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if err := migrations.Up(ctx, db); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	v, err := migrations.Version(ctx, db)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.logger.Info("database schema up to date", "version", v)
	return nil
}

// SchemaCurrent reports whether the database schema is at the version this
// binary migrates to, and both versions.
func (s *Store) SchemaCurrent(ctx context.Context) (current bool, have, want int64, err error) {
	cfg, err := pgx.ParseConfig(s.url)
	if err != nil {
		return false, 0, 0, fmt.Errorf("store: parse database URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if have, err = migrations.Version(ctx, db); err != nil {
		return false, 0, 0, fmt.Errorf("store: %w", err)
	}
	if want, err = migrations.Latest(ctx, db); err != nil {
		return false, 0, 0, fmt.Errorf("store: %w", err)
	}
	return have >= want, have, want, nil
}

// inTx runs fn in a transaction and commits it; any error rolls it back.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // no-op once committed
	if err := fn(tx); err != nil {
		return err
	}
	if s.beforeCommit != nil {
		if err := s.beforeCommit(ctx, tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
