package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/certops/certops/state"
	"github.com/jackc/pgx/v5"
)

// Bounds of ListRevisions.
const (
	DefaultRevisionPage   = 20
	MaxRevisionPage       = 200
	MaxActionsPerRevision = 1000
)

// ListRevisions returns up to limit revision records, newest first, with ids
// below before (0: from the newest). Each record carries at most
// MaxActionsPerRevision of its actions, in plan order.
func (s *Store) ListRevisions(ctx context.Context, limit int, before int64) ([]state.RevisionRecord, error) {
	if limit <= 0 {
		limit = DefaultRevisionPage
	}
	limit = min(limit, MaxRevisionPage)
	rows, err := s.pool.Query(ctx, `
		SELECT id, ref, commit, author, message, committed_at, applied_at, outcome, errors, counts, action_count
		FROM revisions
		WHERE $1::bigint <= 0 OR id < $1
		ORDER BY id DESC
		LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("store: list revisions: %w", err)
	}
	recs, err := pgx.CollectRows(rows, scanRevision)
	if err != nil {
		return nil, fmt.Errorf("store: list revisions: %w", err)
	}
	if len(recs) == 0 {
		return recs, nil
	}

	ids := make([]int64, len(recs))
	index := make(map[int64]*state.RevisionRecord, len(recs))
	for i := range recs {
		ids[i] = recs[i].ID
		index[recs[i].ID] = &recs[i]
	}
	rows, err = s.pool.Query(ctx, `
		SELECT r.id, a.action, a.kind, a.name
		FROM unnest($1::bigint[]) AS r(id)
		CROSS JOIN LATERAL (
			SELECT action, kind, name FROM revision_actions
			WHERE revision_id = r.id ORDER BY seq LIMIT $2
		) a`, ids, MaxActionsPerRevision)
	if err != nil {
		return nil, fmt.Errorf("store: list revision actions: %w", err)
	}
	defer rows.Close()
	var id int64
	var a state.ActionRecord
	for rows.Next() {
		if err := rows.Scan(&id, &a.Action, &a.Kind, &a.Name); err != nil {
			return nil, fmt.Errorf("store: list revision actions: %w", err)
		}
		r := index[id]
		r.Actions = append(r.Actions, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list revision actions: %w", err)
	}
	return recs, nil
}

func scanRevision(row pgx.CollectableRow) (state.RevisionRecord, error) {
	var r state.RevisionRecord
	var committedAt *time.Time
	var errsJSON, countsJSON []byte
	err := row.Scan(&r.ID, &r.Revision.Ref, &r.Revision.Commit, &r.Revision.Author, &r.Revision.Message,
		&committedAt, &r.AppliedAt, &r.Outcome, &errsJSON, &countsJSON, &r.ActionCount)
	if err != nil {
		return r, err
	}
	if committedAt != nil {
		r.Revision.Time = *committedAt
	}
	if errsJSON != nil {
		if err := json.Unmarshal(errsJSON, &r.Errors); err != nil {
			return r, fmt.Errorf("revision %d: decode errors: %w", r.ID, err)
		}
	}
	if countsJSON != nil {
		if err := json.Unmarshal(countsJSON, &r.Counts); err != nil {
			return r, fmt.Errorf("revision %d: decode counts: %w", r.ID, err)
		}
	}
	r.Actions = []state.ActionRecord{}
	return r, nil
}
