// Package notify tells people about alerts through the NotificationChannels
// of the AlertPolicy in Git: Slack incoming webhooks, SMTP mail, signed
// generic webhooks, Alertmanager, PagerDuty and Microsoft Teams. Each alert
// goes to the channels the policy routes it to by the labels of its
// certificate and agent (spec.AlertPolicySpec.ChannelsFor; spec.notify by
// default).
//
// Nothing here sends on the caller's time. Sync (the firing alerts, called
// after every evaluation on every replica; an evaluation older than one
// already applied is ignored) and Event (one-off failures, called from
// any replica) only write to an outbox in Postgres, in one transaction each;
// Run delivers due messages, channel by channel, with retries and
// exponential backoff, and records every outcome (pending, sent, failed,
// dead). So a slow or broken receiver never holds up reconciliation, and
// neither a restart nor a leader change sends anything twice:
//
//   - an alert that starts firing is announced once per channel ("firing");
//   - while it keeps firing, it is announced again every renotifyInterval of
//     the AlertPolicy (default DefaultRenotifyInterval) ("renotify");
//   - when it stops firing, the channel is told once ("resolved"), unless the
//     same alert for the same subject fires at another severity, whose own
//     message says it all;
//   - an event is enqueued once per alert key and Since, however often it is
//     reported.
//
// Secrets (the Slack and Teams webhook URLs, the SMTP password, the webhook
// HMAC secret, the Alertmanager bearer token, the PagerDuty routing key)
// are read from their files at every attempt, so rotating a mounted Secret
// needs no restart, and never appear in errors or logs.
package notify

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
	"github.com/certops/certops/textlimit"
)

// DefaultRenotifyInterval is how often a still-firing alert is announced
// again when the AlertPolicy sets no renotifyInterval.
const DefaultRenotifyInterval = 4 * time.Hour

// Message kinds: why a message was sent.
const (
	KindFiring   = "firing"
	KindRenotify = "renotify"
	KindResolved = "resolved"
	KindEvent    = "event"
)

// Message statuses: whether the alert fires.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Channel types, as the channel_type metric label.
const (
	ChannelSlack   = "slack"
	ChannelSMTP    = "smtp"
	ChannelWebhook = "webhook"
)

// Store is the notification state and outbox; *store.Store implements it.
type Store interface {
	SyncNotifications(ctx context.Context, at time.Time, decide func(current []store.NotificationState) (store.NotificationUpdate, error)) (bool, error)
	EnqueueNotifications(ctx context.Context, msgs []store.NewNotification) (int, error)
	NotificationRoutes(ctx context.Context) (*spec.AlertPolicySpec, map[string]*spec.NotificationChannelSpec, error)
	ObjectLabels(ctx context.Context, kind spec.Kind, names []string) (map[string]map[string]string, error)
	DueNotificationChannels(ctx context.Context, now time.Time) ([]string, error)
	ClaimNotification(ctx context.Context, channel string, now time.Time, lease time.Duration) (store.Notification, bool, error)
	RecordNotificationResult(ctx context.Context, id int64, attempt int, r store.NotificationResult) (bool, error)
	NotificationQueueLength(ctx context.Context) (int, error)
	PruneNotifications(ctx context.Context, before time.Time) (int64, error)
}

// Options tune delivery; zero fields take the defaults in parentheses.
type Options struct {
	// PollInterval is how often Run looks for due messages (5s). Sync and
	// Event on the same replica wake it at once.
	PollInterval time.Duration
	// AttemptTimeout bounds one delivery attempt (30s).
	AttemptTimeout time.Duration
	// BackoffBase is the wait after the first failed attempt; it doubles
	// after each further failure (30s) up to BackoffMax (1h).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxAttempts is the number of attempts before a message is given up
	// as dead (12: about eight hours of trying with the default backoff).
	MaxAttempts int
	// Retention is how long sent and dead messages, and the state of
	// resolved alerts, are kept (720h).
	Retention time.Duration
	// HTTPClient posts to Slack and webhooks. The default follows no
	// redirects and trusts RootCAs.
	HTTPClient *http.Client
	// RootCAs are the CAs trusted for SMTP STARTTLS and, with the default
	// HTTPClient, HTTPS (the system's when nil).
	RootCAs *x509.CertPool
	// Hostname is the name given in SMTP EHLO (os.Hostname()).
	Hostname string
	// Now is the clock for delivery (time.Now).
	Now func() time.Time
}

