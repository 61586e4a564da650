-- Revocations declared in Git (spec kind Revocation), written by the
-- reconciler's apply in the same fenced transaction as the objects. A row
-- is final: removing the Revocation object deletes nothing here. serial is
-- lowercase hex as certificate_versions stores it; issuer is the Issuer
-- name the serial was issued by. ACME issuers revoke at the CA: acme_state
-- is 'pending' until the leader asked the CA ('revoked' or 'failed', with
-- acme_error and acme_attempts), '' for local CA issuers.
-- +goose Up
CREATE TABLE revocations (
    id            bigserial PRIMARY KEY,
    issuer        text COLLATE "C" NOT NULL,
    serial        text NOT NULL,
    certificate   text COLLATE "C" NOT NULL,
    revocation    text COLLATE "C" NOT NULL,
    reason        smallint NOT NULL,
    revoked_at    timestamptz NOT NULL,
    revision_id   bigint NOT NULL,
    acme_state    text NOT NULL DEFAULT '',
    acme_error    text NOT NULL DEFAULT '',
    acme_attempts integer NOT NULL DEFAULT 0,
    acme_at       timestamptz,
    UNIQUE (issuer, serial)
);
CREATE INDEX revocations_certificate_idx ON revocations (certificate);
CREATE INDEX revocations_acme_pending_idx ON revocations (id) WHERE acme_state = 'pending';

-- The signed CRL of each local CA issuer: number grows by one with every
-- CRL signed (RFC 5280 5.2.3); covers is the highest revocations.id it
-- lists, so a CRL older than the newest revocation is signed again.
CREATE TABLE crls (
    issuer      text COLLATE "C" PRIMARY KEY,
    number      bigint NOT NULL,
    covers      bigint NOT NULL,
    ca_sha256   text NOT NULL,
    this_update timestamptz NOT NULL,
    next_update timestamptz NOT NULL,
    der         bytea NOT NULL
);

-- OCSP looks a serial up by issuer on every request.
CREATE INDEX certificate_versions_issuer_serial_idx ON certificate_versions (issuer, serial);

-- +goose Down
DROP INDEX certificate_versions_issuer_serial_idx;
DROP TABLE crls;
DROP TABLE revocations;
