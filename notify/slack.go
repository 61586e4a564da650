package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/secret"
	"github.com/certops/certops/spec"
)

// SlackPayload is the JSON posted to a Slack incoming webhook.
type SlackPayload struct {
	Text    string `json:"text"`
	Channel string `json:"channel,omitempty"`
}

// sendSlack posts m to the incoming webhook whose URL is in the channel's
// file, read now. The URL is a secret: errors never show it.
func (n *Notifier) sendSlack(ctx context.Context, c *spec.SlackChannel, m Message) error {
	raw, err := secret.ReadFile(c.WebhookURLFile)
	if err != nil {
		//lint:ignore ST1005 "Slack" is a proper noun, which Go error style leaves capitalized
		return fmt.Errorf("Slack webhook URL: %w", err)
	}
	if !allowedURL(raw) {
		//lint:ignore ST1005 "Slack" is a proper noun, which Go error style leaves capitalized
		return fmt.Errorf("Slack webhook URL: %s does not hold an https URL (http only for loopback hosts)", c.WebhookURLFile)
	}
	body, err := json.Marshal(SlackPayload{Text: slackText(m), Channel: c.Channel})
	if err != nil {
		return err
	}
	return n.post(ctx, raw, body, nil, "the Slack webhook from "+c.WebhookURLFile)
}

// slackText is m in Slack's mrkdwn: a bold headline, summary, description
// and details, with the runbook as a link.
func slackText(m Message) string {
	var b strings.Builder
	b.WriteString(slackIcon(m) + " *" + slackEscape(headline(m)) + "*\n")
	if m.Alert.Summary != "" {
		b.WriteString(slackEscape(m.Alert.Summary) + "\n")
	}
	if d := strings.TrimSpace(m.Alert.Description); d != "" {
		b.WriteString(">" + strings.ReplaceAll(slackEscape(d), "\n", "\n>") + "\n")
	}
	for _, f := range details(m) {
		v := slackEscape(f.value)
		if f.name == "Runbook" {
			v = "<" + v + "|runbook>"
		}
		b.WriteString("*" + f.name + ":* " + v + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func slackIcon(m Message) string {
	switch {
	case m.Kind == KindResolved:
		return ":white_check_mark:"
	case m.Alert.Severity == alert.Critical:
		return ":rotating_light:"
	}
	return ":warning:"
}

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
