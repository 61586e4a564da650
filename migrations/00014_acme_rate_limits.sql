-- The ACME rate-limit ledger: every certificate an ACME issuer issued, by
-- the exact set of names it certifies, so that orders for one name set stay
-- within the CA's limit per 7 days (spec.acme.rateLimits). Orders in
-- progress carry their issuer and name set, so they count too. A
-- deployment held back by the limit says why in waiting (until not_before).

-- +goose Up
CREATE TABLE acme_issuances (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issuer      text COLLATE "C" NOT NULL,
    name_set    text COLLATE "C" NOT NULL,
    certificate text COLLATE "C" NOT NULL,
    agent       text COLLATE "C" NOT NULL,
    serial      text NOT NULL,
    issued_at   timestamptz NOT NULL,
    -- An ARI-driven renewal (inside the window the CA suggested): Let's
    -- Encrypt exempts those from its limits, so they never wait. They are
    -- counted all the same.
    ari_renewal boolean NOT NULL
);
CREATE INDEX acme_issuances_name_set_idx ON acme_issuances (issuer, name_set, issued_at);

ALTER TABLE acme_orders
    ADD COLUMN issuer      text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN name_set    text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN ari_renewal boolean NOT NULL DEFAULT false;

ALTER TABLE deployments ADD COLUMN waiting text NOT NULL DEFAULT '';

-- The version was an ARI renewal (shown with the certificate's versions).
ALTER TABLE certificate_versions ADD COLUMN ari_renewal boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE certificate_versions DROP COLUMN ari_renewal;
ALTER TABLE deployments DROP COLUMN waiting;
ALTER TABLE acme_orders DROP COLUMN issuer, DROP COLUMN name_set, DROP COLUMN ari_renewal;
DROP TABLE acme_issuances;
