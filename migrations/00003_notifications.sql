-- Notifications: what each channel has been told about each alert, and the
-- outbox of messages waiting to be (or already) delivered. Only the leader
-- writes notification_state; any replica may deliver from the outbox.

-- +goose Up

-- One row per (alert, channel) the channel has been told about. state is
-- 'firing' while the alert fires and 'resolved' once the resolved message was
-- enqueued; alert is the alert as last seen (a resolved message needs its
-- summary). Resolved rows are pruned after a while.
CREATE TABLE notification_state (
    alert_key text COLLATE "C" NOT NULL,
    channel   text COLLATE "C" NOT NULL,
    state     text NOT NULL CHECK (state IN ('firing', 'resolved')),
    since     timestamptz NOT NULL,
    last_sent timestamptz NOT NULL,
    alert     jsonb NOT NULL,
    PRIMARY KEY (alert_key, channel)
);

-- The evaluation time of the newest sync applied: a sync of an older
-- evaluation (from a replica that was slower, or a leader that lost its
-- lease) is ignored, so syncs take effect in evaluation order.
CREATE TABLE notification_sync (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    evaluated_at timestamptz NOT NULL
);

-- Messages to deliver, one per channel. channel_spec is the channel's
-- settings (file paths and URLs, never secrets). A message is due when its
-- status is pending or failed and next_attempt has passed; while an attempt
-- runs, next_attempt is pushed past the attempt's timeout, so a replica that
-- dies mid-attempt leaves it to be retried. dedup_key, when set, makes a
-- message unique per channel (one-off events).
CREATE TABLE notification_outbox (
    id           bigserial PRIMARY KEY,
    channel      text COLLATE "C" NOT NULL,
    channel_type text NOT NULL CHECK (channel_type IN ('slack', 'smtp', 'webhook')),
    channel_spec jsonb NOT NULL,
    alert_key    text COLLATE "C" NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('firing', 'resolved', 'renotify', 'event')),
    payload      jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'dead')),
    attempts     integer NOT NULL DEFAULT 0,
    next_attempt timestamptz NOT NULL,
    last_error   text NOT NULL DEFAULT '',
    dedup_key    text COLLATE "C",
    created_at   timestamptz NOT NULL,
    sent_at      timestamptz
);
CREATE INDEX notification_outbox_due_idx ON notification_outbox (status, next_attempt);
CREATE UNIQUE INDEX notification_outbox_dedup_idx ON notification_outbox (channel, dedup_key)
    WHERE dedup_key IS NOT NULL;

-- +goose Down
DROP TABLE notification_outbox;
DROP TABLE notification_sync;
DROP TABLE notification_state;
