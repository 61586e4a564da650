package notify_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
)

func webhookSpec(url string) *spec.NotificationChannelSpec {
	return &spec.NotificationChannelSpec{Webhook: &spec.WebhookChannel{URL: url}}
}

func TestRetriesWithBackoffUntilTheReceiverRecovers(t *testing.T) {
	t.Parallel()
	const failures = 3
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n < failures {
			http.Error(w, "upstream down", http.StatusBadGateway)
		}
	})
	opts := fastOptions()
	e := newEnv(t, opts)
	e.run(t)
	e.sync(t, policyFor("hook"), map[string]*spec.NotificationChannelSpec{"hook": webhookSpec(rc.URL)}, t0, expiring("shop", alert.Warning))

	msgs := e.waitMessages(t, 1, hasStatus(store.OutboxSent))
	if got := msgs[0].Attempts; got != failures+1 {
		t.Errorf("attempts = %d, want %d", got, failures+1)
	}
	if got := msgs[0].LastError; !strings.Contains(got, "502 Bad Gateway: upstream down") {
		t.Errorf("last error = %q, want the last failure's status and answer", got)
	}
	reqs := rc.requests()
	if len(reqs) != failures+1 {
		t.Fatalf("receiver got %d requests, want %d", len(reqs), failures+1)
	}
	// Each wait at least the backoff: 50ms, 100ms, 200ms (the cap).
	for i := 1; i < len(reqs); i++ {
		want := min(opts.BackoffBase<<(i-1), opts.BackoffMax)
		if got := reqs[i].At.Sub(reqs[i-1].At); got < want {
			t.Errorf("wait before attempt %d = %v, want at least %v", i+1, got, want)
		}
		if reqs[i].Header.Get(notify.DeliveryHeader) != reqs[0].Header.Get(notify.DeliveryHeader) {
			t.Errorf("attempt %d has delivery id %q, want the first attempt's %q", i+1,
				reqs[i].Header.Get(notify.DeliveryHeader), reqs[0].Header.Get(notify.DeliveryHeader))
		}
	}
	for result, want := range map[string]float64{"failed": failures, "sent": 1, "dead": 0} {
		if got := e.metric(t, "certops_notifications_total", map[string]string{"channel_type": "webhook", "result": result}); got != want {
			t.Errorf("certops_notifications_total{webhook,%s} = %v, want %v", result, got, want)
		}
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no such hook", http.StatusNotFound)
	})
	opts := fastOptions()
	opts.MaxAttempts = 3
	e := newEnv(t, opts)
	e.run(t)
	e.sync(t, policyFor("hook"), map[string]*spec.NotificationChannelSpec{"hook": webhookSpec(rc.URL + "/hook")}, t0, expiring("shop", alert.Warning))

	msgs := e.waitMessages(t, 1, hasStatus(store.OutboxDead))
	deadSeen := time.Now()
	if msgs[0].Attempts != 3 || msgs[0].SentAt != nil || !strings.Contains(msgs[0].LastError, "404 Not Found") {
		t.Errorf("dead message = %+v, want 3 attempts, not sent, the 404 recorded", msgs[0])
	}

	// Nothing more is attempted. A retry would start from a look for due
	// messages after the backoff: wait until the hook's worker has found
	// nothing left to claim and the notifier has looked again later than
	// any retry could be due, then check that it found nothing due.
	retryDue := deadSeen.Add(opts.BackoffMax)
	var polls []poll
	var claims []claim
	testkit.WaitFor(t, waitTimeout, "the hook's worker to stop and a look for due messages after the backoff", func() bool {
		polls, claims = e.log.snapshot()
		var lastHook *claim
		for i := range claims {
			if claims[i].Channel == "hook" {
				lastHook = &claims[i]
			}
		}
		return lastHook != nil && !lastHook.OK && len(polls) > 0 && !polls[len(polls)-1].At.Before(retryDue)
	})
	for _, p := range polls {
		if p.At.After(deadSeen) && slices.Contains(p.Due, "hook") {
			t.Errorf("the dead message's channel was due again at %v (the message died before %v)", p.At, deadSeen)
		}
	}
	claimed := 0
	for _, c := range claims {
		if c.Channel == "hook" && c.OK {
			claimed++
		}
	}
	if claimed != 3 {
		t.Errorf("the message was claimed %d times, want 3 (one per attempt)", claimed)
	}
	if got := len(rc.requests()); got != 3 {
		t.Errorf("receiver got %d requests, want 3", got)
	}
	if got := e.metric(t, "certops_notifications_total", map[string]string{"channel_type": "webhook", "result": "dead"}); got != 1 {
		t.Errorf("certops_notifications_total{webhook,dead} = %v, want 1", got)
	}
	if got := e.metric(t, "certops_notification_queue", nil); got != 0 {
		t.Errorf("certops_notification_queue = %v, want 0", got)
	}
}

