package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/certops/certops/state"
	"github.com/jackc/pgx/v5"
)

// SetStatus replaces the reconciler's status while fence is the current lease.
func (s *Store) SetStatus(ctx context.Context, fence state.Fence, status state.Status) error {
	row, err := newStatusRow(status)
	if err == nil {
		err = s.inFencedTx(ctx, fence, func(tx pgx.Tx) error { return writeStatus(ctx, tx, row) })
	}
	if err != nil {
		return fmt.Errorf("store: set status: %w", err)
	}
	return nil
}

// Status returns the reconciler's status; the zero Status before any was written.
func (s *Store) Status(ctx context.Context) (state.Status, error) {
	var st state.Status
	var errsJSON, conditionsJSON []byte
	err := s.pool.QueryRow(ctx, `
		SELECT last_applied_revision, last_applied_at, last_attempted_revision, last_attempted_at,
		       last_fetch_at, errors, conditions
		FROM source_status WHERE id = 1`,
	).Scan(&st.LastAppliedRevision, &st.LastAppliedAt, &st.LastAttemptedRevision, &st.LastAttemptedAt,
		&st.LastFetchAt, &errsJSON, &conditionsJSON)
	if errors.Is(err, pgx.ErrNoRows) {
		return state.Status{}, nil
	}
	if err != nil {
		return state.Status{}, fmt.Errorf("store: read status: %w", err)
	}
	if errsJSON != nil {
		if err := json.Unmarshal(errsJSON, &st.Errors); err != nil {
			return state.Status{}, fmt.Errorf("store: decode status errors: %w", err)
		}
	}
	if conditionsJSON != nil {
		if err := json.Unmarshal(conditionsJSON, &st.Conditions); err != nil {
			return state.Status{}, fmt.Errorf("store: decode status conditions: %w", err)
		}
	}
	return st, nil
}

// statusRow is a status ready to be written: its errors and conditions
// bounded and encoded before any transaction opens, so none waits on that
// work (a revision may carry thousands of long errors).
type statusRow struct {
	st                       state.Status
	errsJSON, conditionsJSON []byte
}

func newStatusRow(st state.Status) (statusRow, error) {
	errsJSON, err := nullableJSON(storableErrors(st.Errors), st.Errors == nil)
	if err != nil {
		return statusRow{}, err
	}
	conditionsJSON, err := nullableJSON(storableConditions(st.Conditions), st.Conditions == nil)
	if err != nil {
		return statusRow{}, err
	}
	return statusRow{st: st, errsJSON: errsJSON, conditionsJSON: conditionsJSON}, nil
}

func writeStatus(ctx context.Context, tx pgx.Tx, row statusRow) error {
	st := row.st
	_, err := tx.Exec(ctx, `
		INSERT INTO source_status (id, last_applied_revision, last_applied_at, last_attempted_revision,
		                           last_attempted_at, last_fetch_at, errors, conditions, updated_at)
		VALUES (1, $1, $2, $3, $4, $5, $6, $7, now())
		ON CONFLICT (id) DO UPDATE SET
			last_applied_revision   = excluded.last_applied_revision,
			last_applied_at         = excluded.last_applied_at,
			last_attempted_revision = excluded.last_attempted_revision,
			last_attempted_at       = excluded.last_attempted_at,
			last_fetch_at           = excluded.last_fetch_at,
			errors                  = excluded.errors,
			conditions              = excluded.conditions,
			updated_at              = now()`,
		st.LastAppliedRevision, st.LastAppliedAt, st.LastAttemptedRevision, st.LastAttemptedAt,
		st.LastFetchAt, row.errsJSON, row.conditionsJSON)
	if err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}
