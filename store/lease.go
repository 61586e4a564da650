package store

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lease is leadership among the replicas sharing a database: a session
// advisory lock held on a dedicated connection. Leadership ends when the
// lease is released, when the context given to TryLeader ends, or when the
// connection is lost; Done is closed then.
type Lease struct {
	done     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
}

// Done is closed when leadership has ended.
func (l *Lease) Done() <-chan struct{} { return l.done }

// Release gives leadership up and waits until another replica can take it.
// It is safe to call more than once.
func (l *Lease) Release() {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}

// TryLeader tries to become the leader without waiting. ok is false (and
// the lease nil) when another session holds leadership.
func (s *Store) TryLeader(ctx context.Context) (lease *Lease, ok bool, err error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("store: try leader: %w", err)
	}
	if err := pc.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", leaderLockKey).Scan(&ok); err != nil {
		pc.Release()
		return nil, false, fmt.Errorf("store: try leader: %w", err)
	}
	if !ok {
		pc.Release()
		return nil, false, nil
	}
	// The lock lives as long as this session: take the connection out of the pool.
	l := &Lease{done: make(chan struct{}), stop: make(chan struct{})}
	go l.hold(ctx, pc.Hijack(), s.leaseCheck, s.logger)
	return l, true, nil
}

// hold keeps the leader connection, checking it every interval, until the
// lease is released, ctx ends or the connection fails.
func (l *Lease) hold(ctx context.Context, conn *pgx.Conn, every time.Duration, logger *slog.Logger) {
	defer close(l.done)
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			unlock(conn, logger)
			return
		case <-ctx.Done():
			unlock(conn, logger)
			return
		case <-t.C:
			pingCtx, cancel := context.WithTimeout(ctx, max(every, 5*time.Second))
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil && ctx.Err() == nil {
				logger.Warn("leader connection lost; leadership ends", "err", err)
				return
			}
		}
	}
}

// unlock releases the advisory lock explicitly, so that it is free by the
// time Release returns (closing the session would free it asynchronously).
func unlock(conn *pgx.Conn, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", leaderLockKey); err != nil {
		logger.Warn("release leader lock", "err", err)
	}
}
