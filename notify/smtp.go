package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	"github.com/certops/certops/secret"
	"github.com/certops/certops/spec"
)

// sendSMTP mails m to the channel's recipients. With implicit TLS (tls:
// implicit, the default on port 465) TLS starts with the connection; with
// STARTTLS (the default elsewhere) the connection is upgraded before
// anything else is sent, and a server that does not offer STARTTLS is an
// error, never a reason to go on in plaintext. Credentials are never sent
// over plaintext: a channel with a username and startTLS: false is refused.
func (n *Notifier) sendSMTP(ctx context.Context, c *spec.SMTPChannel, m Message, id string) error {
	mode := c.TLSMode()
	if c.Username != "" && mode == spec.SMTPTLSNone {
		return errors.New("refusing to send SMTP credentials over a plaintext connection: set startTLS: true, or drop username for an unauthenticated relay")
	}
	var password string
	if c.Username != "" {
		var err error
		if password, err = secret.ReadFile(c.PasswordFile); err != nil {
			return fmt.Errorf("SMTP password: %w", err)
		}
	}
	msg, err := mailMessage(c, m, id, n.opts.Now())
	if err != nil {
		return err
	}

	addr := net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	conn, err := dialSMTP(ctx, addr, mode, smtpTLSConfig(c, n.opts))
	if err != nil {
		return fmt.Errorf("SMTP %s: %w", addr, timeoutErr(ctx, err))
	}
	// Bound the whole conversation by ctx: its deadline, or its end.
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	client, err := smtp.NewClient(conn, c.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("SMTP %s: %w", addr, timeoutErr(ctx, err))
	}
	defer client.Close()
	if err := converse(client, c, n.opts, password, msg); err != nil {
		return fmt.Errorf("SMTP %s: %w", addr, timeoutErr(ctx, err))
	}
	return nil
}

// converse runs the SMTP conversation after the greeting: EHLO, STARTTLS,
// AUTH, the envelope, the message and QUIT.
func converse(client *smtp.Client, c *spec.SMTPChannel, opts Options, password string, msg []byte) error {
	if err := client.Hello(opts.Hostname); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if c.TLSMode() == spec.SMTPTLSStartTLS {
		if ok, _ := client.Extension("STARTTLS"); !ok {
			return errors.New("server does not offer STARTTLS (startTLS is on; refusing to send in plaintext)")
		}
		if err := client.StartTLS(smtpTLSConfig(c, opts)); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if c.Username != "" {
		ok, offered := client.Extension("AUTH")
		if !ok {
			return errors.New("server does not offer AUTH")
		}
		auth, err := smtpAuth(c, offered, password)
		if err != nil {
			return err
		}
		if err := client.Auth(auth); err != nil {
			return fmt.Errorf("AUTH as %s: %w", c.Username, err)
		}
	}
	if err := client.Mail(c.From); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, to := range c.To {
		if err := client.Rcpt(to); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", to, err)
		}
	}
	w, err := client.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := client.Quit(); err != nil {
		return fmt.Errorf("QUIT: %w", err)
	}
	return nil
}

// dialSMTP connects to addr; with implicit TLS it completes the TLS
// handshake (verifying the server against cfg) before returning.
func dialSMTP(ctx context.Context, addr, mode string, cfg *tls.Config) (net.Conn, error) {
	if mode == spec.SMTPTLSImplicit {
		d := tls.Dialer{Config: cfg}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("implicit TLS: %w", err)
		}
		return conn, nil
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// smtpTLSConfig verifies the server's certificate against the channel's
// host and opts.RootCAs (the system's when nil).
func smtpTLSConfig(c *spec.SMTPChannel, opts Options) *tls.Config {
	return &tls.Config{ServerName: c.Host, RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
}

// mailMessage is m as an RFC 5322 message: plain UTF-8 text, quoted-
// printable. The Message-ID derives from the delivery id, so a retried
// message has the same one.
func mailMessage(c *spec.SMTPChannel, m Message, id string, date time.Time) ([]byte, error) {
	domain := "certops.invalid"
	if at := strings.LastIndexByte(c.From, '@'); at >= 0 {
		domain = c.From[at+1:]
	}
	var b bytes.Buffer
	for _, h := range [][2]string{
		{"From", c.From},
		{"To", strings.Join(c.To, ", ")},
		{"Subject", mime.QEncoding.Encode("utf-8", "[certops] "+headline(m))},
		{"Date", date.Format(time.RFC1123Z)},
		{"Message-ID", "<" + id + "@" + domain + ">"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Transfer-Encoding", "quoted-printable"},
		{"Auto-Submitted", "auto-generated"},
	} {
		b.WriteString(h[0] + ": " + oneLine(h[1]) + "\r\n")
	}
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(plainText(m))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// timeoutErr names a timeout for what it is when ctx ran out.
func timeoutErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", err, context.Cause(ctx))
	}
	return err
}
