package notify_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
)

// pagerDutyReceiver is a local Events API v2: it checks every event
// against the documented shape (routing key, event_action, dedup_key, and
// for a trigger a payload with summary, source and one of the four
// severities) and answers 400 like PagerDuty to an invalid one, 202
// otherwise. With throttle, it answers the first valid event with 429.
func pagerDutyReceiver(t *testing.T, routingKey string, throttle bool) *receiver {
	t.Helper()
	var rc *receiver
	throttled := false
	rc = newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		var ev notify.PagerDutyEvent
		err := json.Unmarshal(rc.requests()[n].Body, &ev)
		var problems []string
		switch {
		case err != nil:
			problems = append(problems, "body is not JSON")
		case r.URL.Path != "/v2/enqueue" || r.Header.Get("Content-Type") != "application/json":
			problems = append(problems, "wrong path or content type")
		case ev.RoutingKey != routingKey:
			problems = append(problems, "Length of 'routing_key' is incorrect (should be 32 characters)")
		case ev.DedupKey == "" || len(ev.DedupKey) > 255:
			problems = append(problems, "'dedup_key' is invalid")
		case ev.EventAction == "trigger":
			p := ev.Payload
			if p == nil || p.Summary == "" || p.Source == "" || len(p.Summary) > 1024 {
				problems = append(problems, "'payload' is missing or invalid")
			} else if !slices.Contains([]string{"critical", "error", "warning", "info"}, p.Severity) {
				problems = append(problems, "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')")
			}
		case ev.EventAction != "resolve" && ev.EventAction != "acknowledge":
			problems = append(problems, "'event_action' is invalid")
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case problems != nil:
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": problems})
		case throttle && !throttled: // only the one channel's worker posts valid events
			throttled = true
			w.WriteHeader(http.StatusTooManyRequests)
			json.NewEncoder(w).Encode(map[string]string{"status": "throttle event", "message": "Requests for this service are arriving too quickly."})
		default:
			w.WriteHeader(http.StatusAccepted)
			json.NewEncoder(w).Encode(map[string]string{"status": "success", "message": "Event processed", "dedup_key": ev.DedupKey})
		}
	})
	return rc
}

func decodeEvents(t *testing.T, reqs []request) []notify.PagerDutyEvent {
	t.Helper()
	out := make([]notify.PagerDutyEvent, len(reqs))
	for i, r := range reqs {
		if err := json.Unmarshal(r.Body, &out[i]); err != nil {
			t.Fatalf("request %d: %s: %v", i, r.Body, err)
		}
	}
	return out
}

