package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/textlimit"
)

// Apply applies plan as revision rev in one transaction: the revision record
// with its per-object actions, the object creates, updates and deletes, and
// the status, and the serials that created or updated Revocation objects
// revoke (see writeRevocations). The transaction commits only while fence is the current lease
// (ErrFenced otherwise). On any error nothing is changed. It returns the
// revision's id.
//
// Updates overwrite the stored row whatever it holds, so a plan made against
// ContentHashes repairs rows edited out of band.
func (s *Store) Apply(ctx context.Context, fence state.Fence, rev state.Revision, plan state.Plan, status state.Status) (int64, error) {
	if err := checkPlan(plan); err != nil {
		return 0, fmt.Errorf("store: apply %s: %w", rev, err)
	}
	revRow, err := newRevisionRow(rev, state.OutcomeApplied, nil, plan.Counts(), len(plan.Changes))
	if err != nil {
		return 0, fmt.Errorf("store: apply %s: %w", rev, err)
	}
	statusRow, err := newStatusRow(status)
	if err != nil {
		return 0, fmt.Errorf("store: apply %s: %w", rev, err)
	}
	var id, revoked int64
	err = s.inFencedTx(ctx, fence, func(tx pgx.Tx) error {
		// Replicas apply one at a time even if two believe they lead.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", applyLockKey); err != nil {
			return fmt.Errorf("take apply lock: %w", err)
		}
		var err error
		id, err = insertRevision(ctx, tx, revRow)
		if err != nil {
			return err
		}
		if err := insertActions(ctx, tx, id, plan.Changes); err != nil {
			return err
		}
		if err := writeObjects(ctx, tx, id, plan.Changes); err != nil {
			return err
		}
		if err := deleteObjects(ctx, tx, plan.Changes); err != nil {
			return err
		}
		if revoked, err = writeRevocations(ctx, tx, id, plan.Changes); err != nil {
			return err
		}
		return writeStatus(ctx, tx, statusRow)
	})
	if err != nil {
		return 0, fmt.Errorf("store: apply %s: %w", rev, err)
	}
	s.logger.Debug("revision applied", "revision", rev.String(), "id", id, "changes", len(plan.Changes))
	if revoked > 0 {
		s.logger.Info("serials revoked", "revision", rev.String(), "count", revoked)
	}
	return id, nil
}

// RecordAttempt records a revision that was refused (outcome invalid,
// prune-blocked, untrusted or failed) with its errors, and writes the status, while
// fence is the current lease. Objects are left untouched. It returns the
// revision's id.
func (s *Store) RecordAttempt(ctx context.Context, fence state.Fence, rev state.Revision, outcome state.RevisionOutcome, errs spec.ErrorList, status state.Status) (int64, error) {
	if !outcome.Refused() {
		return 0, fmt.Errorf("store: record attempt %s: outcome %q is not one of %q, %q, %q, %q",
			rev, outcome, state.OutcomeInvalid, state.OutcomePruneBlocked, state.OutcomeUntrusted, state.OutcomeFailed)
	}
	revRow, err := newRevisionRow(rev, outcome, errs, nil, 0)
	if err != nil {
		return 0, fmt.Errorf("store: record attempt %s: %w", rev, err)
	}
	statusRow, err := newStatusRow(status)
	if err != nil {
		return 0, fmt.Errorf("store: record attempt %s: %w", rev, err)
	}
	var id int64
	err = s.inFencedTx(ctx, fence, func(tx pgx.Tx) error {
		var err error
		if id, err = insertRevision(ctx, tx, revRow); err != nil {
			return err
		}
		return writeStatus(ctx, tx, statusRow)
	})
	if err != nil {
		return 0, fmt.Errorf("store: record attempt %s: %w", rev, err)
	}
	return id, nil
}

