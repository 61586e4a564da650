package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/certops/certops/spec"
)

// notifyLockKey serialises notification syncs ("certops" + 0x0a): during a
// leader change two replicas may sync at once.
const notifyLockKey int64 = 0x63657274_6f70730a

// Notification states: what a channel was last told about an alert.
const (
	NotificationFiring   = "firing"
	NotificationResolved = "resolved"
)

// Outbox statuses. A message is due while pending or failed; sent and dead
// are final.
const (
	OutboxPending = "pending"
	OutboxSent    = "sent"
	OutboxFailed  = "failed"
	OutboxDead    = "dead"
)

// NotificationState is what one channel has been told about one alert.
type NotificationState struct {
	AlertKey string
	Channel  string
	// State is NotificationFiring or NotificationResolved.
	State    string
	Since    time.Time
	LastSent time.Time
	// Alert is the alert as last seen, as JSON.
	Alert json.RawMessage
}

// NotificationChannel is a channel's current settings: its name, type
// (slack, smtp, webhook, alertmanager, pagerduty or teams) and spec as
// JSON (paths and URLs, never secrets).
type NotificationChannel struct {
	Name string
	Type string
	Spec json.RawMessage
}

// NewNotification is a message to put in the outbox. It is due at CreatedAt.
type NewNotification struct {
	Channel  NotificationChannel
	AlertKey string
	// Kind is firing, resolved, renotify or event.
	Kind    string
	Payload json.RawMessage
	// DedupKey, when set, makes the message unique per channel: enqueuing
	// another with the same channel and key does nothing.
	DedupKey  string
	CreatedAt time.Time
}

// Notification is a message in the outbox.
type Notification struct {
	ID          int64           `json:"id"`
	Channel     string          `json:"channel"`
	ChannelType string          `json:"channelType"`
	ChannelSpec json.RawMessage `json:"channelSpec"`
	AlertKey    string          `json:"alertKey"`
	Kind        string          `json:"kind"`
	Payload     json.RawMessage `json:"payload"`
	Status      string          `json:"status"`
	Attempts    int             `json:"attempts"`
	NextAttempt time.Time       `json:"nextAttempt"`
	LastError   string          `json:"lastError,omitempty"`
	CreatedAt   time.Time       `json:"createdAt"`
	SentAt      *time.Time      `json:"sentAt,omitempty"`
}

// NotificationUpdate is what a notification sync writes.
type NotificationUpdate struct {
	// Upsert replaces (or adds) state rows.
	Upsert []NotificationState
	// Delete removes state rows; only AlertKey and Channel are used.
	Delete []NotificationState
	// Enqueue adds messages to the outbox.
	Enqueue []NewNotification
	// Channels are the current settings of the channels in use: messages
	// of these channels not yet sent are delivered with them from now on.
	Channels []NotificationChannel
}