func TestPagerDutyTriggersAndResolvesWithOneDedupKey(t *testing.T) {
	t.Parallel()
	const key = "R0UT1NGKEY0123456789abcdefABCDEF"
	rc := pagerDutyReceiver(t, key, false)
	e := newEnv(t, fastOptions())
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{"pd": {PagerDuty: &spec.PagerDutyChannel{
		RoutingKeyFile: writeFile(t, "routing-key", key+"\n"), URL: rc.URL + "/v2/enqueue"}}}
	shop := expiring("shop", alert.Critical)
	agent := alert.Alert{Name: alert.AgentOffline, Severity: alert.Warning, Subject: "web-1",
		Summary: "Agent web-1 is offline", Labels: map[string]string{"agent": "web-1"}, Since: t0.Add(-time.Hour)}

	e.sync(t, policyFor("pd"), channels, t0, shop, agent)
	e.waitMessages(t, 2, hasStatus(store.OutboxSent))
	e.sync(t, policyFor("pd"), channels, t0.Add(time.Minute), agent)
	e.waitMessages(t, 3, hasStatus(store.OutboxSent))

	evs := decodeEvents(t, rc.requests())
	if len(evs) != 3 {
		t.Fatalf("PagerDuty got %d events, want 3", len(evs))
	}
	bySev := map[string]notify.PagerDutyEvent{}
	for _, ev := range evs[:2] {
		bySev[ev.Payload.Severity] = ev
	}
	trigger := bySev["critical"]
	want := notify.PagerDutyEvent{RoutingKey: key, EventAction: "trigger", DedupKey: shop.Key(), Client: "certops",
		Payload: &notify.PagerDutyPayload{Summary: shop.Summary, Source: "shop", Severity: "critical",
			Timestamp: "2025-03-01T11:00:00Z", Component: "shop", Group: "certops", Class: alert.CertificateExpiringSoon,
			CustomDetails: map[string]any{"kind": "firing", "description": shop.Description,
				"labels": map[string]any{notify.RunbookLabel: shop.Labels[notify.RunbookLabel], "team": "shop"}}},
		Links: []notify.PagerDutyLink{{Href: shop.Labels[notify.RunbookLabel], Text: "Runbook"}}}
	if diff := cmp.Diff(trigger, want); diff != "" {
		t.Errorf("trigger (-got +want):\n%s", diff)
	}
	if w := bySev["warning"]; w.DedupKey != agent.Key() || w.Payload.Source != "web-1" {
		t.Errorf("warning event = %+v, want severity warning, dedup key %s", w, agent.Key())
	}
	resolve := evs[2]
	if diff := cmp.Diff(resolve, notify.PagerDutyEvent{RoutingKey: key, EventAction: "resolve", DedupKey: trigger.DedupKey, Client: "certops"}); diff != "" {
		t.Errorf("resolve (-got +want): it must carry the trigger's dedup_key\n%s", diff)
	}
}

func TestPagerDutyErrorsAreSurfacedAndRateLimitsRetried(t *testing.T) {
	t.Parallel()
	const key = "R0UT1NGKEY0123456789abcdefABCDEF"
	rc := pagerDutyReceiver(t, key, true)
	opts := fastOptions()
	opts.MaxAttempts = 3
	e := newEnv(t, opts)
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{
		"good": {PagerDuty: &spec.PagerDutyChannel{RoutingKeyFile: writeFile(t, "key", key), URL: rc.URL + "/v2/enqueue"}},
		"bad":  {PagerDuty: &spec.PagerDutyChannel{RoutingKeyFile: writeFile(t, "key", "wrong-key-s3cret"), URL: rc.URL + "/v2/enqueue"}},
	}
	e.sync(t, policyFor("good", "bad"), channels, t0, expiring("shop", alert.Warning))
	msgs := e.waitMessages(t, 2, func(m store.Notification) bool {
		return m.Channel == "good" && m.Status == store.OutboxSent || m.Channel == "bad" && m.Status == store.OutboxDead
	})
	for _, m := range msgs {
		if strings.Contains(m.LastError, "s3cret") || strings.Contains(m.LastError, key) {
			t.Errorf("%s: error %q shows the routing key", m.Channel, m.LastError)
		}
		switch m.Channel {
		case "good":
			if m.Attempts != 2 || !strings.Contains(m.LastError, "429 Too Many Requests") {
				t.Errorf("good: %d attempts, last error %q; want the 429 retried once", m.Attempts, m.LastError)
			}
		case "bad":
			if m.Attempts != 3 || !strings.Contains(m.LastError, "400 Bad Request") || !strings.Contains(m.LastError, "routing_key") {
				t.Errorf("bad: attempts %d, error %q; want 3 attempts and PagerDuty's 400 with its reason", m.Attempts, m.LastError)
			}
		}
	}
	for result, want := range map[string]float64{"sent": 1, "failed": 3, "dead": 1} {
		if got := e.metric(t, "certops_notifications_total", map[string]string{"channel_type": "pagerduty", "result": result}); got != want {
			t.Errorf("certops_notifications_total{pagerduty,%s} = %v, want %v", result, got, want)
		}
	}
}

