package notify_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
	"github.com/certops/certops/webhook"
)

func TestSlackDelivery(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	urlFile := writeFile(t, "slack-url", rc.URL+"/services/T000/B000/XXXX\n")
	e := newEnv(t, fastOptions())
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{"ops": slackSpec(urlFile)}
	shop := expiring("shop", alert.Critical)
	shop.Summary = "Certificate shop expires in <5 days> & counting"

	e.sync(t, policyFor("ops"), channels, t0, shop)
	e.waitMessages(t, 1, hasStatus(store.OutboxSent))
	e.sync(t, policyFor("ops"), channels, t0.Add(time.Minute))
	e.waitMessages(t, 2, hasStatus(store.OutboxSent))

	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("Slack got %d requests, want 2 (firing, resolved)", len(reqs))
	}
	if got := reqs[0].Path; got != "/services/T000/B000/XXXX" {
		t.Errorf("posted to %s, want the URL from the file", got)
	}
	if got := reqs[0].Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	var firing, resolved notify.SlackPayload
	if err := json.Unmarshal(reqs[0].Body, &firing); err != nil {
		t.Fatalf("firing payload %s: %v", reqs[0].Body, err)
	}
	if err := json.Unmarshal(reqs[1].Body, &resolved); err != nil {
		t.Fatalf("resolved payload %s: %v", reqs[1].Body, err)
	}
	wantFiring := strings.Join([]string{
		":rotating_light: *[FIRING] CertopsCertificateExpiringSoon (critical): shop*",
		"Certificate shop expires in &lt;5 days&gt; &amp; counting",
		">Its renewal is overdue; check the issuer and the agents.",
		">Last error: ACME order failed.",
		"*Subject:* shop",
		"*Severity:* critical",
		"*Since:* 2025-03-01T11:00:00Z",
		"*Runbook:* <https://docs.example.com/runbooks/alerts.md#certificate-expiring-soon|runbook>",
		"*Labels:* team=shop",
	}, "\n")
	if diff := cmp.Diff(firing, notify.SlackPayload{Text: wantFiring, Channel: "#platform-alerts"}); diff != "" {
		t.Errorf("firing payload (-got +want):\n%s", diff)
	}
	if !strings.HasPrefix(resolved.Text, ":white_check_mark: *[RESOLVED] CertopsCertificateExpiringSoon (critical): shop*") ||
		!strings.Contains(resolved.Text, "*Resolved:* 2025-03-01T12:01:00Z") {
		t.Errorf("resolved text = %q, want a RESOLVED headline and the resolution time", resolved.Text)
	}
	if got := e.metric(t, "certops_notifications_total", map[string]string{"channel_type": "slack", "result": "sent"}); got != 2 {
		t.Errorf("certops_notifications_total{slack,sent} = %v, want 2", got)
	}
}

