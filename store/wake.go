package store

import (
	"context"
	"fmt"
	"time"
)

// wakeChannel is the PostgreSQL notification channel on which replicas pass
// wake-ups (a verified webhook) to whichever replica holds the lease.
const wakeChannel = "certops_wake"

// NotifyWake tells every replica listening with ListenWake to fetch now.
func (s *Store) NotifyWake(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, "SELECT pg_notify($1, '')", wakeChannel); err != nil {
		return fmt.Errorf("store: notify wake: %w", err)
	}
	return nil
}

// ListenWake delivers every NotifyWake, from any replica, on the returned
// channel (buffered 1; bursts coalesce) until ctx ends. It holds one
// connection and reconnects with backoff when that connection is lost;
// wake-ups sent while it was disconnected are lost, which the poll interval
// covers.
func (s *Store) ListenWake(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		backoff := time.Second
		for ctx.Err() == nil {
			err := s.listen(ctx, out)
			if ctx.Err() != nil {
				return
			}
			s.logger.Warn("wake listener lost its connection; reconnecting", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
		}
	}()
	return out
}

func (s *Store) listen(ctx context.Context, out chan<- struct{}) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection goes into LISTEN mode: take it out of the pool for good.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, "LISTEN "+wakeChannel); err != nil {
		return err
	}
	for {
		if _, err := pc.WaitForNotification(ctx); err != nil {
			return err
		}
		select {
		case out <- struct{}{}:
		default:
		}
	}
}

// RelayWakes connects this replica to the others' wake-ups until ctx ends:
// every local wake-up (a verified webhook received here) is passed to all
// replicas with NotifyWake (or, when that fails, to this replica's own
// reconciler), and every wake-up from any replica calls wake. Only the lease
// holder fetches, so a webhook may reach any replica. It returns once its
// listening connection is closed.
func (s *Store) RelayWakes(ctx context.Context, local <-chan struct{}, wake func()) {
	peers := s.ListenWake(ctx)
	for {
		select {
		case <-ctx.Done():
			// Wait for the listener to close peers, so its connection is
			// closed before the store is.
			for range peers {
			}
			return
		case <-local:
			if err := s.NotifyWake(ctx); err != nil {
				s.logger.Warn("pass webhook wake-up to the leader", "err", err)
				wake()
			}
		case _, ok := <-peers:
			if !ok {
				return
			}
			wake()
		}
	}
}
