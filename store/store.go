// Package store keeps certops' state in PostgreSQL, shared by every replica:
//
//   - the applied desired state (objects, decoded by StoredObject.Decode),
//     the revision history with its actions, and the reconciler's status;
//   - the reconcile lease (the leader_lease row with its epoch, renewed by
//     heartbeat), whose fence every write of desired state checks, so a
//     replica that lost the lease writes nothing;
//   - the agents' liveness and the certificates each agent is assigned;
//   - the deployments of every certificate on every agent: issued versions,
//     issue failures with their backoff, and the agents' reports, with the
//     change feed replicas follow them by (DeploymentsSince);
//   - ACME order claims and the http-01 challenges the agents serve, with
//     their change counter;
//   - the facts alerting reads, and the notification state and outbox;
//   - the backup history;
//   - the batched deletes of history retention (old certificate versions,
//     old revisions and their actions);
//   - the webhook wake-up relay between replicas (LISTEN/NOTIFY).
//
// It also opens the database (with session timeouts, waiting for it to
// come up) and migrates its schema. Its exported methods are the
// transaction boundaries; the unexported helpers take the pgx.Tx they run
// in.
package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/certops/certops/migrations"
)

// ErrNotFound is returned (wrapped) when a requested object does not exist.
var ErrNotFound = errors.New("not found")

// Advisory lock keys ("certops" + a byte). 0x01 was the leader lock before
// the lease table; 0x02 is taken by migrations.
const applyLockKey int64 = 0x63657274_6f707303

// Options tune a Store; zero fields take the defaults below.
type Options struct {
	// LockTimeout bounds every wait for a lock in certops' sessions, so a
	// write blocked behind an orphaned transaction fails (and is retried)
	// instead of hanging (Postgres lock_timeout; default 10s).
	LockTimeout time.Duration
	// StatementTimeout bounds every statement (statement_timeout; 5m).
	StatementTimeout time.Duration
	// IdleInTransactionTimeout ends a session that sits in an open
	// transaction, as a frozen process would, releasing its locks
	// (idle_in_transaction_session_timeout; 10s).
	IdleInTransactionTimeout time.Duration
	// LeaseTTL is how long the reconcile lease lives without a renewal; a
	// frozen leader is replaced after it (10s).
	LeaseTTL time.Duration
}

func (o Options) withDefaults() Options {
	o.LockTimeout = cmp.Or(max(o.LockTimeout, 0), 10*time.Second)
	o.StatementTimeout = cmp.Or(max(o.StatementTimeout, 0), 5*time.Minute)
	o.IdleInTransactionTimeout = cmp.Or(max(o.IdleInTransactionTimeout, 0), 10*time.Second)
	o.LeaseTTL = cmp.Or(max(o.LeaseTTL, 0), 10*time.Second)
	return o
}

// Store is a handle on the certops database. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	url    string
	logger *slog.Logger

	// holder names this store in the reconcile lease; leaseTTL is the
	// lease's lifetime without renewal.
	holder   string
	leaseTTL time.Duration
	// beforeCommit, set only by tests (export_test.go), runs inside every
	// write transaction just before it commits; an error aborts it.
	beforeCommit func(context.Context, pgx.Tx) error
}

// Open connects to the database at url (a postgres:// URL or key=value
// string) with the default Options and checks that it answers.
func Open(ctx context.Context, url string, logger *slog.Logger) (*Store, error) {
	return OpenWith(ctx, url, Options{}, logger)
}

// OpenWith is Open with options. Every session of the pool runs with the
// options' timeouts.
func OpenWith(ctx context.Context, url string, opt Options, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opt = opt.withDefaults()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: parse database URL: %w", err)
	}
	params := cfg.ConnConfig.RuntimeParams
	params["lock_timeout"] = milliseconds(opt.LockTimeout)
	params["statement_timeout"] = milliseconds(opt.StatementTimeout)
	params["idle_in_transaction_session_timeout"] = milliseconds(opt.IdleInTransactionTimeout)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{pool: pool, url: url, logger: logger, holder: newHolder(), leaseTTL: opt.LeaseTTL}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// milliseconds renders d as a Postgres duration setting.
func milliseconds(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }

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
