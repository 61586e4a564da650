-- ACME Renewal Information (RFC 9773) of each certificate version: the
-- window the CA suggests renewing in, and when it was last asked. Versions
-- from CAs without ARI (and from other issuers) leave them NULL.

-- +goose Up
ALTER TABLE certificate_versions
    ADD COLUMN ari_window_start timestamptz,
    ADD COLUMN ari_window_end   timestamptz,
    ADD COLUMN ari_checked_at   timestamptz;

-- +goose Down
ALTER TABLE certificate_versions
    DROP COLUMN ari_window_start,
    DROP COLUMN ari_window_end,
    DROP COLUMN ari_checked_at;
