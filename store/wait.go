package store

import (
	"context"
	"log/slog"
	"time"
)

// waitRetry is how often OpenWait and WaitForSchema try again.
const waitRetry = 2 * time.Second

// OpenWait is Open, retried for up to wait while the database is
// unreachable (a database starting next to the reconciler).
func OpenWait(ctx context.Context, url string, wait time.Duration, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	deadline := time.Now().Add(wait)
	for {
		st, err := Open(ctx, url, logger)
		if err == nil {
			return st, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		logger.Warn("database not reachable yet; retrying", "err", err)
		if err := sleep(ctx, waitRetry); err != nil {
			return nil, err
		}
	}
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
		if err := sleep(ctx, waitRetry); err != nil {
			return err
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
