-- ACME Renewal Information (RFC 9773) of each certificate version: the
-- window the CA suggests renewing in, when it was last asked, and when to
-- ask next (a failed check, the CA's Retry-After). Versions from CAs
-- without ARI (and from other issuers) leave them NULL; a NULL
-- ari_next_check_at means a day after ari_checked_at (package renewalinfo).

-- +goose Up
ALTER TABLE certificate_versions
    ADD COLUMN ari_window_start  timestamptz,
    ADD COLUMN ari_window_end    timestamptz,
    ADD COLUMN ari_checked_at    timestamptz,
    ADD COLUMN ari_next_check_at timestamptz;

-- +goose Down
ALTER TABLE certificate_versions
    DROP COLUMN ari_window_start,
    DROP COLUMN ari_window_end,
    DROP COLUMN ari_checked_at,
    DROP COLUMN ari_next_check_at;