// SyncNotifications reads the notification state of every (alert, channel)
// pair, lets decide compute the changes and writes them, all in one
// transaction, serialised against concurrent syncs. at is the time of the
// evaluation being synced: when a sync of a later evaluation was already
// applied, decide is not called and applied is false. decide must not block.
func (s *Store) SyncNotifications(ctx context.Context, at time.Time, decide func(current []NotificationState) (NotificationUpdate, error)) (applied bool, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		applied = false
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", notifyLockKey); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO notification_sync AS s (evaluated_at) VALUES ($1)
			ON CONFLICT (id) DO UPDATE SET evaluated_at = excluded.evaluated_at
			WHERE s.evaluated_at <= excluded.evaluated_at`, at)
		if err != nil || tag.RowsAffected() == 0 {
			return err // a later evaluation was synced
		}
		current, err := notificationStates(ctx, tx)
		if err != nil {
			return err
		}
		up, err := decide(current)
		if err != nil {
			return err
		}
		applied = true
		return writeNotificationUpdate(ctx, tx, up)
	})
	if err != nil {
		return false, fmt.Errorf("store: sync notifications: %w", err)
	}
	return applied, nil
}

// NotificationStates returns every notification state row, ordered by
// alert key and channel.
func (s *Store) NotificationStates(ctx context.Context) ([]NotificationState, error) {
	var out []NotificationState
	err := s.inReadTx(ctx, func(tx pgx.Tx) (err error) {
		out, err = notificationStates(ctx, tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: notification states: %w", err)
	}
	return out, nil
}

func notificationStates(ctx context.Context, tx pgx.Tx) ([]NotificationState, error) {
	rows, err := tx.Query(ctx, `
		SELECT alert_key, channel, state, since, last_sent, alert
		FROM notification_state ORDER BY alert_key, channel`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (NotificationState, error) {
		var st NotificationState
		err := row.Scan(&st.AlertKey, &st.Channel, &st.State, &st.Since, &st.LastSent, &st.Alert)
		return st, err
	})
}

func writeNotificationUpdate(ctx context.Context, tx pgx.Tx, up NotificationUpdate) error {
	b := &pgx.Batch{}
	for _, st := range up.Delete {
		b.Queue("DELETE FROM notification_state WHERE alert_key = $1 AND channel = $2", st.AlertKey, st.Channel)
	}
	for _, st := range up.Upsert {
		b.Queue(`
			INSERT INTO notification_state (alert_key, channel, state, since, last_sent, alert)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (alert_key, channel) DO UPDATE SET
				state = excluded.state, since = excluded.since,
				last_sent = excluded.last_sent, alert = excluded.alert`,
			st.AlertKey, st.Channel, st.State, st.Since, st.LastSent, []byte(st.Alert))
	}
	for _, c := range up.Channels {
		b.Queue(`
			UPDATE notification_outbox SET channel_type = $2, channel_spec = $3
			WHERE channel = $1 AND status IN ('pending', 'failed')
			  AND (channel_type <> $2 OR channel_spec <> $3::jsonb)`,
			c.Name, c.Type, []byte(c.Spec))
	}
	for _, m := range up.Enqueue {
		queueInsert(b, m)
	}
	return tx.SendBatch(ctx, b).Close()
}

// queueInsert queues the insert of one outbox message; a duplicate of a
// message with a dedup key is skipped.
func queueInsert(b *pgx.Batch, m NewNotification) *pgx.QueuedQuery {
	var dedup *string
	if m.DedupKey != "" {
		dedup = &m.DedupKey
	}
	return b.Queue(`
		INSERT INTO notification_outbox
			(channel, channel_type, channel_spec, alert_key, kind, payload, status, next_attempt, dedup_key, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $7)
		ON CONFLICT (channel, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING`,
		m.Channel.Name, m.Channel.Type, []byte(m.Channel.Spec), m.AlertKey, m.Kind, []byte(m.Payload), m.CreatedAt, dedup)
}

// EnqueueNotifications adds messages to the outbox in one transaction and
// returns how many were added: messages whose dedup key is already in the
// outbox for their channel are skipped.
func (s *Store) EnqueueNotifications(ctx context.Context, msgs []NewNotification) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	added := 0
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		added = 0
		b := &pgx.Batch{}
		for _, m := range msgs {
			queueInsert(b, m).Exec(func(tag pgconn.CommandTag) error {
				added += int(tag.RowsAffected())
				return nil
			})
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, fmt.Errorf("store: enqueue notifications: %w", err)
	}
	return added, nil
}

// NotificationRoutes returns, from the applied desired state, the spec of
// the AlertPolicy (nil when none is applied) and of every
// NotificationChannel by name, decoded as every stored object is.
func (s *Store) NotificationRoutes(ctx context.Context) (*spec.AlertPolicySpec, map[string]*spec.NotificationChannelSpec, error) {
	var policy *spec.AlertPolicySpec
	channels := make(map[string]*spec.NotificationChannelSpec)
	err := s.inReadTx(ctx, func(tx pgx.Tx) error {
		var name string
		var raw json.RawMessage
		err := tx.QueryRow(ctx, "SELECT name, spec FROM objects WHERE kind = $1 ORDER BY name LIMIT 1",
			string(spec.KindAlertPolicy)).Scan(&name, &raw)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			o, err := decodeObject(spec.KindAlertPolicy, name, nil, nil, raw)
			if err != nil {
				return err
			}
			policy = o.AlertPolicy()
		}
		rows, err := tx.Query(ctx, "SELECT name, spec FROM objects WHERE kind = $1", string(spec.KindNotificationChannel))
		if err != nil {
			return err
		}
		_, err = pgx.ForEachRow(rows, []any{&name, &raw}, func() error {
			o, err := decodeObject(spec.KindNotificationChannel, name, nil, nil, raw)
			if err != nil {
				return err
			}
			channels[name] = o.NotificationChannel()
			return nil
		})
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: notification routes: %w", err)
	}
	return policy, channels, nil
}

// DueNotificationChannels returns the channels that have messages due at now.
func (s *Store) DueNotificationChannels(ctx context.Context, now time.Time) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT DISTINCT channel FROM notification_outbox
		WHERE status IN ('pending', 'failed') AND next_attempt <= $1
		ORDER BY channel`, now)
	if err != nil {
		return nil, fmt.Errorf("store: due notification channels: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: due notification channels: %w", err)
	}
	return out, nil
}

