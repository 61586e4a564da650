package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func slackChannel(name string) store.NotificationChannel {
	return store.NotificationChannel{Name: name, Type: "slack", Spec: json.RawMessage(`{"slack":{"webhookURLFile":"/s/` + name + `"}}`)}
}

func newNotification(channel, key, kind, dedup string, at time.Time) store.NewNotification {
	return store.NewNotification{Channel: slackChannel(channel), AlertKey: key, Kind: kind,
		Payload: json.RawMessage(`{"kind":"` + kind + `"}`), DedupKey: dedup, CreatedAt: at}
}

func TestSyncNotificationsReadsDecidesAndWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)

	firing := store.NotificationState{AlertKey: "A/critical/x", Channel: "ops", State: store.NotificationFiring,
		Since: t0, LastSent: t0, Alert: json.RawMessage(`{"name":"A"}`)}
	_, err := s.SyncNotifications(ctx, t0, func(current []store.NotificationState) (store.NotificationUpdate, error) {
		if len(current) != 0 {
			t.Errorf("state of a fresh database = %v, want none", current)
		}
		return store.NotificationUpdate{
			Upsert:  []store.NotificationState{firing},
			Enqueue: []store.NewNotification{newNotification("ops", firing.AlertKey, "firing", "", t0)},
		}, nil
	})
	if err != nil {
		t.Fatalf("SyncNotifications: %v", err)
	}

	var seen []store.NotificationState
	resolved := firing
	resolved.State, resolved.LastSent = store.NotificationResolved, t0.Add(time.Minute)
	_, err = s.SyncNotifications(ctx, t0.Add(time.Minute), func(current []store.NotificationState) (store.NotificationUpdate, error) {
		seen = current
		return store.NotificationUpdate{Upsert: []store.NotificationState{resolved}}, nil
	})
	if err != nil {
		t.Fatalf("SyncNotifications: %v", err)
	}
	if diff := cmp.Diff(seen, []store.NotificationState{firing}, cmpTimes); diff != "" {
		t.Errorf("decide saw (-got +want):\n%s", diff)
	}
	got, err := s.NotificationStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, []store.NotificationState{resolved}, cmpTimes); diff != "" {
		t.Errorf("state after the second sync (-got +want):\n%s", diff)
	}

	// An error from decide writes nothing.
	boom := errors.New("boom")
	_, err = s.SyncNotifications(ctx, t0.Add(2*time.Minute), func([]store.NotificationState) (store.NotificationUpdate, error) {
		return store.NotificationUpdate{Delete: []store.NotificationState{resolved}}, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("SyncNotifications with a failing decide = %v, want %v", err, boom)
	}
	if got, _ := s.NotificationStates(ctx); len(got) != 1 {
		t.Errorf("state after a failed sync = %v, want the resolved row kept", got)
	}

	// A sync of an evaluation older than one already synced is ignored,
	// decide included; a failed sync did not count.
	for _, at := range []time.Duration{time.Minute - time.Second, 2 * time.Minute} {
		applied, err := s.SyncNotifications(ctx, t0.Add(at), func([]store.NotificationState) (store.NotificationUpdate, error) {
			return store.NotificationUpdate{}, nil
		})
		if want := at == 2*time.Minute; err != nil || applied != want {
			t.Errorf("sync of the evaluation at t0+%v = %v, %v; want %v, nil", at, applied, err, want)
		}
	}

	msgs, err := s.ListNotifications(ctx, store.NotificationQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Status != store.OutboxPending || msgs[0].Kind != "firing" ||
		!msgs[0].NextAttempt.Equal(t0) || msgs[0].ChannelType != "slack" {
		t.Errorf("outbox = %+v, want one pending firing slack message due at %v", msgs, t0)
	}
}

// cmpTimes compares times by instant and JSON by content.
var cmpTimes = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
	cmp.Comparer(func(a, b json.RawMessage) bool {
		var x, y any
		return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && cmp.Equal(x, y)
	}),
}

func TestEnqueueNotificationsDeduplicates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)

	msgs := []store.NewNotification{
		newNotification("ops", "E/critical/x", "event", "E/critical/x@1", t0),
		newNotification("mail", "E/critical/x", "event", "E/critical/x@1", t0),
	}
	if got, err := s.EnqueueNotifications(ctx, msgs); err != nil || got != 2 {
		t.Fatalf("EnqueueNotifications = %d, %v; want 2, nil", got, err)
	}
	again := append(msgs, newNotification("ops", "E/critical/x", "event", "E/critical/x@2", t0))
	if got, err := s.EnqueueNotifications(ctx, again); err != nil || got != 1 {
		t.Fatalf("EnqueueNotifications again = %d, %v; want 1 (only the new dedup key), nil", got, err)
	}
	if got, err := s.NotificationQueueLength(ctx); err != nil || got != 3 {
		t.Errorf("NotificationQueueLength = %d, %v; want 3, nil", got, err)
	}
}

