package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/state"
)

// RenewalInfoDue is a current certificate version whose ACME renewal
// information is due to be checked again (see DueRenewalInfo).
type RenewalInfoDue struct {
	VersionID          int64
	Certificate, Agent string
	Issuer, Serial     string
	CertPEM            string
	// Window is the window recorded last; CheckedAt when it was asked.
	Window    state.RenewalWindow
	CheckedAt time.Time
	// RenewAt is the deployment's renewal time now.
	RenewAt time.Time
}

// DueRenewalInfo returns up to limit current versions (a deployment's
// current_version) that carry a renewal window, have not expired at now,
// and are due a check at now: at their next check time when one was
// recorded (RecordRenewalInfo, DeferRenewalInfo), else maxAge after the
// last check. The longest overdue come first.
func (s *Store) DueRenewalInfo(ctx context.Context, now time.Time, maxAge time.Duration, limit int) ([]RenewalInfoDue, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT v.id, v.certificate, v.agent, v.issuer, v.serial, v.cert_pem,
			v.ari_window_start, v.ari_window_end, v.ari_checked_at, d.renew_at
		FROM deployments d JOIN certificate_versions v ON v.id = d.current_version
		WHERE v.ari_window_start IS NOT NULL AND v.not_after > $1
			AND coalesce(v.ari_next_check_at, v.ari_checked_at + make_interval(secs => $2::float8)) <= $1
		ORDER BY coalesce(v.ari_next_check_at, v.ari_checked_at + make_interval(secs => $2::float8)), v.id
		LIMIT $3`, now, maxAge.Seconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: due renewal information checks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RenewalInfoDue, error) {
		var d RenewalInfoDue
		var checkedAt, renewAt *time.Time
		err := row.Scan(&d.VersionID, &d.Certificate, &d.Agent, &d.Issuer, &d.Serial, &d.CertPEM,
			&d.Window.Start, &d.Window.End, &checkedAt, &renewAt)
		d.CheckedAt, d.RenewAt = deref(checkedAt), deref(renewAt)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: due renewal information checks: %w", err)
	}
	return out, nil
}

// RenewalInfoCheck is the answer of one renewal information check of a
// version.
type RenewalInfoCheck struct {
	VersionID int64
	// Window is the CA's window as of CheckedAt.
	Window    state.RenewalWindow
	CheckedAt time.Time
	// NextCheck is when the version is due its next check.
	NextCheck time.Time
	// RenewAt, when not zero, is the deployment's new renewal time (the
	// window moved).
	RenewAt time.Time
}

// RecordRenewalInfo records a check in one transaction: the version's
// window, check time and next check, and, when the window changed and the
// version is still its deployment's current one, the deployment's new
// renew_at c.RenewAt (when set), taking the next change_seq so every
// replica's agent API sees the window and renew_at through
// DeploymentsSince (the window decides whether a renewal is exempt from
// the CA's rate limits). A renewal already due at c.CheckedAt is not put
// off: its renew_at stays. It reports whether renew_at changed. A version
// that no longer exists changes nothing.
func (s *Store) RecordRenewalInfo(ctx context.Context, c RenewalInfoCheck) (moved bool, err error) {
	var renewAt *time.Time
	if !c.RenewAt.IsZero() {
		renewAt = &c.RenewAt
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var changed bool
		err := tx.QueryRow(ctx, `
			UPDATE certificate_versions AS v SET ari_window_start = $2, ari_window_end = $3,
				ari_checked_at = $4, ari_next_check_at = $5
			FROM certificate_versions AS old
			WHERE v.id = $1 AND old.id = v.id
			RETURNING old.ari_window_start IS DISTINCT FROM $2 OR old.ari_window_end IS DISTINCT FROM $3`,
			c.VersionID, c.Window.Start, c.Window.End, c.CheckedAt, c.NextCheck).Scan(&changed)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && !changed && renewAt == nil {
			return nil
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			UPDATE deployments AS d SET
				renew_at = CASE WHEN $2::timestamptz IS NOT NULL AND (d.renew_at IS NULL OR d.renew_at > $3)
					THEN $2::timestamptz ELSE d.renew_at END,
				updated_at = now(), `+changeSet+`
			FROM deployments AS old
			WHERE d.current_version = $1 AND old.certificate = d.certificate AND old.agent = d.agent
				AND ($4 OR d.renew_at IS DISTINCT FROM $2::timestamptz AND (d.renew_at IS NULL OR d.renew_at > $3))
			RETURNING old.renew_at IS DISTINCT FROM d.renew_at`, c.VersionID, renewAt, c.CheckedAt, changed)
		if err != nil {
			return err
		}
		ms, err := pgx.CollectRows(rows, pgx.RowTo[bool])
		moved = slices.Contains(ms, true)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: record renewal information of version %d: %w", c.VersionID, err)
	}
	return moved, nil
}

// DeferRenewalInfo sets only when the version is due its next check: after
// a check that got no window (the CA could not be asked, or offers none),
// which leaves the recorded window and deployment as they were.
func (s *Store) DeferRenewalInfo(ctx context.Context, versionID int64, next time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE certificate_versions SET ari_next_check_at = $2 WHERE id = $1`, versionID, next)
	if err != nil {
		return fmt.Errorf("store: defer renewal information check of version %d: %w", versionID, err)
	}
	return nil
}
