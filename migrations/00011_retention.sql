-- History retention deletes old certificate_versions. deployments.current_version
-- references them, so every deleted version makes Postgres look for a
-- deployment that still points at it: without an index that is a scan of
-- every deployment per deleted row (about 10 s per batch of 750 at 50,000
-- deployments), with it an index probe. Issuance already rewrites indexed
-- columns of the row (change_xid), so the index costs no HOT updates.

-- +goose Up
CREATE INDEX deployments_current_version_idx ON deployments (current_version);

-- +goose Down
DROP INDEX deployments_current_version_idx;