func TestSlowReceiverBlocksNeitherSyncNorOtherChannels(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server closes
	fast := newReceiver(t, nil)
	opts := fastOptions()
	opts.AttemptTimeout = time.Minute
	e := newEnv(t, opts)
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{"slow": webhookSpec(slow.URL), "fast": webhookSpec(fast.URL)}

	e.sync(t, policyFor("slow"), channels, t0, expiring("first", alert.Warning))
	testkit.WaitFor(t, waitTimeout, "the slow receiver to get the first message", func() bool { return len(slow.requests()) == 1 })

	// Run is stuck in the slow receiver; Sync only writes the outbox.
	for i := range 10 {
		start := time.Now()
		e.sync(t, policyFor("slow", "fast"), channels, t0.Add(time.Duration(i+1)*time.Minute),
			expiring("first", alert.Warning), expiring("second", alert.Warning))
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("Sync #%d took %v while a receiver hangs", i+1, took)
		}
	}
	testkit.WaitFor(t, waitTimeout, "the fast channel's messages", func() bool { return len(fast.requests()) == 2 })
	if got := len(slow.requests()); got != 1 {
		t.Errorf("slow receiver got %d requests, want 1 (one message at a time per channel)", got)
	}
	testkit.WaitFor(t, waitTimeout, "the queue gauge", func() bool { return e.metric(t, "certops_notification_queue", nil) == 2 })
}

func TestSecretsAreReadAtSendTimeAndNeverShown(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "invalid_token", http.StatusForbidden)
	})
	opts := fastOptions()
	opts.MaxAttempts = 1
	e := newEnv(t, opts)
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{
		"missing-url":  slackSpec("/nonexistent/slack-webhook-url"),
		"empty-url":    slackSpec(writeFile(t, "empty", "\n")),
		"not-a-url":    slackSpec(writeFile(t, "garbage", "xoxb-SECRET-TOKEN")),
		"rejected":     slackSpec(writeFile(t, "url", rc.URL+"/services/T000/B000/SECRET-PATH")),
		"refused":      slackSpec(writeFile(t, "refused-url", "http://127.0.0.1:1/services/SECRET-PATH")),
		"missing-hmac": {Webhook: &spec.WebhookChannel{URL: rc.URL, HMACSecretFile: "/nonexistent/hmac"}},
		"missing-pass": smtpSpec("127.0.0.1", 1, true, "certops", "/nonexistent/password"),
	}
	var names []string
	for name := range channels {
		names = append(names, name)
	}
	e.sync(t, policyFor(names...), channels, t0, expiring("shop", alert.Warning))
	msgs := e.waitMessages(t, len(channels), hasStatus(store.OutboxDead))

	wantErr := map[string]string{
		"missing-url":  "Slack webhook URL: secret file /nonexistent/slack-webhook-url does not exist",
		"empty-url":    "is empty",
		"not-a-url":    "does not hold an https URL",
		"rejected":     "403 Forbidden: invalid_token",
		"refused":      "connection refused",
		"missing-hmac": "webhook HMAC secret: secret file /nonexistent/hmac does not exist",
		"missing-pass": "SMTP password: secret file /nonexistent/password does not exist",
	}
	for _, m := range msgs {
		if !strings.Contains(m.LastError, wantErr[m.Channel]) {
			t.Errorf("%s: error %q, want it to contain %q", m.Channel, m.LastError, wantErr[m.Channel])
		}
		if strings.Contains(m.LastError, "SECRET") {
			t.Errorf("%s: error %q shows the secret", m.Channel, m.LastError)
		}
	}

	// The file is read at every attempt: fixed, the next message goes out.
	good := newReceiver(t, nil)
	channels = map[string]*spec.NotificationChannelSpec{"fixed": slackSpec(writeFile(t, "fixed", good.URL))}
	e.sync(t, policyFor("fixed"), channels, t0.Add(time.Minute), expiring("shop", alert.Warning))
	testkit.WaitFor(t, waitTimeout, "the fixed channel's message", func() bool { return len(good.requests()) == 1 })
}
