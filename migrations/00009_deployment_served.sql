-- What the agent's periodic served checks found at the deployment's
-- verify address (agentproto.ServedReport): the serial and validity of
-- the leaf last served (kept through failed checks: the last thing known
-- to be served), when the latest check ran and its error ('' when it
-- succeeded), and since when the served serial has differed from the
-- installed one (NULL while they are equal, or nothing is installed or
-- served yet). Served checks do not take a change_seq: the agent API's
-- snapshot does not carry these columns, only the read API and alerting
-- read them.

-- +goose Up
ALTER TABLE deployments
    ADD COLUMN served_serial         text NOT NULL DEFAULT '',
    ADD COLUMN served_not_before     timestamptz,
    ADD COLUMN served_not_after      timestamptz,
    ADD COLUMN served_checked_at     timestamptz,
    ADD COLUMN served_error          text NOT NULL DEFAULT '',
    ADD COLUMN served_mismatch_since timestamptz;

-- +goose Down
ALTER TABLE deployments
    DROP COLUMN served_serial,
    DROP COLUMN served_not_before,
    DROP COLUMN served_not_after,
    DROP COLUMN served_checked_at,
    DROP COLUMN served_error,
    DROP COLUMN served_mismatch_since;
