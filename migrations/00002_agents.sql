-- Agents, issued certificate versions and per-agent deployments (the server
-- side of the agent protocol). Private keys never reach the server, so no
-- column here ever holds one.

-- +goose Up

-- Last seen, version and hostname of each agent, flushed in batches by the
-- replica the agent talks to. Rows of agents removed from Git are kept.
CREATE TABLE agent_status (
    name      text COLLATE "C" PRIMARY KEY,
    last_seen timestamptz,
    version   text NOT NULL DEFAULT '',
    hostname  text NOT NULL DEFAULT ''
);

-- Every certificate issued to an agent: the leaf and its chain, never a key.
CREATE TABLE certificate_versions (
    id          bigserial PRIMARY KEY,
    certificate text COLLATE "C" NOT NULL,
    agent       text COLLATE "C" NOT NULL,
    spec_hash   text NOT NULL,
    serial      text NOT NULL,
    sha256      text NOT NULL,
    not_before  timestamptz NOT NULL,
    not_after   timestamptz NOT NULL,
    cert_pem    text NOT NULL,
    chain_pem   text NOT NULL DEFAULT '',
    issuer      text NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX certificate_versions_cert_agent_idx ON certificate_versions (certificate, agent, id);

-- One row per (certificate, agent) once the agent asked for issuance or
-- reported. spec_hash, failures and not_before describe the latest issue
-- attempt; current_version is the newest version issued to the agent;
-- installed_* is what the agent last reported installed. change_seq is the
-- agent_changes.seq of the transaction that last wrote the row, so replicas
-- load only the rows changed since they last looked.
CREATE TABLE deployments (
    certificate         text COLLATE "C" NOT NULL,
    agent               text COLLATE "C" NOT NULL,
    spec_hash           text NOT NULL DEFAULT '',
    current_version     bigint REFERENCES certificate_versions (id),
    renew_at            timestamptz,
    installed_serial    text NOT NULL DEFAULT '',
    installed_spec_hash text NOT NULL DEFAULT '',
    installed_not_after timestamptz,
    state               text NOT NULL DEFAULT '',
    last_error          text NOT NULL DEFAULT '',
    last_attempt        timestamptz,
    failures            integer NOT NULL DEFAULT 0,
    not_before          timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    change_seq          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (certificate, agent)
);
CREATE INDEX deployments_change_seq_idx ON deployments (change_seq);
CREATE INDEX deployments_agent_idx ON deployments (agent);

-- Bumped (as the last statement) by every transaction that changes what an
-- agent would see. The row lock orders those transactions, so every row
-- with change_seq <= seq is committed once seq is visible.
CREATE TABLE agent_changes (
    id  integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL
);
INSERT INTO agent_changes (id, seq) VALUES (1, 0);

-- +goose Down
DROP TABLE agent_changes;
DROP TABLE deployments;
DROP TABLE certificate_versions;
DROP TABLE agent_status;
