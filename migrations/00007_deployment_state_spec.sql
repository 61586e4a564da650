-- The spec hash a deployment's state and last error belong to: the spec of
-- the issue attempt (issued, issue-failed) or of the agent's report
-- (installed, failed, rolled-back) that set them. A state recorded for
-- another spec than the certificate's current one does not define the
-- state for it (see assign.CurrentState).

-- +goose Up
ALTER TABLE deployments ADD COLUMN state_spec_hash text NOT NULL DEFAULT '';
UPDATE deployments SET state_spec_hash = CASE WHEN state = 'installed' THEN installed_spec_hash ELSE spec_hash END;

-- +goose Down
ALTER TABLE deployments DROP COLUMN state_spec_hash;
