package notify_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit/storekit"
)

// sent is an outbox message in brief: channel, alert key and kind.
type sent struct{ Channel, Key, Kind string }

func brief(msgs []store.Notification) []sent {
	var out []sent
	for _, m := range msgs {
		out = append(out, sent{m.Channel, m.AlertKey, m.Kind})
	}
	return out
}

func slackSpec(urlFile string) *spec.NotificationChannelSpec {
	return &spec.NotificationChannelSpec{Slack: &spec.SlackChannel{WebhookURLFile: urlFile, Channel: "#platform-alerts"}}
}

func TestSyncSendsOncePerStateChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOptions())
	channels := map[string]*spec.NotificationChannelSpec{
		"ops":    slackSpec("/etc/certops/slack-ops"),
		"unused": slackSpec("/etc/certops/slack-unused"),
	}
	policy := policyFor("ops")
	shop := expiring("shop", alert.Warning)
	key := shop.Key()

	// Newly firing: one message, however often Sync sees it.
	e.sync(t, policy, channels, t0, shop)
	e.sync(t, policy, channels, t0.Add(30*time.Second), shop)
	e.sync(t, policy, channels, t0.Add(time.Hour), shop)
	want := []sent{{"ops", key, notify.KindFiring}}
	if diff := cmp.Diff(brief(e.messages(t)), want); diff != "" {
		t.Fatalf("after three syncs within the renotify interval (-got +want):\n%s", diff)
	}

	// Still firing after the default interval (4h): announced again, then
	// not again until another interval has passed.
	e.sync(t, policy, channels, t0.Add(notify.DefaultRenotifyInterval), shop)
	e.sync(t, policy, channels, t0.Add(notify.DefaultRenotifyInterval+time.Hour), shop)
	want = append(want, sent{"ops", key, notify.KindRenotify})
	if diff := cmp.Diff(brief(e.messages(t)), want); diff != "" {
		t.Fatalf("after the renotify interval (-got +want):\n%s", diff)
	}

	// No longer firing: resolved, once.
	e.sync(t, policy, channels, t0.Add(5*time.Hour))
	e.sync(t, policy, channels, t0.Add(6*time.Hour))
	want = append(want, sent{"ops", key, notify.KindResolved})
	if diff := cmp.Diff(brief(e.messages(t)), want); diff != "" {
		t.Fatalf("after it stopped firing (-got +want):\n%s", diff)
	}

	// Firing again: a new firing message.
	e.sync(t, policy, channels, t0.Add(7*time.Hour), shop)
	want = append(want, sent{"ops", key, notify.KindFiring})
	if diff := cmp.Diff(brief(e.messages(t)), want); diff != "" {
		t.Fatalf("after it fired again (-got +want):\n%s", diff)
	}

	// The resolved message carries the alert as last seen, and when.
	msgs := e.messages(t)
	var resolved notify.Message
	if err := json.Unmarshal(msgs[2].Payload, &resolved); err != nil {
		t.Fatal(err)
	}
	wantResolved := notify.Message{Kind: notify.KindResolved, Status: notify.StatusResolved, Alert: shop, At: t0.Add(5 * time.Hour)}
	if diff := cmp.Diff(resolved, wantResolved); diff != "" {
		t.Errorf("resolved message (-got +want):\n%s", diff)
	}
}

func TestSyncRenotifyIntervalFromPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOptions())
	channels := map[string]*spec.NotificationChannelSpec{"ops": slackSpec("/s")}
	policy := &spec.AlertPolicySpec{Notify: []string{"ops"}, RenotifyInterval: "30m"}
	a := expiring("shop", alert.Critical)

	for _, at := range []time.Duration{0, 29 * time.Minute, 30 * time.Minute, 59 * time.Minute, 60 * time.Minute} {
		e.sync(t, policy, channels, t0.Add(at), a)
	}
	want := []sent{{"ops", a.Key(), notify.KindFiring}, {"ops", a.Key(), notify.KindRenotify}, {"ops", a.Key(), notify.KindRenotify}}
	if diff := cmp.Diff(brief(e.messages(t)), want); diff != "" {
		t.Errorf("messages (-got +want):\n%s", diff)
	}
}

func TestSyncPerChannelAndSeverityChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOptions())
	channels := map[string]*spec.NotificationChannelSpec{"ops": slackSpec("/a"), "mail": slackSpec("/b")}
	warn, crit := expiring("shop", alert.Warning), expiring("shop", alert.Critical)

	e.sync(t, policyFor("ops"), channels, t0, warn)
	// A channel added to the policy hears about what already fires.
	e.sync(t, policyFor("ops", "mail"), channels, t0.Add(time.Minute), warn)
	// Warning becomes critical: the critical firing message, no "resolved" for the warning.
	e.sync(t, policyFor("ops", "mail"), channels, t0.Add(2*time.Minute), crit)
	// A channel removed from the policy hears nothing more, not even the resolution.
	e.sync(t, policyFor("ops"), channels, t0.Add(3*time.Minute))

	want := []sent{
		{"ops", warn.Key(), notify.KindFiring},
		{"mail", warn.Key(), notify.KindFiring},
		{"ops", crit.Key(), notify.KindFiring},
		{"mail", crit.Key(), notify.KindFiring},
		{"ops", crit.Key(), notify.KindResolved},
	}
	if diff := cmp.Diff(brief(e.messages(t)), want); diff != "" {
		t.Errorf("messages (-got +want):\n%s", diff)
	}
	states, err := e.st.NotificationStates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || states[0].Channel != "ops" || states[0].State != store.NotificationResolved {
		t.Errorf("state = %+v, want only ops' resolved critical alert", states)
	}
}

func TestSyncWithoutPolicySendsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOptions())
	e.sync(t, nil, nil, t0, expiring("shop", alert.Warning))
	if got := e.messages(t); len(got) != 0 {
		t.Errorf("messages without an AlertPolicy = %+v, want none", got)
	}
}

func TestRestartDoesNotResend(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	channels := map[string]*spec.NotificationChannelSpec{"ops": slackSpec("/s")}
	a := expiring("shop", alert.Critical)

	first := newEnvOn(t, storekit.OpenURL(t, url), fastOptions())
	first.sync(t, policyFor("ops"), channels, t0, a)

	// A new process (or the next leader): its own pool, its own Notifier.
	second := newEnvOn(t, storekit.OpenURL(t, url), fastOptions())
	second.sync(t, policyFor("ops"), channels, t0.Add(30*time.Second), a)
	second.sync(t, policyFor("ops"), channels, t0.Add(time.Minute))

	want := []sent{{"ops", a.Key(), notify.KindFiring}, {"ops", a.Key(), notify.KindResolved}}
	if diff := cmp.Diff(brief(second.messages(t)), want); diff != "" {
		t.Errorf("messages across the restart (-got +want):\n%s", diff)
	}
}

