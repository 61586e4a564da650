package notify_test

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
)

// authMailServer is a mailServer (go-smtp on loopback) that offers the
// given AUTH mechanisms (PLAIN and/or LOGIN) and, with implicit, speaks
// TLS from the first byte (SMTPS) instead of offering STARTTLS. It records
// the mechanism of every AUTH.
type authMailServer struct {
	*mailServer
	mechs []string

	mu   sync.Mutex
	used []string
}

func newAuthMailServer(t *testing.T, tlsConfig *tls.Config, implicit bool, mechs []string, user, pass string) *authMailServer {
	t.Helper()
	as := &authMailServer{mailServer: &mailServer{user: user, pass: pass}, mechs: mechs}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		as.mailServer.mu.Lock()
		as.sessions++
		as.mailServer.mu.Unlock()
		return &authSession{mailSession: &mailSession{srv: as.mailServer, conn: c}, srv: as}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if implicit {
		ln = tls.NewListener(ln, tlsConfig)
	} else {
		srv.TLSConfig = tlsConfig
	}
	as.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return as
}

func (as *authMailServer) mechanisms() []string {
	as.mu.Lock()
	defer as.mu.Unlock()
	return append([]string(nil), as.used...)
}

type authSession struct {
	*mailSession
	srv *authMailServer
}

func (s *authSession) AuthMechanisms() []string { return s.srv.mechs }

func (s *authSession) Auth(mech string) (sasl.Server, error) {
	s.srv.mu.Lock()
	s.srv.used = append(s.srv.used, mech)
	s.srv.mu.Unlock()
	if mech == sasl.Plain {
		return s.mailSession.Auth(mech)
	}
	s.srv.mailServer.mu.Lock()
	s.srv.auths++
	s.srv.mailServer.mu.Unlock()
	return &loginServer{check: func(user, pass string) error {
		if user != s.srv.user || pass != s.srv.pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		s.user = user
		return nil
	}}, nil
}

// loginServer is the server side of AUTH LOGIN: "Username:", then
// "Password:" (go-smtp base64-encodes the challenges and decodes the
// answers).
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (s *loginServer) Next(response []byte) ([]byte, bool, error) {
	s.step++
	switch {
	case s.step == 1 && len(response) > 0: // the username as initial response
		s.user, s.step = string(response), 2
		return []byte("Password:"), false, nil
	case s.step == 1:
		return []byte("Username:"), false, nil
	case s.step == 2:
		s.user = string(response)
		return []byte("Password:"), false, nil
	}
	return nil, true, s.check(s.user, string(response))
}

// smtpsSpec is a channel with tls and auth set, to the server at host:port.
func smtpsSpec(host string, port int, tlsMode, auth, passwordFile string) *spec.NotificationChannelSpec {
	return &spec.NotificationChannelSpec{SMTP: &spec.SMTPChannel{
		Host: host, Port: port, From: "certops@example.com", To: []string{"oncall@example.com"},
		TLS: tlsMode, Auth: auth, Username: "certops", PasswordFile: passwordFile}}
}

func TestSMTPImplicitTLSWithLoginAuth(t *testing.T) {
	t.Parallel()
	serverTLS, roots := testCA(t)
	ms := newAuthMailServer(t, serverTLS, true, []string{sasl.Login}, "certops", "mail-password")
	host, port := ms.hostPort(t)
	opts := fastOptions()
	opts.RootCAs = roots
	e := newEnv(t, opts)
	e.run(t)
	// No auth field: the server offers only LOGIN, so LOGIN it is.
	channels := map[string]*spec.NotificationChannelSpec{
		"smtps": smtpsSpec(host, port, spec.SMTPTLSImplicit, "", writeFile(t, "password", "mail-password\n"))}
	e.sync(t, policyFor("smtps"), channels, t0, expiring("shop", alert.Critical))
	e.waitMessages(t, 1, hasStatus(store.OutboxSent))

	mails, _, auths := ms.received()
	if len(mails) != 1 || !mails[0].TLS || mails[0].User != "certops" {
		t.Fatalf("server received %+v, want one mail over TLS as certops", mails)
	}
	if !strings.Contains(string(mails[0].Data), "Subject: [certops] [FIRING] CertopsCertificateExpiringSoon (critical): shop") {
		t.Errorf("mail lacks its subject:\n%s", mails[0].Data)
	}
	if got := ms.mechanisms(); auths != 1 || len(got) != 1 || got[0] != sasl.Login {
		t.Errorf("AUTH mechanisms used = %v (%d AUTHs), want one LOGIN", got, auths)
	}
}