func TestClaimAndRecordNotifications(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	_, err := s.EnqueueNotifications(ctx, []store.NewNotification{
		newNotification("ops", "A", "firing", "", t0),
		newNotification("ops", "B", "firing", "", t0.Add(time.Second)),
		newNotification("mail", "A", "firing", "", t0.Add(time.Hour)),
	})
	if err != nil {
		t.Fatal(err)
	}

	if got, err := s.DueNotificationChannels(ctx, t0.Add(time.Minute)); err != nil || !cmp.Equal(got, []string{"ops"}) {
		t.Errorf("DueNotificationChannels = %v, %v; want [ops]", got, err)
	}
	lease := time.Minute
	first, ok, err := s.ClaimNotification(ctx, "ops", t0.Add(time.Minute), lease)
	if err != nil || !ok || first.AlertKey != "A" || first.Attempts != 1 || !first.NextAttempt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("first claim = %+v, %v, %v; want A, attempt 1, leased until %v", first, ok, err, t0.Add(2*time.Minute))
	}
	second, ok, err := s.ClaimNotification(ctx, "ops", t0.Add(time.Minute), lease)
	if err != nil || !ok || second.AlertKey != "B" {
		t.Fatalf("second claim = %+v, %v, %v; want B (A is leased)", second, ok, err)
	}
	if _, ok, err := s.ClaimNotification(ctx, "ops", t0.Add(time.Minute), lease); err != nil || ok {
		t.Fatalf("third claim = %v, %v; want nothing due", ok, err)
	}

	// A sent; B failed, to be retried later.
	sentAt := t0.Add(90 * time.Second)
	if ok, err := s.RecordNotificationResult(ctx, first.ID, 1, store.NotificationResult{Status: store.OutboxSent, At: sentAt}); err != nil || !ok {
		t.Fatalf("record sent = %v, %v", ok, err)
	}
	retry := t0.Add(10 * time.Minute)
	if ok, err := s.RecordNotificationResult(ctx, second.ID, 1, store.NotificationResult{
		Status: store.OutboxFailed, Error: "502 Bad Gateway", At: sentAt, NextAttempt: retry}); err != nil || !ok {
		t.Fatalf("record failed = %v, %v", ok, err)
	}
	if _, ok, _ := s.ClaimNotification(ctx, "ops", retry.Add(-time.Second), lease); ok {
		t.Error("claimed B before its retry time")
	}

	// B's second attempt runs out of time; another replica takes it over.
	again, ok, err := s.ClaimNotification(ctx, "ops", retry, lease)
	if err != nil || !ok || again.ID != second.ID || again.Attempts != 2 || again.LastError != "502 Bad Gateway" {
		t.Fatalf("claim at retry time = %+v, %v, %v; want B, attempt 2, with the last error", again, ok, err)
	}
	takeover, ok, err := s.ClaimNotification(ctx, "ops", retry.Add(lease), lease)
	if err != nil || !ok || takeover.Attempts != 3 {
		t.Fatalf("claim after the lease = %+v, %v, %v; want B, attempt 3", takeover, ok, err)
	}
	if ok, err := s.RecordNotificationResult(ctx, second.ID, 2, store.NotificationResult{Status: store.OutboxSent, At: retry}); err != nil || ok {
		t.Errorf("record of the overtaken attempt = %v, %v; want not recorded", ok, err)
	}
	if ok, err := s.RecordNotificationResult(ctx, second.ID, 3, store.NotificationResult{Status: store.OutboxDead, Error: "gave up", At: retry}); err != nil || !ok {
		t.Errorf("record dead = %v, %v", ok, err)
	}

	got, err := s.ListNotifications(ctx, store.NotificationQuery{Channel: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Key, Status, Error string
		Attempts           int
		Sent               bool
	}
	var rows []row
	for _, n := range got {
		rows = append(rows, row{n.AlertKey, n.Status, n.LastError, n.Attempts, n.SentAt != nil})
	}
	want := []row{{"B", store.OutboxDead, "gave up", 3, false}, {"A", store.OutboxSent, "", 1, true}}
	if diff := cmp.Diff(rows, want); diff != "" {
		t.Errorf("ops messages (-got +want):\n%s", diff)
	}
	if n, err := s.NotificationQueueLength(ctx); err != nil || n != 1 {
		t.Errorf("NotificationQueueLength = %d, %v; want 1 (the mail message)", n, err)
	}
}