func TestTeamsPostsAnAdaptiveCard(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted) // what a Workflows webhook answers
	})
	e := newEnv(t, fastOptions())
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{
		"teams": {Teams: &spec.TeamsChannel{WebhookURLFile: writeFile(t, "teams-url", rc.URL+"/workflows/abc/triggers/manual/paths/invoke?sig=S3CRET\n")}},
		"plain": {Teams: &spec.TeamsChannel{WebhookURLFile: writeFile(t, "plain-url", "http://teams.example.com/hook?sig=S3CRET")}},
	}
	shop := expiring("shop", alert.Critical)
	e.sync(t, policyFor("teams", "plain"), channels, t0, shop)
	msgs := e.waitMessages(t, 2, func(m store.Notification) bool {
		return m.Channel == "teams" && m.Status == store.OutboxSent || m.Channel == "plain" && m.LastError != ""
	})
	for _, m := range msgs {
		if m.Channel == "plain" && (!strings.Contains(m.LastError, "does not hold an https URL") || strings.Contains(m.LastError, "S3CRET")) {
			t.Errorf("plain-http URL: error %q, want a refusal that does not show the URL", m.LastError)
		}
	}

	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("Teams got %d requests, want 1", len(reqs))
	}
	if reqs[0].Path != "/workflows/abc/triggers/manual/paths/invoke" || reqs[0].Header.Get("Content-Type") != "application/json" {
		t.Errorf("posted to %s as %q, want the URL from the file as JSON", reqs[0].Path, reqs[0].Header.Get("Content-Type"))
	}
	// The shape the Workflows template "Post to a channel when a webhook
	// request is received" takes.
	var got struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string          `json:"contentType"`
			ContentURL  *string         `json:"contentUrl"`
			Content     json.RawMessage `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(reqs[0].Body, &got); err != nil {
		t.Fatalf("payload %s: %v", reqs[0].Body, err)
	}
	if got.Type != "message" || len(got.Attachments) != 1 || got.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" {
		t.Fatalf("payload %s: want a message with one Adaptive Card attachment", reqs[0].Body)
	}
	var card struct {
		Schema  string `json:"$schema"`
		Type    string `json:"type"`
		Version string `json:"version"`
		Body    []struct {
			Type  string `json:"type"`
			Text  string `json:"text"`
			Color string `json:"color"`
			Facts []struct {
				Title string `json:"title"`
				Value string `json:"value"`
			} `json:"facts"`
		} `json:"body"`
		Actions []struct {
			Type  string `json:"type"`
			Title string `json:"title"`
			URL   string `json:"url"`
		} `json:"actions"`
	}
	if err := json.Unmarshal(got.Attachments[0].Content, &card); err != nil {
		t.Fatal(err)
	}
	if card.Type != "AdaptiveCard" || card.Version != "1.4" || card.Schema != "http://adaptivecards.io/schemas/adaptive-card.json" {
		t.Errorf("card type %q version %q schema %q, want an Adaptive Card 1.4", card.Type, card.Version, card.Schema)
	}
	var texts []string
	facts := map[string]string{}
	for _, b := range card.Body {
		if b.Type == "TextBlock" {
			texts = append(texts, b.Text)
		}
		for _, f := range b.Facts {
			facts[f.Title] = f.Value
		}
	}
	if diff := cmp.Diff(texts, []string{"[FIRING] CertopsCertificateExpiringSoon (critical): shop", shop.Summary, shop.Description}); diff != "" {
		t.Errorf("text blocks (-got +want):\n%s", diff)
	}
	if card.Body[0].Color != "Attention" {
		t.Errorf("headline color %q, want Attention for critical", card.Body[0].Color)
	}
	if diff := cmp.Diff(facts, map[string]string{"Subject": "shop", "Severity": "critical", "Since": "2025-03-01T11:00:00Z", "Labels": "team=shop"}); diff != "" {
		t.Errorf("facts (-got +want):\n%s", diff)
	}
	if len(card.Actions) != 1 || card.Actions[0].Type != "Action.OpenUrl" || card.Actions[0].URL != shop.Labels[notify.RunbookLabel] {
		t.Errorf("actions %+v, want one Action.OpenUrl to the runbook", card.Actions)
	}
}
