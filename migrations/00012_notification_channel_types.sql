-- NotificationChannels of type alertmanager, pagerduty and teams: the outbox
-- accepts their messages.

-- +goose Up
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_channel_type_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_channel_type_check
    CHECK (channel_type IN ('slack', 'smtp', 'webhook', 'alertmanager', 'pagerduty', 'teams'));

-- +goose Down
DELETE FROM notification_outbox WHERE channel_type IN ('alertmanager', 'pagerduty', 'teams');
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_channel_type_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_channel_type_check
    CHECK (channel_type IN ('slack', 'smtp', 'webhook'));