func TestWebhookDeliveryIsSigned(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-hmac-key"
	rc := newReceiver(t, nil)
	e := newEnv(t, fastOptions())
	e.run(t)
	secretFile := writeFile(t, "hmac", secret+"\n")
	channels := map[string]*spec.NotificationChannelSpec{"hook": {Webhook: &spec.WebhookChannel{
		URL: rc.URL + "/hooks/certops", HMACSecretFile: secretFile}}}
	shop := expiring("shop", alert.Warning)

	e.sync(t, policyFor("hook"), channels, t0, shop)
	msgs := e.waitMessages(t, 1, hasStatus(store.OutboxSent))

	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("webhook got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	// certops' own generic receiver, with the same secret file, accepts the
	// signed request as delivered and refuses it with the body altered.
	verifier, err := webhook.NewHandler(webhook.Config{GenericSecretFile: secretFile}, func() {}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for body, want := range map[string]int{string(r.Body): http.StatusAccepted, string(r.Body) + " ": http.StatusUnauthorized} {
		req := httptest.NewRequest(http.MethodPost, "/hooks/generic", strings.NewReader(body))
		req.Header = r.Header.Clone()
		answer := httptest.NewRecorder()
		verifier.ServeHTTP(answer, req)
		if answer.Code != want {
			t.Errorf("webhook receiver answered %d to the delivered request (body altered: %t), want %d",
				answer.Code, body != string(r.Body), want)
		}
	}
	var got notify.WebhookPayload
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("payload %s: %v", r.Body, err)
	}
	id := r.Header.Get(notify.DeliveryHeader)
	if len(id) != 32 {
		t.Errorf("%s = %q, want 32 hex digits", notify.DeliveryHeader, id)
	}
	want := notify.WebhookPayload{Version: "1", DeliveryID: id, Channel: "hook",
		Message: notify.Message{Kind: notify.KindFiring, Status: notify.StatusFiring, Alert: shop, At: t0}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("payload (-got +want):\n%s", diff)
	}
	if msgs[0].SentAt == nil || msgs[0].Attempts != 1 || msgs[0].LastError != "" {
		t.Errorf("recorded message = %+v, want sent at the first attempt", msgs[0])
	}

	// Without a secret file: unsigned, still with a delivery id.
	channels["hook"].Webhook.HMACSecretFile = ""
	e.sync(t, policyFor("hook"), channels, t0.Add(time.Minute))
	e.waitMessages(t, 2, hasStatus(store.OutboxSent))
	r = rc.requests()[1]
	if r.Header.Get(notify.SignatureHeader) != "" || r.Header.Get(notify.DeliveryHeader) == "" || r.Header.Get(notify.DeliveryHeader) == id {
		t.Errorf("unsigned request headers = %v, want no signature and a new delivery id", r.Header)
	}
}

func smtpSpec(host string, port int, startTLS bool, user, passwordFile string) *spec.NotificationChannelSpec {
	return &spec.NotificationChannelSpec{SMTP: &spec.SMTPChannel{
		Host: host, Port: port, From: "certops@example.com", To: []string{"oncall@example.com", "platform@example.com"},
		StartTLS: &startTLS, Username: user, PasswordFile: passwordFile}}
}

func TestSMTPDeliveryWithStartTLSAndAuth(t *testing.T) {
	t.Parallel()
	serverTLS, roots := testCA(t)
	ms := newMailServer(t, serverTLS, "certops", "mail-password")
	host, port := ms.hostPort(t)
	opts := fastOptions()
	opts.RootCAs = roots
	e := newEnv(t, opts)
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{
		"mail": smtpSpec(host, port, true, "certops", writeFile(t, "password", "mail-password\n"))}
	shop := expiring("shop", alert.Critical)
	shop.Description = "Zertifikat läuft ab — bitte prüfen.\nLast error: ACME order failed."

	e.sync(t, policyFor("mail"), channels, t0, shop)
	e.waitMessages(t, 1, hasStatus(store.OutboxSent))

	mails, _, _ := ms.received()
	if len(mails) != 1 {
		t.Fatalf("server received %d mails, want 1", len(mails))
	}
	m := mails[0]
	if !m.TLS || m.User != "certops" {
		t.Errorf("mail received with TLS %v as user %q, want over TLS as certops", m.TLS, m.User)
	}
	if diff := cmp.Diff([]string{m.From, strings.Join(m.To, ",")},
		[]string{"certops@example.com", "oncall@example.com,platform@example.com"}); diff != "" {
		t.Errorf("envelope (-got +want):\n%s", diff)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("parse the received message: %v\n%s", err, m.Data)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	headers := map[string]string{
		"From": msg.Header.Get("From"), "To": msg.Header.Get("To"), "Subject": subject,
		"MIME-Version": msg.Header.Get("MIME-Version"), "Content-Type": msg.Header.Get("Content-Type"),
	}
	wantHeaders := map[string]string{
		"From": "certops@example.com", "To": "oncall@example.com, platform@example.com",
		"Subject":      "[certops] [FIRING] CertopsCertificateExpiringSoon (critical): shop",
		"MIME-Version": "1.0", "Content-Type": "text/plain; charset=utf-8",
	}
	if diff := cmp.Diff(headers, wantHeaders); diff != "" {
		t.Errorf("headers (-got +want):\n%s", diff)
	}
	if date, err := msg.Header.Date(); err != nil || time.Since(date) > time.Minute {
		t.Errorf("Date = %q (%v), want now", msg.Header.Get("Date"), err)
	}
	if id := msg.Header.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.com>") {
		t.Errorf("Message-ID = %q, want <id@example.com>", id)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"[FIRING] CertopsCertificateExpiringSoon (critical): shop",
		shop.Summary,
		"Zertifikat läuft ab — bitte prüfen.\r\nLast error: ACME order failed.",
		"Runbook:  https://docs.example.com/runbooks/alerts.md#certificate-expiring-soon",
		"Since:    2025-03-01T11:00:00Z",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}

func TestSMTPNeverSendsCredentialsInPlaintext(t *testing.T) {
	t.Parallel()
	// A server without TLS: it offers neither STARTTLS nor AUTH.
	ms := newMailServer(t, nil, "certops", "mail-password")
	host, port := ms.hostPort(t)
	opts := fastOptions()
	opts.MaxAttempts = 1
	e := newEnv(t, opts)
	e.run(t)
	password := writeFile(t, "password", "mail-password")
	channels := map[string]*spec.NotificationChannelSpec{
		"auth-no-tls": smtpSpec(host, port, false, "certops", password),
		"no-starttls": smtpSpec(host, port, true, "certops", password),
	}
	e.sync(t, policyFor("auth-no-tls", "no-starttls"), channels, t0, expiring("shop", alert.Warning))
	msgs := e.waitMessages(t, 2, hasStatus(store.OutboxDead))

	errs := lastErrors(msgs)
	if got := errs["auth-no-tls"]; !strings.Contains(got, "refusing to send SMTP credentials over a plaintext connection") {
		t.Errorf("auth-no-tls error = %q, want a refusal to authenticate in plaintext", got)
	}
	if got := errs["no-starttls"]; !strings.Contains(got, "server does not offer STARTTLS") {
		t.Errorf("no-starttls error = %q, want the missing STARTTLS reported", got)
	}
	for channel, err := range errs {
		if strings.Contains(err, "mail-password") {
			t.Errorf("%s error %q shows the password", channel, err)
		}
	}
	if mails, _, auths := ms.received(); len(mails) != 0 || auths != 0 {
		t.Errorf("server got %d mails and %d AUTH attempts, want none", len(mails), auths)
	}

	// Without credentials, a plaintext relay is fine.
	relay := newMailServer(t, nil, "", "")
	host, port = relay.hostPort(t)
	channels["relay"] = smtpSpec(host, port, false, "", "")
	e.sync(t, policyFor("relay"), channels, t0.Add(time.Minute), expiring("shop", alert.Warning))
	e.waitMessages(t, 3, func(m store.Notification) bool { return m.Channel != "relay" || m.Status == store.OutboxSent })
	if mails, _, _ := relay.received(); len(mails) != 1 || mails[0].TLS {
		t.Errorf("relay: server got %+v, want one plaintext mail", mails)
	}
}