// ClaimNotification takes the channel's next message due at now for one
// delivery attempt: its attempts count goes up by one and its next attempt
// moves to now+lease, so no other replica takes it while the attempt runs
// (and it is retried if this one dies). ok is false when nothing is due.
func (s *Store) ClaimNotification(ctx context.Context, channel string, now time.Time, lease time.Duration) (n Notification, ok bool, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			UPDATE notification_outbox SET attempts = attempts + 1, next_attempt = $3
			WHERE id = (
				SELECT id FROM notification_outbox
				WHERE channel = $1 AND status IN ('pending', 'failed') AND next_attempt <= $2
				ORDER BY next_attempt, id
				LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING `+notificationColumns, channel, now, now.Add(lease))
		if err != nil {
			return err
		}
		n, err = pgx.CollectExactlyOneRow(rows, scanNotification)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		ok = err == nil
		return err
	})
	if err != nil {
		return Notification{}, false, fmt.Errorf("store: claim notification: %w", err)
	}
	return n, ok, nil
}

// NotificationResult is the outcome of one delivery attempt.
type NotificationResult struct {
	// Status is OutboxSent, OutboxFailed (retried at NextAttempt) or OutboxDead.
	Status      string
	Error       string
	At          time.Time
	NextAttempt time.Time
}

// RecordNotificationResult records the outcome of attempt number attempt of
// message id. A result without an error (a success) keeps the error of the
// previous attempt, if any, for the record. It does nothing (and returns false) when the message was
// claimed again since, by a replica that took over an expired attempt.
func (s *Store) RecordNotificationResult(ctx context.Context, id int64, attempt int, r NotificationResult) (bool, error) {
	var sentAt *time.Time
	if r.Status == OutboxSent {
		sentAt = &r.At
	}
	next := r.NextAttempt
	if next.IsZero() {
		next = r.At
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE notification_outbox
		SET status = $3, last_error = CASE WHEN $4 = '' THEN last_error ELSE $4 END,
			next_attempt = $5, sent_at = $6
		WHERE id = $1 AND attempts = $2 AND status IN ('pending', 'failed')`,
		id, attempt, r.Status, r.Error, next, sentAt)
	if err != nil {
		return false, fmt.Errorf("store: record notification result: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// NotificationQuery selects outbox messages for ListNotifications. Zero
// fields do not filter.
type NotificationQuery struct {
	Channel string
	Status  string
	// Limit is the number of messages, newest first: default 100, at most 1000.
	Limit int
}

// ListNotifications returns outbox messages, newest first.
func (s *Store) ListNotifications(ctx context.Context, q NotificationQuery) ([]Notification, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)
	rows, err := s.pool.Query(ctx, `SELECT `+notificationColumns+` FROM notification_outbox
		WHERE ($1 = '' OR channel = $1) AND ($2 = '' OR status = $2)
		ORDER BY id DESC LIMIT $3`, q.Channel, q.Status, limit)
	if err != nil {
		return nil, fmt.Errorf("store: list notifications: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanNotification)
	if err != nil {
		return nil, fmt.Errorf("store: list notifications: %w", err)
	}
	return out, nil
}

// NotificationQueueLength is the number of messages not yet sent and not
// given up (pending or failed).
func (s *Store) NotificationQueueLength(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM notification_outbox WHERE status IN ('pending', 'failed')").Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: notification queue length: %w", err)
	}
	return n, nil
}

// PruneNotifications deletes sent and dead messages created before before,
// and the state of alerts resolved before it. It returns how many rows went.
func (s *Store) PruneNotifications(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		a, err := tx.Exec(ctx, "DELETE FROM notification_outbox WHERE status IN ('sent', 'dead') AND created_at < $1", before)
		if err != nil {
			return err
		}
		b, err := tx.Exec(ctx, "DELETE FROM notification_state WHERE state = 'resolved' AND last_sent < $1", before)
		if err != nil {
			return err
		}
		n = a.RowsAffected() + b.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune notifications: %w", err)
	}
	return n, nil
}

const notificationColumns = `id, channel, channel_type, channel_spec, alert_key, kind, payload, status,
	attempts, next_attempt, last_error, created_at, sent_at`

func scanNotification(row pgx.CollectableRow) (Notification, error) {
	var n Notification
	err := row.Scan(&n.ID, &n.Channel, &n.ChannelType, &n.ChannelSpec, &n.AlertKey, &n.Kind, &n.Payload, &n.Status,
		&n.Attempts, &n.NextAttempt, &n.LastError, &n.CreatedAt, &n.SentAt)
	return n, err
}
