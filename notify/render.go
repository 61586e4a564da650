package notify

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// RunbookLabel is the alert label whose value, a URL, is shown as the
// runbook link.
const RunbookLabel = "runbook_url"

// headline is the one-line summary of a message, as a Slack title or a
// mail subject: "[FIRING] CertopsCertificateExpiringSoon (critical): shop".
func headline(m Message) string {
	a := m.Alert
	s := fmt.Sprintf("[%s] %s (%s)", kindLabel(m.Kind), a.Name, a.Severity)
	if a.Subject != "" {
		s += ": " + a.Subject
	}
	return oneLine(s)
}

func kindLabel(kind string) string {
	switch kind {
	case KindFiring:
		return "FIRING"
	case KindRenotify:
		return "STILL FIRING"
	case KindResolved:
		return "RESOLVED"
	case KindEvent:
		return "EVENT"
	}
	return strings.ToUpper(kind)
}

// field is one "Name: value" line of a message body.
type field struct{ name, value string }

// details are the lines under the summary and description: when, which
// runbook and the other labels.
func details(m Message) []field {
	a := m.Alert
	var out []field
	if a.Subject != "" {
		out = append(out, field{"Subject", a.Subject})
	}
	out = append(out, field{"Severity", string(a.Severity)})
	if !a.Since.IsZero() {
		out = append(out, field{"Since", a.Since.UTC().Format(time.RFC3339)})
	}
	if m.Kind == KindResolved {
		out = append(out, field{"Resolved", m.At.UTC().Format(time.RFC3339)})
	}
	if u := a.Labels[RunbookLabel]; u != "" {
		out = append(out, field{"Runbook", u})
	}
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		if k != RunbookLabel {
			labels = append(labels, k+"="+a.Labels[k])
		}
	}
	if len(labels) > 0 {
		out = append(out, field{"Labels", strings.Join(labels, ", ")})
	}
	return out
}

// plainText is the body of a mail: summary, description and details.
func plainText(m Message) string {
	var b strings.Builder
	b.WriteString(headline(m) + "\n\n")
	if m.Alert.Summary != "" {
		b.WriteString(m.Alert.Summary + "\n\n")
	}
	if m.Alert.Description != "" {
		b.WriteString(strings.TrimSpace(m.Alert.Description) + "\n\n")
	}
	for _, f := range details(m) {
		fmt.Fprintf(&b, "%-9s %s\n", f.name+":", f.value)
	}
	b.WriteString("\n-- \nSent by certops.\n")
	return b.String()
}

// oneLine replaces line breaks, so a value cannot start a new header.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.NewReplacer("\r", " ", "\n", " ").Replace(s)), " ")
}
