-- Core schema: desired-state objects, the revision history and the source status.
-- Names and kinds use the "C" collation: byte order matches Go's string order,
-- keeps keyset pagination stable across servers, and lets prefix matches
-- (name LIKE 'abc%') use the primary key index.

-- +goose Up
CREATE TABLE revisions (
    id           bigserial PRIMARY KEY,
    ref          text NOT NULL DEFAULT '',
    commit       text NOT NULL DEFAULT '',
    author       text NOT NULL DEFAULT '',
    message      text NOT NULL DEFAULT '',
    committed_at timestamptz,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL,         -- applied | invalid | prune-blocked | failed
    errors       jsonb,                 -- spec.ErrorList of a refused revision
    counts       jsonb,                 -- per-kind {create, update, delete}
    action_count integer NOT NULL DEFAULT 0
);

-- One row per object touched by a revision, in plan order (seq). No foreign
-- key to revisions: its per-row check made COPYing a 60K-object revision
-- several times slower. Delete a revision's actions together with it.
CREATE TABLE revision_actions (
    revision_id bigint NOT NULL,
    seq         integer NOT NULL,
    action      text NOT NULL,          -- create | update | delete
    kind        text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    PRIMARY KEY (revision_id, seq)
);

-- The applied desired state. hash is spec.Object.Hash of the content written;
-- revision_id is the revision that last wrote the row (informational: no
-- foreign key, so history can be pruned independently).
CREATE TABLE objects (
    kind        text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    labels      jsonb NOT NULL DEFAULT '{}',
    annotations jsonb NOT NULL DEFAULT '{}',
    spec        jsonb NOT NULL,
    hash        text NOT NULL,
    generation  bigint NOT NULL DEFAULT 1,
    source_file text NOT NULL DEFAULT '',
    source_line integer NOT NULL DEFAULT 0,
    revision_id bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
);

-- Label selector queries (labels @> '{"team":"shop"}').
CREATE INDEX objects_labels_idx ON objects USING gin (labels jsonb_path_ops);

-- The reconciler's status, shared by every replica: a single row.
CREATE TABLE source_status (
    id                      integer PRIMARY KEY CHECK (id = 1),
    last_applied_revision   text NOT NULL DEFAULT '',
    last_applied_at         timestamptz,
    last_attempted_revision text NOT NULL DEFAULT '',
    last_attempted_at       timestamptz,
    last_fetch_at           timestamptz,
    errors                  jsonb,
    conditions              jsonb,
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE source_status;
DROP TABLE objects;
DROP TABLE revision_actions;
DROP TABLE revisions;
