-- The reconcile lease: at most one replica holds it at a time. It expires
-- unless its holder renews it, so a frozen or partitioned leader is replaced;
-- its epoch, raised by every new term, is the fencing token that each write
-- of desired state checks in its own transaction (see store/lease.go).

-- +goose Up
CREATE TABLE leader_lease (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    holder      text NOT NULL DEFAULT '',
    epoch       bigint NOT NULL DEFAULT 0,
    acquired_at timestamptz,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO leader_lease DEFAULT VALUES;

-- +goose Down
DROP TABLE leader_lease;
