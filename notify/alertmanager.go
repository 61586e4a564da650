package notify

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/secret"
	"github.com/certops/certops/spec"
)

// ChannelAlertmanager is the channel_type of Alertmanager channels.
const ChannelAlertmanager = "alertmanager"

// AlertmanagerAlert is one element of the JSON array posted to
// Alertmanager's POST /api/v2/alerts (its postableAlert).
type AlertmanagerAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Alertmanager labels and annotations certops sets besides the alert's own
// labels.
const (
	amAlertName   = "alertname"
	amSeverity    = "severity"
	amSubject     = "subject"
	amSummary     = "summary"
	amDescription = "description"
)

// sendAlertmanager posts m to Alertmanager as one alert. A firing message
// sets endsAt to twice the renotify interval ahead, so Alertmanager keeps
// the alert firing between certops' renotify messages (its own
// resolve_timeout does not apply) and resolves it by itself only if certops
// stops talking; a resolved message sets endsAt to when it was resolved.
func (n *Notifier) sendAlertmanager(ctx context.Context, c *spec.AlertmanagerChannel, m Message) error {
	renotify := DefaultRenotifyInterval
	if policy, _, err := n.st.NotificationRoutes(ctx); err == nil {
		if d, err := renotifyInterval(policy); err == nil {
			renotify = d
		}
	}
	body, err := json.Marshal([]AlertmanagerAlert{alertmanagerAlert(m, c.DashboardURL, renotify)})
	if err != nil {
		return err
	}
	header := http.Header{}
	if c.BearerTokenFile != "" {
		token, err := secret.ReadFile(c.BearerTokenFile)
		if err != nil {
			return fmt.Errorf("Alertmanager bearer token: %w", err) //lint:ignore ST1005 proper noun
		}
		header.Set("Authorization", "Bearer "+token)
	}
	client := n.opts.HTTPClient
	if c.CAFile != "" {
		if client, err = clientTrusting(c.CAFile); err != nil {
			return err
		}
	}
	target := strings.TrimSuffix(c.URL, "/") + "/api/v2/alerts"
	return n.postWith(ctx, client, target, body, header, "Alertmanager "+safeURL(target))
}

// alertmanagerAlert is m as Alertmanager sees it: labels identify the
// alert (alertname, severity, subject and the alert's labels), annotations
// describe it (summary, description, runbook_url).
func alertmanagerAlert(m Message, dashboardURL string, renotify time.Duration) AlertmanagerAlert {
	a := m.Alert
	labels := make(map[string]string, len(a.Labels)+3)
	for k, v := range a.Labels {
		if k != RunbookLabel && v != "" {
			labels[labelName(k)] = v
		}
	}
	labels[amAlertName] = a.Name
	labels[amSeverity] = string(a.Severity)
	if a.Subject != "" {
		labels[amSubject] = a.Subject
	}
	annotations := map[string]string{}
	if a.Summary != "" {
		annotations[amSummary] = a.Summary
	}
	if a.Description != "" {
		annotations[amDescription] = a.Description
	}
	if u := a.Labels[RunbookLabel]; u != "" {
		annotations[RunbookLabel] = u
	}
	out := AlertmanagerAlert{Labels: labels, Annotations: annotations, StartsAt: a.Since.UTC(),
		GeneratorURL: generatorURL(dashboardURL, a)}
	if out.StartsAt.IsZero() {
		out.StartsAt = m.At.UTC()
	}
	if m.Status == StatusResolved {
		out.EndsAt = m.At.UTC()
	} else {
		out.EndsAt = m.At.Add(2 * renotify).UTC()
	}
	if out.EndsAt.Before(out.StartsAt) {
		out.StartsAt = out.EndsAt
	}
	return out
}

// labelName is k as a classic Prometheus label name: characters other than
// ASCII letters, digits and '_' become '_', and a leading digit gets a '_'.
func labelName(k string) string {
	b := []byte(k)
	for i, c := range b {
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			b[i] = '_'
		}
	}
	if len(b) > 0 && '0' <= b[0] && b[0] <= '9' {
		return "_" + string(b)
	}
	return string(b)
}

// generatorURL links to the alert's certificate or agent in the dashboard
// at base, or to its overview; "" without a base.
func generatorURL(base string, a alert.Alert) string {
	if base == "" {
		return ""
	}
	base = strings.TrimSuffix(base, "/") + "/ui/"
	labels := maps.Clone(a.Labels)
	switch {
	case labels["certificate"] != "":
		return base + "certificates/" + url.PathEscape(labels["certificate"])
	case labels["agent"] != "":
		return base + "agents/" + url.PathEscape(labels["agent"])
	}
	return base
}

// clientTrusting is an HTTP client, following no redirects, that trusts
// the CAs in caFile (PEM) only.
func clientTrusting(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", errors.Unwrap(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig.RootCAs = pool
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}
