package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/state"
)

// ErrFenced is state.ErrFenced: the write's fence is no longer the current
// lease, and it changed nothing.
var ErrFenced = state.ErrFenced

// Lease is leadership among the replicas sharing a database: the single row
// of leader_lease names its holder and the epoch of the term, and expires
// unless the holder renews it. A renewal loop keeps it alive every TTL/4;
// when a renewal finds the lease taken, or renewals keep failing until the
// lease would have expired, leadership ends and Done is closed. A frozen
// process renews nothing, so another replica takes over once the TTL has
// passed, and the frozen one's writes are refused (fencing, see Fence).
type Lease struct {
	s        *Store
	fence    state.Fence
	done     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
}

// Fence is the lease's fencing token, for the writes of this term.
func (l *Lease) Fence() state.Fence { return l.fence }

// Done is closed when leadership has ended.
func (l *Lease) Done() <-chan struct{} { return l.done }

// Release gives leadership up (the lease expires at once, so another replica
// can take it) and waits for the renewal loop to end. It is safe to call
// more than once.
func (l *Lease) Release() {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}

// TryLeader tries to become the leader without waiting: it takes the lease
// when it has expired, starting a new term with a higher epoch. ok is false
// (and the lease nil) while another replica's lease is alive. Leadership
// ends when the lease is released, when ctx ends, or when it is lost.
func (s *Store) TryLeader(ctx context.Context) (lease *Lease, ok bool, err error) {
	var epoch int64
	err = s.pool.QueryRow(ctx, `
		UPDATE leader_lease SET holder = $1, epoch = epoch + 1,
			acquired_at = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => $2)
		WHERE id AND expires_at <= clock_timestamp()
		RETURNING epoch`, s.holder, s.leaseTTL.Seconds()).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: try leader: %w", err)
	}
	l := &Lease{s: s, fence: state.Fence{Holder: s.holder, Epoch: epoch},
		done: make(chan struct{}), stop: make(chan struct{})}
	go l.hold(ctx, time.Now().Add(s.leaseTTL))
	return l, true, nil
}

// hold renews the lease every TTL/4 until it is released, ctx ends or it is
// lost. A renewal that fails is retried; once the lease would have expired
// without one, it is lost (another replica may hold it by then).
func (l *Lease) hold(ctx context.Context, expires time.Time) {
	defer close(l.done)
	ttl := l.s.leaseTTL
	t := time.NewTicker(ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			l.expire()
			return
		case <-ctx.Done():
			l.expire()
			return
		case <-t.C:
		}
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, ttl/4)
		renewed, err := l.renew(rctx)
		cancel()
		switch {
		case err == nil && !renewed:
			l.s.logger.Warn("reconcile lease taken by another replica; leadership ends", "fence", l.fence.String())
			return
		case err == nil:
			expires = start.Add(ttl)
		case ctx.Err() != nil:
			continue // the next select ends the term
		case time.Now().After(expires):
			l.s.logger.Warn("reconcile lease not renewed before it expired; leadership ends", "fence", l.fence.String(), "err", err)
			return
		default:
			l.s.logger.Warn("renew reconcile lease; retrying", "err", err)
		}
	}
}

// renew extends the lease if this term still holds it.
func (l *Lease) renew(ctx context.Context) (bool, error) {
	tag, err := l.s.pool.Exec(ctx, `
		UPDATE leader_lease SET expires_at = clock_timestamp() + make_interval(secs => $3)
		WHERE id AND holder = $1 AND epoch = $2 AND expires_at > clock_timestamp()`,
		l.fence.Holder, l.fence.Epoch, l.s.leaseTTL.Seconds())
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// expire ends the term in the database, so that another replica can take
// over without waiting for the TTL.
func (l *Lease) expire() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := l.s.pool.Exec(ctx, `
		UPDATE leader_lease SET expires_at = clock_timestamp()
		WHERE id AND holder = $1 AND epoch = $2`, l.fence.Holder, l.fence.Epoch)
	if err != nil {
		l.s.logger.Warn("release reconcile lease; it expires on its own", "err", err)
	}
}

// checkFence proves, inside a write transaction and as its last statement
// before commit, that fence is still the current, unexpired lease. It locks
// the lease row until the commit, so a replica taking over waits for this
// transaction and then starts from what it wrote; a transaction that lost
// the lease fails with ErrFenced and changes nothing.
func checkFence(ctx context.Context, tx pgx.Tx, fence state.Fence) error {
	var ok bool
	err := tx.QueryRow(ctx, `
		SELECT true FROM leader_lease
		WHERE id AND holder = $1 AND epoch = $2 AND expires_at > clock_timestamp()
		FOR SHARE`, fence.Holder, fence.Epoch).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrFenced
	}
	if err != nil {
		return fmt.Errorf("check reconcile lease: %w", err)
	}
	return nil
}

// inFencedTx is inTx for writes of desired state: fn, then checkFence.
func (s *Store) inFencedTx(ctx context.Context, fence state.Fence, fn func(pgx.Tx) error) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return checkFence(ctx, tx, fence)
	})
}

// newHolder names this store in the lease: host, process and a random part,
// so two stores in one process are two holders.
func newHolder() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