func TestSMTPAuthMechanismChoice(t *testing.T) {
	t.Parallel()
	serverTLS, roots := testCA(t)
	both := newAuthMailServer(t, serverTLS, false, []string{sasl.Login, sasl.Plain}, "certops", "mail-password")
	plainOnly := newAuthMailServer(t, serverTLS, false, []string{sasl.Plain}, "certops", "mail-password")
	opts := fastOptions()
	opts.RootCAs = roots
	opts.MaxAttempts = 1
	e := newEnv(t, opts)
	e.run(t)
	password := writeFile(t, "password", "mail-password")
	host, port := both.hostPort(t)
	_, plainPort := plainOnly.hostPort(t)
	channels := map[string]*spec.NotificationChannelSpec{
		// STARTTLS (the default on a port other than 465), mechanism left
		// to the server's offer: PLAIN is preferred.
		"auto":  smtpsSpec(host, port, "", "", password),
		"login": smtpsSpec(host, port, spec.SMTPTLSStartTLS, spec.SMTPAuthLogin, password),
		// LOGIN asked of a server that offers only PLAIN: refused.
		"login-unoffered": smtpsSpec(host, plainPort, "", spec.SMTPAuthLogin, password),
	}
	e.sync(t, policyFor("auto", "login"), channels, t0, expiring("shop", alert.Warning))
	e.waitMessages(t, 2, hasStatus(store.OutboxSent))
	mails, _, _ := both.received()
	if len(mails) != 2 || !mails[0].TLS || !mails[1].TLS {
		t.Fatalf("server received %+v, want two mails over STARTTLS", mails)
	}
	got := both.mechanisms()
	if len(got) != 2 || !((got[0] == sasl.Plain && got[1] == sasl.Login) || (got[0] == sasl.Login && got[1] == sasl.Plain)) {
		t.Errorf("AUTH mechanisms used = %v, want PLAIN (auto) and LOGIN (auth: LOGIN)", got)
	}

	e.sync(t, policyFor("login-unoffered"), channels, t0.Add(time.Minute), expiring("shop", alert.Warning))
	msgs := e.waitMessages(t, 3, func(m store.Notification) bool {
		return m.Channel != "login-unoffered" || m.Status == store.OutboxDead
	})
	for _, m := range msgs {
		if m.Channel == "login-unoffered" && !strings.Contains(m.LastError, "server does not offer AUTH LOGIN (it offers PLAIN)") {
			t.Errorf("login-unoffered error = %q, want the missing mechanism named", m.LastError)
		}
	}
	if mails, _, auths := plainOnly.received(); len(mails) != 0 || auths != 0 {
		t.Errorf("PLAIN-only server got %d mails and %d AUTHs, want none", len(mails), auths)
	}
}

func TestSMTPRefusesServerWithoutTLS(t *testing.T) {
	t.Parallel()
	// A plaintext server that would even take AUTH LOGIN without TLS:
	// neither implicit TLS nor STARTTLS gets anywhere with it.
	ms := newAuthMailServer(t, nil, false, []string{sasl.Login}, "certops", "mail-password")
	host, port := ms.hostPort(t)
	opts := fastOptions()
	opts.MaxAttempts = 1
	e := newEnv(t, opts)
	e.run(t)
	password := writeFile(t, "password", "mail-password")
	channels := map[string]*spec.NotificationChannelSpec{
		"implicit": smtpsSpec(host, port, spec.SMTPTLSImplicit, spec.SMTPAuthLogin, password),
		"starttls": smtpsSpec(host, port, spec.SMTPTLSStartTLS, spec.SMTPAuthLogin, password),
	}
	e.sync(t, policyFor("implicit", "starttls"), channels, t0, expiring("shop", alert.Warning))
	msgs := e.waitMessages(t, 2, hasStatus(store.OutboxDead))
	errs := lastErrors(msgs)
	if got := errs["implicit"]; !strings.Contains(got, "implicit TLS:") {
		t.Errorf("implicit error = %q, want the failed TLS handshake", got)
	}
	if got := errs["starttls"]; !strings.Contains(got, "server does not offer STARTTLS") {
		t.Errorf("starttls error = %q, want the missing STARTTLS reported", got)
	}
	if mails, _, auths := ms.received(); len(mails) != 0 || auths != 0 {
		t.Errorf("server got %d mails and %d AUTH attempts, want none", len(mails), auths)
	}
}

func TestSMTPWrongPasswordShowsTheServersError(t *testing.T) {
	t.Parallel()
	serverTLS, roots := testCA(t)
	ms := newAuthMailServer(t, serverTLS, true, []string{sasl.Login}, "certops", "mail-password")
	host, port := ms.hostPort(t)
	opts := fastOptions()
	opts.RootCAs = roots
	opts.MaxAttempts = 1
	e := newEnv(t, opts)
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{
		"smtps": smtpsSpec(host, port, spec.SMTPTLSImplicit, spec.SMTPAuthLogin, writeFile(t, "password", "wrong-password"))}
	e.sync(t, policyFor("smtps"), channels, t0, expiring("shop", alert.Warning))
	msgs := e.waitMessages(t, 1, hasStatus(store.OutboxDead))
	got := msgs[0].LastError
	if !strings.Contains(got, "AUTH as certops: 535") || !strings.Contains(got, "Authentication credentials invalid") {
		t.Errorf("error = %q, want the server's 535 answer", got)
	}
	if strings.Contains(got, "wrong-password") {
		t.Errorf("error %q shows the password", got)
	}
	if mails, _, auths := ms.received(); len(mails) != 0 || auths != 1 {
		t.Errorf("server got %d mails and %d AUTH attempts, want none and one", len(mails), auths)
	}
}