// checkPlan rejects plans Apply cannot carry out, before touching the database.
func checkPlan(plan state.Plan) error {
	for _, c := range plan.Changes {
		switch c.Action {
		case state.ActionCreate, state.ActionUpdate:
			if c.Object == nil {
				return fmt.Errorf("%s %s: change has no object", c.Action, c.Key)
			}
			if c.Object.Key() != c.Key {
				return fmt.Errorf("%s %s: change carries object %s", c.Action, c.Key, c.Object.Key())
			}
		case state.ActionDelete:
		default:
			return fmt.Errorf("%s: unknown action %q", c.Key, c.Action)
		}
	}
	return nil
}

// revisionRow is a revision record ready to be inserted: its text
// bounded and its errors and counts encoded before any transaction opens.
type revisionRow struct {
	ref, commit, author, message string
	committedAt                  *time.Time
	outcome                      state.RevisionOutcome
	errsJSON, countsJSON         []byte
	actions                      int
}

func newRevisionRow(rev state.Revision, outcome state.RevisionOutcome, errs spec.ErrorList, counts map[spec.Kind]state.Counts, actions int) (revisionRow, error) {
	row := revisionRow{ref: textlimit.Bound(rev.Ref, 1024), commit: rev.Commit, author: textlimit.Bound(rev.Author, 1024),
		message: textlimit.Message(rev.Message), outcome: outcome, actions: actions}
	if !rev.Time.IsZero() {
		row.committedAt = &rev.Time
	}
	var err error
	if row.errsJSON, err = nullableJSON(storableErrors(errs), len(errs) == 0); err != nil {
		return revisionRow{}, err
	}
	if row.countsJSON, err = nullableJSON(counts, counts == nil); err != nil {
		return revisionRow{}, err
	}
	return row, nil
}

func insertRevision(ctx context.Context, tx pgx.Tx, row revisionRow) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `
		INSERT INTO revisions (ref, commit, author, message, committed_at, outcome, errors, counts, action_count)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		RETURNING id`,
		row.ref, row.commit, row.author, row.message, row.committedAt, row.outcome, row.errsJSON, row.countsJSON, row.actions,
	).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert revision: %w", err)
	}
	return id, nil
}

// insertActions writes one revision_actions row per change, in plan order.
func insertActions(ctx context.Context, tx pgx.Tx, revisionID int64, changes []state.Change) error {
	if len(changes) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"revision_actions"},
		[]string{"revision_id", "seq", "action", "kind", "name"},
		pgx.CopyFromSlice(len(changes), func(i int) ([]any, error) {
			c := changes[i]
			return []any{revisionID, int32(i), string(c.Action), string(c.Key.Kind), c.Key.Name}, nil
		}))
	if err != nil {
		return fmt.Errorf("insert revision actions: %w", err)
	}
	return nil
}

// writeObjects writes the plan's creates and updates. Creates are COPYed
// straight into objects (a create of an existing object fails the apply: the
// plan is stale). Updates are COPYed into a temporary staging table and
// merged with one INSERT ... ON CONFLICT, which bumps the generation of rows
// that exist (and inserts rows that vanished since planning).
func writeObjects(ctx context.Context, tx pgx.Tx, revisionID int64, changes []state.Change) error {
	var creates, updates []state.Change
	for _, c := range changes {
		switch c.Action {
		case state.ActionCreate:
			creates = append(creates, c)
		case state.ActionUpdate:
			updates = append(updates, c)
		}
	}
	columns := []string{"kind", "name", "labels", "annotations", "spec", "hash", "source_file", "source_line", "revision_id"}
	copyRows := func(table string, cs []state.Change) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, columns,
			pgx.CopyFromSlice(len(cs), func(i int) ([]any, error) { return objectRow(cs[i], revisionID) }))
		return err
	}
	if len(creates) > 0 {
		if err := copyRows("objects", creates); err != nil {
			return fmt.Errorf("create objects: %w", err)
		}
	}
	if len(updates) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `
		CREATE TEMPORARY TABLE objects_stage (
			kind text COLLATE "C", name text COLLATE "C",
			labels jsonb, annotations jsonb, spec jsonb, hash text,
			source_file text, source_line integer, revision_id bigint
		) ON COMMIT DROP`)
	if err != nil {
		return fmt.Errorf("create staging table: %w", err)
	}
	if err := copyRows("objects_stage", updates); err != nil {
		return fmt.Errorf("stage object updates: %w", err)
	}
	_, err = tx.Exec(ctx, `
		INSERT INTO objects AS o (kind, name, labels, annotations, spec, hash, source_file, source_line, revision_id)
		SELECT kind, name, labels, annotations, spec, hash, source_file, source_line, revision_id
		FROM objects_stage
		ON CONFLICT (kind, name) DO UPDATE SET
			labels      = excluded.labels,
			annotations = excluded.annotations,
			spec        = excluded.spec,
			hash        = excluded.hash,
			source_file = excluded.source_file,
			source_line = excluded.source_line,
			revision_id = excluded.revision_id,
			generation  = o.generation + 1,
			updated_at  = now()`)
	if err != nil {
		return fmt.Errorf("update objects: %w", err)
	}
	return nil
}