// Notifier turns alerts into messages and delivers them.
type Notifier struct {
	st      Store
	logger  *slog.Logger
	metrics *Metrics
	opts    Options
	// wake tells Run that messages were enqueued.
	wake chan struct{}
}

// New returns a Notifier working on st. logger and metrics may be nil.
func New(st Store, logger *slog.Logger, metrics *Metrics, opts Options) *Notifier {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts = withDefaults(opts)
	return &Notifier{st: st, logger: logger, metrics: metrics, opts: opts, wake: make(chan struct{}, 1)}
}

func withDefaults(o Options) Options {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&o.PollInterval, 5*time.Second)
	set(&o.AttemptTimeout, 30*time.Second)
	set(&o.BackoffBase, 30*time.Second)
	set(&o.BackoffMax, time.Hour)
	set(&o.Retention, 30*24*time.Hour)
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 12
	}
	if o.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if o.RootCAs != nil {
			tr.TLSClientConfig.RootCAs = o.RootCAs
		}
		o.HTTPClient = &http.Client{
			Transport: tr,
			// A signed payload goes only where it was addressed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
		if o.Hostname == "" {
			o.Hostname = "localhost"
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Message is what a notification says. The outbox keeps it as JSON and the
// webhook channel posts it (see WebhookPayload).
type Message struct {
	// Kind is KindFiring, KindRenotify, KindResolved or KindEvent.
	Kind string `json:"kind"`
	// Status is "firing" or "resolved" (events are "firing").
	Status string      `json:"status"`
	Alert  alert.Alert `json:"alert"`
	// At is when certops decided to send the message.
	At time.Time `json:"at"`
}

// Sync records the alerts firing at now and enqueues what the channels of
// policy must be told: firing, renotify and resolved messages, each once
// (see the package documentation). channels holds the NotificationChannels
// by name; policy may be nil (no AlertPolicy: nothing is sent, and the state
// of channels no longer notified is dropped). now is the time of the
// evaluation that found firing: syncs take effect in the order of now, and
// one older than a sync already applied (from another replica, or a former
// leader) is ignored, so the leader should call Sync but a second caller
// does no harm. Sync never waits for delivery.
func (n *Notifier) Sync(ctx context.Context, policy *spec.AlertPolicySpec, channels map[string]*spec.NotificationChannelSpec, firing []alert.Alert, now time.Time) error {
	renotify, err := renotifyInterval(policy)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	targets, err := n.targets(policy, channels)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	route, err := n.router(ctx, policy, firing)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	var enqueued int
	applied, err := n.st.SyncNotifications(ctx, now, func(current []store.NotificationState) (store.NotificationUpdate, error) {
		up, err := plan(current, firing, targets, route, now, renotify)
		enqueued = len(up.Enqueue)
		return up, err
	})
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	if !applied {
		n.logger.Debug("notification sync skipped: a later evaluation was synced already", "at", now)
		return nil
	}
	if enqueued > 0 {
		n.logger.Info("notifications enqueued", "count", enqueued, "firing", len(firing))
		n.wakeUp()
	}
	return nil
}

// SyncApplied is Sync with the AlertPolicy and NotificationChannels applied
// from Git, as Event uses them.
func (n *Notifier) SyncApplied(ctx context.Context, firing []alert.Alert, now time.Time) error {
	policy, channels, err := n.st.NotificationRoutes(ctx)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return n.Sync(ctx, policy, channels, firing, now)
}

// Event enqueues a one-off event (issuance, deploy or backup failed,
// reconcile stalled, ...) for the channels of the AlertPolicy applied from
// Git. It is enqueued once per a.Key() and a.Since: reporting the same
// failure again does nothing, so a.Since must be set (to when the failure
// happened). Any replica may call Event.
func (n *Notifier) Event(ctx context.Context, a alert.Alert) error {
	if a.Since.IsZero() {
		return fmt.Errorf("notify: event %s has no Since", a.Key())
	}
	policy, channels, err := n.st.NotificationRoutes(ctx)
	if err != nil {
		return fmt.Errorf("notify: event %s: %w", a.Key(), err)
	}
	targets, err := n.targets(policy, channels)
	if err != nil {
		return fmt.Errorf("notify: event %s: %w", a.Key(), err)
	}
	route, err := n.router(ctx, policy, []alert.Alert{a})
	if err != nil {
		return fmt.Errorf("notify: event %s: %w", a.Key(), err)
	}
	routed := route(a)
	now := n.opts.Now()
	payload, err := payloadOf(Message{Kind: KindEvent, Status: StatusFiring, Alert: a, At: now})
	if err != nil {
		return fmt.Errorf("notify: event %s: %w", a.Key(), err)
	}
	dedup := a.Key() + "@" + a.Since.UTC().Format(time.RFC3339Nano)
	msgs := make([]store.NewNotification, 0, len(targets))
	for _, c := range targets {
		if !slices.Contains(routed, c.Name) {
			continue
		}
		msgs = append(msgs, store.NewNotification{Channel: c, AlertKey: a.Key(), Kind: KindEvent,
			Payload: payload, DedupKey: dedup, CreatedAt: now})
	}
	added, err := n.st.EnqueueNotifications(ctx, msgs)
	if err != nil {
		return fmt.Errorf("notify: event %s: %w", a.Key(), err)
	}
	if added > 0 {
		n.logger.Info("notification event enqueued", "alert", a.Key(), "channels", added)
		n.wakeUp()
	}
	return nil
}

// targets are the channels policy names (spec.AlertPolicySpec.AllChannels:
// its notify, then its routes'), in the policy's order. A name without a
// channel (validation rules that out) is skipped with a warning.
func (n *Notifier) targets(policy *spec.AlertPolicySpec, channels map[string]*spec.NotificationChannelSpec) ([]store.NotificationChannel, error) {
	if policy == nil {
		return nil, nil
	}
	var out []store.NotificationChannel
	for _, name := range policy.AllChannels() {
		if slices.ContainsFunc(out, func(c store.NotificationChannel) bool { return c.Name == name }) {
			continue
		}
		c := channels[name]
		typ := channelType(c)
		if typ == "" {
			n.logger.Warn("AlertPolicy notifies a channel that does not exist or has no type; skipped", "channel", name)
			continue
		}
		raw, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("channel %s: %w", name, err)
		}
		out = append(out, store.NotificationChannel{Name: name, Type: typ, Spec: raw})
	}
	return out, nil
}

// channelType is the channel's type (its ChannelX constant); "" for a nil or empty spec.
func channelType(c *spec.NotificationChannelSpec) string {
	switch {
	case c == nil:
		return ""
	case c.Slack != nil:
		return ChannelSlack
	case c.SMTP != nil:
		return ChannelSMTP
	case c.Webhook != nil:
		return ChannelWebhook
	case c.Alertmanager != nil:
		return ChannelAlertmanager
	case c.PagerDuty != nil:
		return ChannelPagerDuty
	case c.Teams != nil:
		return ChannelTeams
	}
	return ""
}

// renotifyInterval is the policy's renotifyInterval, or the default.
func renotifyInterval(policy *spec.AlertPolicySpec) (time.Duration, error) {
	if policy == nil || policy.RenotifyInterval == "" {
		return DefaultRenotifyInterval, nil
	}
	d, err := time.ParseDuration(policy.RenotifyInterval)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("renotifyInterval %q is not a positive duration", policy.RenotifyInterval)
	}
	return d, nil
}

