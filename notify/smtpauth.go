package notify

import (
	"errors"
	"fmt"
	"net/smtp"
	"slices"
	"strings"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/textlimit"
)

// loginAuth is the LOGIN mechanism (draft-murchison-sasl-login), which
// net/smtp lacks: the server asks "Username:" and "Password:" (base64, which
// net/smtp decodes and encodes), certops answers each. Like
// smtp.PlainAuth, it refuses to run over a connection without TLS.
type loginAuth struct {
	username, password, host string
}

func (a *loginAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errors.New("refusing AUTH LOGIN over a connection without TLS")
	}
	if server.Name != a.host {
		return "", nil, errors.New("wrong host name")
	}
	return spec.SMTPAuthLogin, nil, nil
}

func (a *loginAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	prompt := strings.ToLower(strings.TrimSpace(string(fromServer)))
	switch {
	case strings.HasPrefix(prompt, "user"):
		return []byte(a.username), nil
	case strings.HasPrefix(prompt, "pass"):
		return []byte(a.password), nil
	}
	return nil, fmt.Errorf("unexpected AUTH LOGIN challenge %q", textlimit.Bound(string(fromServer), 64))
}

// smtpAuth picks the mechanism: the channel's auth, or what the server
// offers (the parameters of its AUTH extension), PLAIN preferred.
func smtpAuth(c *spec.SMTPChannel, offered, password string) (smtp.Auth, error) {
	mechs := strings.Fields(strings.ToUpper(offered))
	has := func(m string) bool { return slices.Contains(mechs, m) }
	mech := c.Auth
	switch {
	case mech != "" && !has(mech):
		return nil, fmt.Errorf("server does not offer AUTH %s (it offers %s)", mech, textlimit.Bound(offered, 128))
	case mech == "" && has(spec.SMTPAuthPlain):
		mech = spec.SMTPAuthPlain
	case mech == "" && has(spec.SMTPAuthLogin):
		mech = spec.SMTPAuthLogin
	case mech == "":
		return nil, fmt.Errorf("server offers AUTH %s; certops speaks PLAIN and LOGIN", textlimit.Bound(offered, 128))
	}
	if mech == spec.SMTPAuthLogin {
		return &loginAuth{username: c.Username, password: password, host: c.Host}, nil
	}
	return smtp.PlainAuth("", c.Username, password, c.Host), nil
}