// objectRow is a create or update as a row for writeObjects' columns. JSON
// goes as []byte, which pgx sends as is.
func objectRow(c state.Change, revisionID int64) ([]any, error) {
	o := c.Object
	labels, err := mapJSON(o.Labels)
	if err != nil {
		return nil, fmt.Errorf("%s: labels: %w", c.Key, err)
	}
	annotations, err := mapJSON(o.Annotations)
	if err != nil {
		return nil, fmt.Errorf("%s: annotations: %w", c.Key, err)
	}
	specJSON, err := json.Marshal(o.Spec)
	if err != nil {
		return nil, fmt.Errorf("%s: spec: %w", c.Key, err)
	}
	hash := c.NewHash
	if hash == "" {
		hash = o.Hash()
	}
	return []any{string(o.Kind), o.Name, labels, annotations, specJSON, hash, o.Source.File, int32(o.Source.Line), revisionID}, nil
}

func deleteObjects(ctx context.Context, tx pgx.Tx, changes []state.Change) error {
	var kinds, names []string
	for _, c := range changes {
		if c.Action == state.ActionDelete {
			kinds = append(kinds, string(c.Key.Kind))
			names = append(names, c.Key.Name)
		}
	}
	if len(kinds) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `
		DELETE FROM objects o
		USING unnest($1::text[], $2::text[]) AS d(kind, name)
		WHERE o.kind = d.kind AND o.name = d.name`, kinds, names)
	if err != nil {
		return fmt.Errorf("delete objects: %w", err)
	}
	return nil
}

// mapJSON renders labels or annotations; nil and empty both become {}.
func mapJSON(m map[string]string) ([]byte, error) {
	if len(m) == 0 {
		return []byte("{}"), nil
	}
	return json.Marshal(m)
}

// nullableJSON renders v, or SQL NULL when null is true.
func nullableJSON(v any, null bool) ([]byte, error) {
	if null {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return b, nil
}

// maxStoredErrors bounds how many errors of a revision are stored.
const maxStoredErrors = 200

// storableErrors is errs as stored with a revision or the status: at most
// maxStoredErrors (then one that counts the rest), each message bounded
// (textlimit.Message), every string made safe.
func storableErrors(errs spec.ErrorList) spec.ErrorList {
	if errs == nil {
		return nil
	}
	n := min(len(errs), maxStoredErrors)
	out := make(spec.ErrorList, n, n+1)
	for i, e := range errs[:n] {
		out[i] = spec.Error{File: textlimit.Bound(e.File, 1024), Line: e.Line, Message: textlimit.Message(e.Message)}
	}
	if rest := len(errs) - n; rest > 0 {
		out = append(out, spec.Error{File: "(certops)", Message: fmt.Sprintf("… and %d more errors", rest)})
	}
	return out
}

// storableConditions is conds with every message bounded (textlimit.Message).
func storableConditions(conds []state.Condition) []state.Condition {
	if conds == nil {
		return nil
	}
	out := make([]state.Condition, len(conds))
	for i, c := range conds {
		c.Message = textlimit.Message(c.Message)
		out[i] = c
	}
	return out
}
