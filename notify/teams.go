package notify

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/secret"
	"github.com/certops/certops/spec"
)

// ChannelTeams is the channel_type of Microsoft Teams channels.
const ChannelTeams = "teams"

// TeamsMessage is the JSON posted to a Teams webhook: one Adaptive Card in
// a message, the form both the Workflows template "Post to a channel when a
// webhook request is received" and the classic incoming webhooks accept.
type TeamsMessage struct {
	Type        string            `json:"type"` // "message"
	Attachments []TeamsAttachment `json:"attachments"`
}

// TeamsAttachment carries the card.
type TeamsAttachment struct {
	ContentType string       `json:"contentType"` // AdaptiveCardContentType
	ContentURL  *string      `json:"contentUrl"`  // null
	Content     AdaptiveCard `json:"content"`
}

// AdaptiveCardContentType is the contentType of an Adaptive Card attachment.
const AdaptiveCardContentType = "application/vnd.microsoft.card.adaptive"

// AdaptiveCard is the subset of an Adaptive Card (schema 1.4) certops uses.
type AdaptiveCard struct {
	Schema  string           `json:"$schema"`
	Type    string           `json:"type"` // "AdaptiveCard"
	Version string           `json:"version"`
	Body    []map[string]any `json:"body"`
	Actions []map[string]any `json:"actions,omitempty"`
	MSTeams map[string]any   `json:"msteams,omitempty"`
}

// sendTeams posts m as an Adaptive Card to the webhook whose URL is in the
// channel's file, read now. The URL is a secret: errors never show it.
func (n *Notifier) sendTeams(ctx context.Context, c *spec.TeamsChannel, m Message) error {
	raw, err := secret.ReadFile(c.WebhookURLFile)
	if err != nil {
		return fmt.Errorf("Teams webhook URL: %w", err) //lint:ignore ST1005 proper noun
	}
	if !allowedURL(raw) {
		return fmt.Errorf("Teams webhook URL: %s does not hold an https URL (http only for loopback hosts)", c.WebhookURLFile) //lint:ignore ST1005 proper noun
	}
	body, err := json.Marshal(teamsMessage(m))
	if err != nil {
		return err
	}
	return n.post(ctx, raw, body, nil, "the Teams webhook from "+c.WebhookURLFile)
}

// teamsMessage is m as a message with one Adaptive Card: the headline in
// the state's color, summary, description, the details as facts and the
// runbook as a button.
func teamsMessage(m Message) TeamsMessage {
	color := "Warning"
	switch {
	case m.Kind == KindResolved:
		color = "Good"
	case m.Alert.Severity == alert.Critical:
		color = "Attention"
	}
	body := []map[string]any{
		{"type": "TextBlock", "text": headline(m), "weight": "Bolder", "size": "Medium", "color": color, "wrap": true},
	}
	if m.Alert.Summary != "" {
		body = append(body, map[string]any{"type": "TextBlock", "text": m.Alert.Summary, "wrap": true})
	}
	if m.Alert.Description != "" {
		body = append(body, map[string]any{"type": "TextBlock", "text": m.Alert.Description, "wrap": true, "isSubtle": true})
	}
	var facts []map[string]any
	var actions []map[string]any
	for _, f := range details(m) {
		if f.name == "Runbook" {
			actions = append(actions, map[string]any{"type": "Action.OpenUrl", "title": "Runbook", "url": f.value})
			continue
		}
		facts = append(facts, map[string]any{"title": f.name, "value": f.value})
	}
	if len(facts) > 0 {
		body = append(body, map[string]any{"type": "FactSet", "facts": facts})
	}
	return TeamsMessage{Type: "message", Attachments: []TeamsAttachment{{
		ContentType: AdaptiveCardContentType,
		Content: AdaptiveCard{Schema: "http://adaptivecards.io/schemas/adaptive-card.json", Type: "AdaptiveCard",
			Version: "1.4", Body: body, Actions: actions, MSTeams: map[string]any{"width": "Full"}},
	}}}
}
