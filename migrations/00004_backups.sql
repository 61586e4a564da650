-- The history of `certops backup` runs: when each ran, where the dump went,
-- how big it was and whether it worked. The schedule check reads the last
-- successful run per destination; the backup metrics are computed from it.

-- +goose Up
CREATE TABLE backups (
    id          bigserial PRIMARY KEY,
    policy      text COLLATE "C" NOT NULL DEFAULT '',  -- BackupPolicy name; '' for a run without one
    destination text NOT NULL,                         -- /var/backups/certops | s3://bucket/prefix/
    object      text NOT NULL DEFAULT '',              -- certops-<db>-<UTC time>.dump; '' if never named
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    size_bytes  bigint NOT NULL DEFAULT 0,
    result      text NOT NULL CHECK (result IN ('ok', 'failed')),
    error       text NOT NULL DEFAULT ''
);

-- The last successful run of a destination (the schedule check, metrics).
CREATE INDEX backups_ok_idx ON backups (destination, finished_at DESC) WHERE result = 'ok';

-- +goose Down
DROP TABLE backups;
