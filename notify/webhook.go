package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"github.com/certops/certops/secret"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/webhook"
)

// Headers of a webhook notification. The signature is the scheme of
// certops' own generic webhook receiver.
const (
	// SignatureHeader carries "sha256=" + hex(HMAC-SHA256(secret, body)),
	// when the channel has an hmacSecretFile.
	SignatureHeader = webhook.SignatureHeader
	// DeliveryHeader carries the message's delivery ID, the same in every
	// attempt: receivers drop duplicates by it.
	DeliveryHeader = "X-Certops-Delivery"
)

// WebhookPayload is the JSON a webhook channel posts.
type WebhookPayload struct {
	// Version of this format: "1".
	Version    string `json:"version"`
	DeliveryID string `json:"deliveryID"`
	// Channel is the NotificationChannel's name.
	Channel string `json:"channel"`
	Message
}

// sendWebhook posts m as a WebhookPayload, signed when the channel has a
// secret (read now).
func (n *Notifier) sendWebhook(ctx context.Context, c *spec.WebhookChannel, channel string, m Message, id string) error {
	body, err := json.Marshal(WebhookPayload{Version: "1", DeliveryID: id, Channel: channel, Message: m})
	if err != nil {
		return err
	}
	header := http.Header{DeliveryHeader: {id}}
	if c.HMACSecretFile != "" {
		key, err := secret.ReadFile(c.HMACSecretFile)
		if err != nil {
			return fmt.Errorf("webhook HMAC secret: %w", err)
		}
		header.Set(SignatureHeader, webhook.Sign([]byte(key), body))
	}
	return n.post(ctx, c.URL, body, header, "webhook "+safeURL(c.URL))
}

// post POSTs a JSON body to target and wants a 2xx answer. what names the
// receiver in errors instead of target, which may be secret.
func (n *Notifier) post(ctx context.Context, target string, body []byte, header http.Header, what string) error {
	return n.postWith(ctx, n.opts.HTTPClient, target, body, header, what)
}

// postWith is post through client.
func (n *Notifier) postWith(ctx context.Context, client *http.Client, target string, body []byte, header http.Header, what string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("POST to %s: invalid URL", what)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "certops")
	resp, err := client.Do(req)
	if err != nil {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("POST to %s: no answer within %s", what, n.opts.AttemptTimeout)
		}
		return fmt.Errorf("POST to %s: %w", what, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := fmt.Sprintf("POST to %s: %s", what, resp.Status)
		if s := printable(answer); s != "" {
			msg += ": " + s
		}
		return errors.New(msg)
	}
	return nil
}

// allowedURL reports whether s is an https URL, or an http URL of a
// loopback host.
func allowedURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		host := u.Hostname()
		ip := net.ParseIP(host)
		return host == "localhost" || ip != nil && ip.IsLoopback()
	}
	return false
}

// safeURL is the scheme, host and path of s, without credentials or query.
func safeURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// printable is a receiver's answer fit for an error message: one line of
// printable text.
func printable(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(bytes.ToValidUTF8(b, nil)))
	return strings.TrimSpace(oneLine(s))
}
