package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/secret"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/textlimit"
)

// ChannelPagerDuty is the channel_type of PagerDuty channels.
const ChannelPagerDuty = "pagerduty"

// PagerDutyEventsURL is the Events API v2 endpoint a pagerduty channel
// posts to unless it sets url.
const PagerDutyEventsURL = "https://events.pagerduty.com/v2/enqueue"

// PagerDutyEvent is the JSON posted to the Events API v2.
type PagerDutyEvent struct {
	RoutingKey string `json:"routing_key"`
	// EventAction is "trigger" (firing, renotify, event) or "resolve".
	EventAction string `json:"event_action"`
	// DedupKey is the alert's key, so a resolve closes the incident its
	// trigger opened and a renotify updates it.
	DedupKey string            `json:"dedup_key"`
	Payload  *PagerDutyPayload `json:"payload,omitempty"`
	Client   string            `json:"client,omitempty"`
	Links    []PagerDutyLink   `json:"links,omitempty"`
}

// PagerDutyPayload describes a triggered incident.
type PagerDutyPayload struct {
	Summary string `json:"summary"`
	Source  string `json:"source"`
	// Severity is critical, warning or info.
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// PagerDutyLink is a link shown with the incident.
type PagerDutyLink struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// Limits of the Events API v2.
const (
	pdMaxSummary  = 1024
	pdMaxDedupKey = 255
)

// sendPagerDuty triggers or resolves the incident of m's alert. The
// routing key is read from its file now and never shown.
func (n *Notifier) sendPagerDuty(ctx context.Context, c *spec.PagerDutyChannel, m Message) error {
	key, err := secret.ReadFile(c.RoutingKeyFile)
	if err != nil {
		return fmt.Errorf("PagerDuty routing key: %w", err)
	}
	body, err := json.Marshal(pagerDutyEvent(key, m))
	if err != nil {
		return err
	}
	target := c.URL
	if target == "" {
		target = PagerDutyEventsURL
	}
	return n.post(ctx, target, body, nil, "PagerDuty "+safeURL(target))
}

// pagerDutyEvent is m as an Events API v2 event.
func pagerDutyEvent(routingKey string, m Message) PagerDutyEvent {
	a := m.Alert
	ev := PagerDutyEvent{RoutingKey: routingKey, EventAction: "trigger", DedupKey: dedupKey(a), Client: "certops"}
	if m.Status == StatusResolved {
		ev.EventAction = "resolve"
		return ev
	}
	source := a.Subject
	if source == "" {
		source = "certops"
	}
	details := map[string]any{"kind": m.Kind}
	if a.Description != "" {
		details["description"] = a.Description
	}
	if len(a.Labels) > 0 {
		details["labels"] = maps.Clone(a.Labels)
	}
	summary := a.Summary
	if summary == "" {
		summary = headline(m)
	}
	ev.Payload = &PagerDutyPayload{
		Summary: textlimit.Truncate(summary, pdMaxSummary), Source: source, Severity: pagerDutySeverity(a.Severity),
		Component: a.Subject, Group: "certops", Class: a.Name, CustomDetails: details,
	}
	if !a.Since.IsZero() {
		ev.Payload.Timestamp = a.Since.UTC().Format(time.RFC3339)
	}
	if u := a.Labels[RunbookLabel]; u != "" {
		ev.Links = []PagerDutyLink{{Href: u, Text: "Runbook"}}
	}
	return ev
}

// pagerDutySeverity maps certops' severities to PagerDuty's.
func pagerDutySeverity(s alert.Severity) string {
	switch s {
	case alert.Critical:
		return "critical"
	case alert.Warning:
		return "warning"
	}
	return "info"
}

// dedupKey is the alert's key, hashed if longer than PagerDuty allows.
func dedupKey(a alert.Alert) string {
	k := a.Key()
	if len(k) <= pdMaxDedupKey {
		return k
	}
	h := sha256.Sum256([]byte(k))
	return a.Name + "/" + hex.EncodeToString(h[:])
}