func TestEventIsEnqueuedOncePerKeyAndSince(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOptions())
	ctx := context.Background()
	failed := alert.Alert{Name: alert.IssuanceFailed, Severity: alert.Warning, Subject: "shop",
		Summary: "Issuing shop failed", Description: "acme: rate limited", Since: t0}

	// No AlertPolicy applied yet: nowhere to send, not an error.
	if err := e.n.Event(ctx, failed); err != nil {
		t.Fatalf("Event without an AlertPolicy: %v", err)
	}
	applyObjects(t, e.st,
		&spec.Object{Kind: spec.KindAlertPolicy, Name: "default", Spec: &spec.AlertPolicySpec{Notify: []string{"ops", "hook"}}},
		&spec.Object{Kind: spec.KindNotificationChannel, Name: "ops", Spec: slackSpec("/s")},
		&spec.Object{Kind: spec.KindNotificationChannel, Name: "hook", Spec: &spec.NotificationChannelSpec{
			Webhook: &spec.WebhookChannel{URL: "https://hooks.example.com/certops"}}},
		&spec.Object{Kind: spec.KindNotificationChannel, Name: "not-notified", Spec: slackSpec("/n")},
	)
	for range 3 {
		if err := e.n.Event(ctx, failed); err != nil {
			t.Fatalf("Event: %v", err)
		}
	}
	again := failed
	again.Since = t0.Add(time.Hour) // the next failure
	if err := e.n.Event(ctx, again); err != nil {
		t.Fatalf("Event: %v", err)
	}
	want := []sent{
		{"ops", failed.Key(), notify.KindEvent}, {"hook", failed.Key(), notify.KindEvent},
		{"ops", failed.Key(), notify.KindEvent}, {"hook", failed.Key(), notify.KindEvent},
	}
	msgs := e.messages(t)
	if diff := cmp.Diff(brief(msgs), want); diff != "" {
		t.Errorf("messages (-got +want):\n%s", diff)
	}
	if len(msgs) == 4 && msgs[1].ChannelType != notify.ChannelWebhook {
		t.Errorf("hook's message has channel type %q, want webhook", msgs[1].ChannelType)
	}

	noSince := failed
	noSince.Since = time.Time{}
	if err := e.n.Event(ctx, noSince); err == nil {
		t.Error("Event without Since succeeded, want an error")
	}
}

func TestSyncAppliedFollowsGitAndEvaluationOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOptions())
	ctx := context.Background()
	applyObjects(t, e.st,
		&spec.Object{Kind: spec.KindAlertPolicy, Name: "default", Spec: &spec.AlertPolicySpec{Notify: []string{"ops"}}},
		&spec.Object{Kind: spec.KindNotificationChannel, Name: "ops", Spec: slackSpec("/s")},
	)
	a := expiring("shop", alert.Critical)
	if err := e.n.SyncApplied(ctx, []alert.Alert{a}, t0.Add(time.Minute)); err != nil {
		t.Fatalf("SyncApplied: %v", err)
	}
	// Another replica's older evaluation, which did not see the alert yet,
	// arrives late: ignored, no "resolved".
	if err := e.n.SyncApplied(ctx, nil, t0); err != nil {
		t.Fatalf("SyncApplied: %v", err)
	}
	if err := e.n.SyncApplied(ctx, []alert.Alert{a}, t0.Add(2*time.Minute)); err != nil {
		t.Fatalf("SyncApplied: %v", err)
	}
	if diff := cmp.Diff(brief(e.messages(t)), []sent{{"ops", a.Key(), notify.KindFiring}}); diff != "" {
		t.Errorf("messages (-got +want):\n%s", diff)
	}
}

// A failure's text of any length or bytes makes a bounded notification.
func TestEventTextIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOptions())
	ctx := context.Background()
	applyObjects(t, e.st,
		&spec.Object{Kind: spec.KindAlertPolicy, Name: "default", Spec: &spec.AlertPolicySpec{Notify: []string{"ops"}}},
		&spec.Object{Kind: spec.KindNotificationChannel, Name: "ops", Spec: slackSpec("/s")},
	)
	huge := strings.Repeat("name-not-allowed.example.com, ", 6000) + "\x00\xff"
	if err := e.n.Event(ctx, alert.Alert{Name: alert.IssuanceFailed, Severity: alert.Warning, Subject: "shop",
		Summary: huge, Description: huge, Since: t0}); err != nil {
		t.Fatalf("Event: %v", err)
	}
	msgs := e.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("messages: %d", len(msgs))
	}
	if n := len(msgs[0].Payload); n > 8<<10 {
		t.Errorf("payload is %d bytes", n)
	}
	var m notify.Message
	if err := json.Unmarshal(msgs[0].Payload, &m); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Alert.Description, "bytes more)") || strings.ContainsRune(m.Alert.Description, 0) {
		t.Errorf("description not cut with a marker: …%s", m.Alert.Description[len(m.Alert.Description)-40:])
	}
}
