package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/certops/certops/failure"
	"github.com/jackc/pgx/v5/pgconn"
)

// waitRetry is how often OpenWait and WaitForSchema try again.
const waitRetry = 2 * time.Second

// OpenWait is OpenWith, retried for up to wait while the database is
// unreachable (a database starting next to the reconciler). A database that
// answers but refuses (no such database, wrong password, no access) fails at
// once: waiting cannot fix it.
func OpenWait(ctx context.Context, url string, wait time.Duration, opt Options, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	deadline := time.Now().Add(wait)
	for {
		st, err := OpenWith(ctx, url, opt, logger)
		if err == nil {
			return st, nil
		}
		if refused(err) {
			return nil, failure.Wrap(failure.Invalid, fmt.Errorf("%w (not retried: check the database URL and credentials)", err))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		logger.Warn("database not reachable yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(waitRetry):
		}
	}
}

// refused reports whether err is the database refusing this client for good:
// no such database (3D000), a failed password (28P01) or no access (28000),
// rather than being unreachable.
func refused(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return false
	}
	switch pg.Code {
	case "3D000", "28P01", "28000":
		return true
	}
	return false
}

// WaitForSchema waits until another process (`certops migrate`, run by a
// Helm hook) has brought the schema to this binary's version.
func (s *Store) WaitForSchema(ctx context.Context) error {
	for {
		ok, have, want, err := s.SchemaCurrent(ctx)
		switch {
		case err != nil:
			s.logger.Warn("check schema version", "err", err)
		case ok:
			return nil
		default:
			s.logger.Warn("database schema is behind; waiting for certops migrate", "have", have, "want", want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(waitRetry):
		}
	}
}
