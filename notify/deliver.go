package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
	"github.com/certops/certops/textlimit"
)

// leaseMargin is how long past the attempt timeout a claimed message stays
// with the replica that claimed it.
const leaseMargin = 30 * time.Second

// pruneEvery is how often Run deletes what Options.Retention lets go.
const pruneEvery = time.Hour

// maxErrorLen bounds the error recorded with a message.
const maxErrorLen = 1000

// Run delivers due messages until ctx ends, then waits for the attempts in
// flight and returns ctx's error. Each channel is served by its own worker,
// one message at a time, so a slow receiver delays only its own channel.
// Every replica may run it: a message is claimed by one replica at a time.
func (n *Notifier) Run(ctx context.Context) error {
	ticker := time.NewTicker(n.opts.PollInterval)
	defer ticker.Stop()
	busy := make(map[string]bool)
	done := make(chan string)
	var lastPrune time.Time
	for {
		n.startWorkers(ctx, busy, done)
		n.observeQueue(ctx)
		if now := n.opts.Now(); now.Sub(lastPrune) >= pruneEvery {
			lastPrune = now
			n.prune(ctx, now)
		}
		select {
		case <-ctx.Done():
			for len(busy) > 0 {
				delete(busy, <-done)
			}
			return ctx.Err()
		case channel := <-done:
			delete(busy, channel)
		case <-ticker.C:
		case <-n.wake:
		}
	}
}

// startWorkers starts a worker for every channel with due messages that
// has none yet; each sends its channel's name on done when it stops.
func (n *Notifier) startWorkers(ctx context.Context, busy map[string]bool, done chan<- string) {
	channels, err := n.st.DueNotificationChannels(ctx, n.opts.Now())
	if err != nil {
		if ctx.Err() == nil {
			n.logger.Warn("look for due notifications", "err", err)
		}
		return
	}
	for _, channel := range channels {
		if busy[channel] {
			continue
		}
		busy[channel] = true
		go func() {
			defer func() { done <- channel }()
			n.drain(ctx, channel)
		}()
	}
}

// drain delivers the channel's due messages one by one until none is due.
func (n *Notifier) drain(ctx context.Context, channel string) {
	for ctx.Err() == nil {
		m, ok, err := n.st.ClaimNotification(ctx, channel, n.opts.Now(), n.opts.AttemptTimeout+leaseMargin)
		if err != nil {
			if ctx.Err() == nil {
				n.logger.Warn("claim notification", "channel", channel, "err", err)
			}
			return
		}
		if !ok {
			return
		}
		n.attempt(ctx, m)
	}
}

// attempt makes one delivery attempt of m and records its outcome. An
// attempt cut short by shutdown is not recorded: its claim runs out and the
// message is retried.
func (n *Notifier) attempt(ctx context.Context, m store.Notification) {
	actx, cancel := context.WithTimeout(ctx, n.opts.AttemptTimeout)
	err := n.send(actx, m)
	cancel()
	if err != nil && ctx.Err() != nil {
		return
	}
	now := n.opts.Now()
	r := store.NotificationResult{Status: store.OutboxSent, At: now}
	log := n.logger.With("id", m.ID, "channel", m.Channel, "alert", m.AlertKey, "kind", m.Kind, "attempt", m.Attempts)
	switch {
	case err == nil:
		log.Info("notification sent")
	case m.Attempts >= n.opts.MaxAttempts:
		r.Status, r.Error = store.OutboxDead, truncate(err.Error())
		log.Error("notification failed; giving up", "err", err)
	default:
		r.Status, r.Error = store.OutboxFailed, truncate(err.Error())
		r.NextAttempt = now.Add(backoff(n.opts.BackoffBase, n.opts.BackoffMax, m.Attempts))
		log.Warn("notification failed; will retry", "err", err, "next", r.NextAttempt)
	}
	n.metrics.observe(m.ChannelType, r.Status)
	// Record even when shutdown began after a successful send, so it is not sent again.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	recorded, rerr := n.st.RecordNotificationResult(rctx, m.ID, m.Attempts, r)
	switch {
	case rerr != nil:
		log.Warn("record notification result", "err", rerr)
	case !recorded:
		log.Warn("notification result not recorded: the message was claimed again after this attempt ran out of time")
	}
}

// send delivers m once through its channel.
func (n *Notifier) send(ctx context.Context, m store.Notification) error {
	var c spec.NotificationChannelSpec
	if err := json.Unmarshal(m.ChannelSpec, &c); err != nil {
		return fmt.Errorf("decode channel settings: %w", err)
	}
	var msg Message
	if err := json.Unmarshal(m.Payload, &msg); err != nil {
		return fmt.Errorf("decode message: %w", err)
	}
	id := deliveryID(m)
	switch {
	case c.Slack != nil:
		return n.sendSlack(ctx, c.Slack, msg)
	case c.SMTP != nil:
		return n.sendSMTP(ctx, c.SMTP, msg, id)
	case c.Webhook != nil:
		return n.sendWebhook(ctx, c.Webhook, m.Channel, msg, id)
	case c.Alertmanager != nil:
		return n.sendAlertmanager(ctx, c.Alertmanager, msg)
	case c.PagerDuty != nil:
		return n.sendPagerDuty(ctx, c.PagerDuty, msg)
	case c.Teams != nil:
		return n.sendTeams(ctx, c.Teams, msg)
	}
	return errors.New("channel has no settings of a known type")
}

// deliveryID identifies a message across its attempts (and across
// databases, unlike the row id alone): receivers use it to drop duplicates.
func deliveryID(m store.Notification) string {
	h := sha256.Sum256([]byte(m.Channel + "\x00" + strconv.FormatInt(m.ID, 10) + "\x00" + m.CreatedAt.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(h[:16])
}

// backoff is the wait after the attempts-th failed attempt: base doubled
// for each earlier failure, at most max.
func backoff(base, max time.Duration, attempts int) time.Duration {
	d := base
	for i := 1; i < attempts && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// observeQueue sets the queue gauge.
func (n *Notifier) observeQueue(ctx context.Context) {
	if n.metrics == nil {
		return
	}
	count, err := n.st.NotificationQueueLength(ctx)
	if err != nil {
		if ctx.Err() == nil {
			n.logger.Warn("count queued notifications", "err", err)
		}
		return
	}
	n.metrics.queue.Set(float64(count))
}

// prune deletes sent and dead messages, and resolved state, older than
// the retention.
func (n *Notifier) prune(ctx context.Context, now time.Time) {
	count, err := n.st.PruneNotifications(ctx, now.Add(-n.opts.Retention))
	switch {
	case err != nil && ctx.Err() == nil:
		n.logger.Warn("prune notifications", "err", err)
	case count > 0:
		n.logger.Info("pruned old notifications", "rows", count)
	}
}

func truncate(s string) string { return textlimit.Bound(s, maxErrorLen) }