func TestSyncNotificationsRefreshesUnsentChannelSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	if _, err := s.EnqueueNotifications(ctx, []store.NewNotification{
		newNotification("ops", "A", "firing", "", t0), newNotification("ops", "B", "firing", "", t0)}); err != nil {
		t.Fatal(err)
	}
	sent, _, _ := s.ClaimNotification(ctx, "ops", t0, time.Minute)
	if _, err := s.RecordNotificationResult(ctx, sent.ID, 1, store.NotificationResult{Status: store.OutboxSent, At: t0}); err != nil {
		t.Fatal(err)
	}

	moved := store.NotificationChannel{Name: "ops", Type: "webhook", Spec: json.RawMessage(`{"webhook":{"url":"https://new.example.com/"}}`)}
	_, err := s.SyncNotifications(ctx, t0, func([]store.NotificationState) (store.NotificationUpdate, error) {
		return store.NotificationUpdate{Channels: []store.NotificationChannel{moved}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ListNotifications(ctx, store.NotificationQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range got {
		wantType := "webhook"
		if n.ID == sent.ID {
			wantType = "slack" // a sent message keeps what it was sent with
		}
		if n.ChannelType != wantType {
			t.Errorf("message %s (%s) has channel type %s, want %s", n.AlertKey, n.Status, n.ChannelType, wantType)
		}
	}
}

func TestPruneNotifications(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	old, recent := t0, t0.Add(48*time.Hour)
	if _, err := s.EnqueueNotifications(ctx, []store.NewNotification{
		newNotification("ops", "old-sent", "firing", "", old),
		newNotification("mail", "old-pending", "firing", "", old.Add(time.Second)),
		newNotification("ops", "new-sent", "firing", "", recent),
	}); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{old, recent} {
		n, ok, err := s.ClaimNotification(ctx, "ops", at, time.Minute)
		if err != nil || !ok {
			t.Fatalf("claim at %v: %v, %v", at, ok, err)
		}
		if _, err := s.RecordNotificationResult(ctx, n.ID, 1, store.NotificationResult{Status: store.OutboxSent, At: at}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.SyncNotifications(ctx, t0, func([]store.NotificationState) (store.NotificationUpdate, error) {
		return store.NotificationUpdate{Upsert: []store.NotificationState{
			{AlertKey: "gone", Channel: "ops", State: store.NotificationResolved, Since: old, LastSent: old, Alert: json.RawMessage(`{}`)},
			{AlertKey: "firing", Channel: "ops", State: store.NotificationFiring, Since: old, LastSent: old, Alert: json.RawMessage(`{}`)},
		}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if n, err := s.PruneNotifications(ctx, t0.Add(24*time.Hour)); err != nil || n != 2 {
		t.Errorf("PruneNotifications = %d, %v; want 2 (the old sent message and the old resolved state)", n, err)
	}
	msgs, _ := s.ListNotifications(ctx, store.NotificationQuery{})
	var keys []string
	for _, m := range msgs {
		keys = append(keys, m.AlertKey)
	}
	if want := []string{"new-sent", "old-pending"}; !cmp.Equal(keys, want) {
		t.Errorf("messages after pruning = %v, want %v", keys, want)
	}
	states, _ := s.NotificationStates(ctx)
	if len(states) != 1 || states[0].AlertKey != "firing" {
		t.Errorf("state after pruning = %+v, want only the firing alert", states)
	}
}

func TestNotificationRoutes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)

	if policy, channels, err := s.NotificationRoutes(ctx); err != nil || policy != nil || len(channels) != 0 {
		t.Fatalf("NotificationRoutes of an empty database = %v, %v, %v; want nothing", policy, channels, err)
	}
	slack := &spec.NotificationChannelSpec{Slack: &spec.SlackChannel{WebhookURLFile: "/etc/certops/slack", Channel: "#ops"}}
	converge(t, s, "1", desiredOf(
		&spec.Object{Kind: spec.KindAlertPolicy, Name: "default", Spec: &spec.AlertPolicySpec{Notify: []string{"ops"}, RenotifyInterval: "2h"}},
		&spec.Object{Kind: spec.KindNotificationChannel, Name: "ops", Spec: slack},
	))
	policy, channels, err := s.NotificationRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(policy, &spec.AlertPolicySpec{Notify: []string{"ops"}, RenotifyInterval: "2h"}); diff != "" {
		t.Errorf("policy (-got +want):\n%s", diff)
	}
	if len(channels) != 1 || channels["ops"] == nil {
		t.Fatalf("channels = %v; want ops", channels)
	}
	if diff := cmp.Diff(channels["ops"], slack); diff != "" {
		t.Errorf("channel ops (-got +want):\n%s", diff)
	}
}
