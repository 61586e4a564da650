package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Retention of history. certificate_versions, revisions and
// revision_actions would otherwise grow with every issuance and every
// revision. Each method below is one short transaction that deletes at most
// a batch of rows; the caller (package retention) loops over them with a
// pause between batches, so no statement holds its locks for long. They
// check no lease fence: they delete history only, never desired state, and
// every statement re-checks against the current rows what it must keep, so
// a batch that runs late (a deposed leader's last one) deletes only rows
// any leader would delete too.

// VersionCursor is where a pass over certificate_versions has got to: the
// last (certificate, agent) pair it has finished. The zero cursor starts
// from the first pair.
type VersionCursor struct {
	Certificate string
	Agent       string
}

// VersionBatch is what one PruneVersionsBatch did.
type VersionBatch struct {
	Deleted int64
	// Next is the cursor to continue from; it equals the cursor passed in
	// when the batch filled its limit (the same pairs may have more rows
	// to delete).
	Next VersionCursor
	// Done says no pair is left after the cursor: the pass is over.
	Done bool
}

// PruneVersionsBatch deletes, in one transaction, up to limit rows of
// certificate_versions among the (certificate, agent) pairs that follow
// after, scanning at most max(limit/4, 1) pairs. Per pair it keeps every
// version still valid (not_after in the future), every version in use by
// the pair's deployment (its current version, the installed serial, the
// served serial), and the newest keep of the others; the rest is deleted,
// oldest first.
func (s *Store) PruneVersionsBatch(ctx context.Context, after VersionCursor, keep, limit int) (VersionBatch, error) {
	if keep < 0 || limit <= 0 {
		return VersionBatch{}, fmt.Errorf("store: prune versions: keep %d and limit %d must be >= 0 and > 0", keep, limit)
	}
	pairs := max(limit/4, 1)
	var b VersionBatch
	var last *string
	var lastAgent *string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `
			WITH pairs AS (
				SELECT DISTINCT certificate, agent FROM certificate_versions
				WHERE (certificate, agent) > ($1, $2)
				ORDER BY certificate, agent
				LIMIT $3
			), doomed AS (
				SELECT id FROM (
					SELECT v.id, row_number() OVER (PARTITION BY v.certificate, v.agent ORDER BY v.id DESC) AS n
					FROM certificate_versions v
					JOIN pairs p ON v.certificate = p.certificate AND v.agent = p.agent
					WHERE v.not_after <= now()
					  AND NOT EXISTS (
						SELECT FROM deployments d
						WHERE d.certificate = v.certificate AND d.agent = v.agent
						  AND (d.current_version = v.id OR d.installed_serial = v.serial OR d.served_serial = v.serial))
				) ranked
				WHERE n > $4
				ORDER BY id
				LIMIT $5
			), gone AS (
				DELETE FROM certificate_versions WHERE id IN (SELECT id FROM doomed) RETURNING id
			), tail AS (
				SELECT certificate, agent FROM pairs ORDER BY certificate DESC, agent DESC LIMIT 1
			)
			SELECT (SELECT count(*) FROM gone), (SELECT certificate FROM tail), (SELECT agent FROM tail)`,
			after.Certificate, after.Agent, pairs, keep, limit).Scan(&b.Deleted, &last, &lastAgent)
	})
	if err != nil {
		return VersionBatch{}, fmt.Errorf("store: prune versions: %w", err)
	}
	switch {
	case last == nil: // no pair after the cursor
		b.Next, b.Done = after, true
	case b.Deleted >= int64(limit): // maybe more in the same pairs
		b.Next = after
	default:
		b.Next = VersionCursor{Certificate: *last, Agent: *lastAgent}
	}
	return b, nil
}

// RevisionRetention says which revisions to keep: those applied within
// MaxAge (at least MinRevisionAge), or among the newest Keep, and always
// the newest revision, the last applied one and every revision an object
// was last written by (objects.revision_id). The rest is deleted with its
// actions.
type RevisionRetention struct {
	MaxAge time.Duration
	Keep   int
}

