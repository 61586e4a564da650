-- Deployments no longer bump the single agent_changes row: its row lock,
-- held until the commit is flushed, serialized every issuance. Instead
-- each write takes change_seq from a sequence (in the statement that
-- updates the row, so it grows per row) and records its transaction id in
-- change_xid. A replica reads the rows whose writer's id is at or above
-- the xmin of its previous read's snapshot, then moves to the xmin of the
-- new snapshot: every transaction below it has finished, so a transaction
-- that commits late is read on the next round, never skipped.
-- agent_changes.seq is now bumped by the ACME challenge writes only.

-- +goose Up
CREATE SEQUENCE agent_change_seq;
SELECT setval('agent_change_seq', (SELECT seq FROM agent_changes WHERE id = 1) + 1, false);
ALTER TABLE deployments ADD COLUMN change_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX deployments_change_xid_idx ON deployments (change_xid);
DROP INDEX deployments_change_seq_idx; -- no query reads rows by change_seq any more

-- +goose Down
CREATE INDEX deployments_change_seq_idx ON deployments (change_seq);
DROP INDEX deployments_change_xid_idx;
ALTER TABLE deployments DROP COLUMN change_xid;
DROP SEQUENCE agent_change_seq;