// plan compares the alerts firing at now with what each target channel was
// told and returns the state changes and messages that follow. route gives
// the channels each alert goes to; a channel still in targets that an alert
// no longer routes to (its subject's labels changed) is told nothing more
// about it, and one told it fired is told when it resolves.
func plan(current []store.NotificationState, firing []alert.Alert, targets []store.NotificationChannel, route func(alert.Alert) []string, now time.Time, renotify time.Duration) (store.NotificationUpdate, error) {
	up := store.NotificationUpdate{Channels: targets}
	byKey := make(map[string]alert.Alert, len(firing))
	routed := make(map[string][]string, len(firing))
	var keys []string
	type nameSubject struct{ name, subject string }
	firingSubjects := make(map[nameSubject]bool, len(firing))
	for _, a := range firing {
		if _, dup := byKey[a.Key()]; dup {
			continue
		}
		if a.Since.IsZero() {
			a.Since = now
		}
		byKey[a.Key()] = a
		routed[a.Key()] = route(a)
		keys = append(keys, a.Key())
		firingSubjects[nameSubject{a.Name, a.Subject}] = true
	}
	slices.Sort(keys)

	notified := make(map[string]bool, len(targets))
	for _, c := range targets {
		notified[c.Name] = true
	}
	type pair struct{ key, channel string }
	told := make(map[pair]store.NotificationState, len(current))
	enqueue := func(c store.NotificationChannel, kind string, a alert.Alert) error {
		status := StatusFiring
		if kind == KindResolved {
			status = StatusResolved
		}
		payload, err := payloadOf(Message{Kind: kind, Status: status, Alert: a, At: now})
		if err != nil {
			return err
		}
		up.Enqueue = append(up.Enqueue, store.NewNotification{Channel: c, AlertKey: a.Key(), Kind: kind, Payload: payload, CreatedAt: now})
		return nil
	}

	// What stopped firing: resolved, once.
	for _, st := range current {
		told[pair{st.AlertKey, st.Channel}] = st
		if !notified[st.Channel] {
			up.Delete = append(up.Delete, st) // the channel is no longer notified
			continue
		}
		if _, still := byKey[st.AlertKey]; still && !slices.Contains(routed[st.AlertKey], st.Channel) {
			up.Delete = append(up.Delete, st) // the alert no longer goes to this channel
			continue
		}
		if _, still := byKey[st.AlertKey]; still || st.State != store.NotificationFiring {
			continue
		}
		var a alert.Alert
		if err := json.Unmarshal(st.Alert, &a); err != nil {
			return up, fmt.Errorf("decode stored alert %s: %w", st.AlertKey, err)
		}
		if firingSubjects[nameSubject{a.Name, a.Subject}] {
			up.Delete = append(up.Delete, st) // changed severity: the new one's firing message tells
			continue
		}
		if err := enqueue(channelNamed(targets, st.Channel), KindResolved, a); err != nil {
			return up, err
		}
		st.State, st.LastSent = store.NotificationResolved, now
		up.Upsert = append(up.Upsert, st)
	}

	// What fires: new (or firing again) once; still firing every renotify.
	for _, c := range targets {
		for _, key := range keys {
			a := byKey[key]
			if !slices.Contains(routed[key], c.Name) {
				continue
			}
			st, ok := told[pair{key, c.Name}]
			var kind string
			switch {
			case !ok || st.State != store.NotificationFiring:
				kind, st.Since = KindFiring, a.Since
			case now.Sub(st.LastSent) >= renotify:
				kind = KindRenotify
			default:
				continue
			}
			if err := enqueue(c, kind, a); err != nil {
				return up, err
			}
			raw, err := json.Marshal(a)
			if err != nil {
				return up, err
			}
			up.Upsert = append(up.Upsert, store.NotificationState{AlertKey: key, Channel: c.Name,
				State: store.NotificationFiring, Since: st.Since, LastSent: now, Alert: raw})
		}
	}
	return up, nil
}

func channelNamed(targets []store.NotificationChannel, name string) store.NotificationChannel {
	i := slices.IndexFunc(targets, func(c store.NotificationChannel) bool { return c.Name == name })
	return targets[i] // callers only ask for notified channels
}

// wakeUp tells Run, without blocking, that messages are waiting.
func (n *Notifier) wakeUp() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Bounds of a notification's text; the whole payload stays under about
// 8 KB however long the failure's message was.
const (
	maxSummary     = 512
	maxDescription = textlimit.MaxMessage
	maxLabel       = 256
)

// payloadOf is the stored JSON of m, with its alert's text made safe and
// bounded (textlimit.Bound): every channel renders from it.
func payloadOf(m Message) ([]byte, error) {
	a := m.Alert
	a.Summary = textlimit.Bound(a.Summary, maxSummary)
	a.Description = textlimit.Bound(a.Description, maxDescription)
	if len(a.Labels) > 0 {
		labels := make(map[string]string, len(a.Labels))
		for k, v := range a.Labels {
			labels[textlimit.Bound(k, maxLabel)] = textlimit.Bound(v, maxLabel)
		}
		a.Labels = labels
	}
	m.Alert = a
	return json.Marshal(m)
}