// MinRevisionAge is how long every revision is kept whatever the
// retention says: replicas follow the revisions' delete actions (see
// AssignmentObjects) every second or so, and must not find a revision
// pruned before they have read it.
const MinRevisionAge = time.Hour

// prunableRevisions is the condition on revisions r that makes r prunable
// under a RevisionRetention given as $1 (its age in seconds) and $2 (Keep).
// Its subqueries are uncorrelated, so each runs once per statement: the
// referenced ids are one scan of objects (which has no index on
// revision_id, to keep applies fast), not one per revision.
const prunableRevisions = `
	r.applied_at < now() - make_interval(secs => $1)
	AND r.id < coalesce((SELECT id FROM revisions ORDER BY id DESC OFFSET greatest($2::int - 1, 0) LIMIT 1), 0)
	AND r.id < (SELECT max(id) FROM revisions)
	AND r.id <> coalesce((SELECT max(id) FROM revisions WHERE outcome = 'applied'), 0)
	AND r.id <> ALL (ARRAY(SELECT DISTINCT revision_id FROM objects WHERE revision_id IS NOT NULL))`

// ageSeconds is the age below which every revision is kept.
func (k RevisionRetention) ageSeconds() float64 { return max(k.MaxAge, MinRevisionAge).Seconds() }

func (k RevisionRetention) check() error {
	if k.MaxAge < 0 || k.Keep < 0 {
		return fmt.Errorf("retention of revisions: age %s and count %d must not be negative", k.MaxAge, k.Keep)
	}
	return nil
}

// PrunableRevisions returns the ids of up to limit revisions that keep
// does not keep, oldest first.
func (s *Store) PrunableRevisions(ctx context.Context, keep RevisionRetention, limit int) ([]int64, error) {
	if err := keep.check(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT r.id FROM revisions r WHERE `+prunableRevisions+` ORDER BY r.id LIMIT $3`,
		keep.ageSeconds(), keep.Keep, limit)
	if err != nil {
		return nil, fmt.Errorf("store: prunable revisions: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("store: prunable revisions: %w", err)
	}
	return ids, nil
}

// PruneRevisionActions deletes, in one transaction, up to limit
// revision_actions rows of the revisions ids. Callers delete a revision's
// actions before the revision itself, so no action outlives its revision.
func (s *Store) PruneRevisionActions(ctx context.Context, ids []int64, limit int) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			DELETE FROM revision_actions WHERE (revision_id, seq) IN (
				SELECT revision_id, seq FROM revision_actions WHERE revision_id = ANY($1) LIMIT $2)`, ids, limit)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune revision actions: %w", err)
	}
	return n, nil
}

// PruneRevisions deletes, in one transaction, the revisions ids that keep
// still does not keep (the condition is checked again) and any action of
// theirs left, and returns how many revisions it deleted.
func (s *Store) PruneRevisions(ctx context.Context, ids []int64, keep RevisionRetention) (int64, error) {
	if err := keep.check(); err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM revisions r WHERE r.id = ANY($3) AND `+prunableRevisions+` RETURNING r.id`,
			keep.ageSeconds(), keep.Keep, ids)
		if err != nil {
			return err
		}
		gone, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		n = int64(len(gone))
		_, err = tx.Exec(ctx, `DELETE FROM revision_actions WHERE revision_id = ANY($1)`, gone)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune revisions: %w", err)
	}
	return n, nil
}

// ACMELedgerRetention is how long the rate-limit ledger keeps a
// certificate: its 7-day window and a day of margin.
const ACMELedgerRetention = rateLimitWindow + 24*time.Hour

// PruneACMEIssuances deletes, in one transaction, up to limit rate-limit
// ledger rows issued before before (ClaimACMEOrder drops those of the name
// set it counts; this catches the name sets never ordered again).
func (s *Store) PruneACMEIssuances(ctx context.Context, before time.Time, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM acme_issuances WHERE id IN (
			SELECT id FROM acme_issuances WHERE issued_at < $1 LIMIT $2)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("store: prune the ACME rate-limit ledger: %w", err)
	}
	return tag.RowsAffected(), nil
}
