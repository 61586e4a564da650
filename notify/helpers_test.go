package notify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
	"github.com/certops/certops/testkit/storekit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// t0 is the tests' fake "now": in the past, so that what Sync enqueues at
// t0 is due at once for Run, which uses the real clock.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// waitTimeout bounds every wait for something asynchronous.
const waitTimeout = 15 * time.Second

// fastOptions deliver quickly: tests must not wait for default backoffs.
func fastOptions() notify.Options {
	return notify.Options{
		PollInterval:   20 * time.Millisecond,
		AttemptTimeout: 5 * time.Second,
		BackoffBase:    50 * time.Millisecond,
		BackoffMax:     200 * time.Millisecond,
		MaxAttempts:    5,
		// Messages are created at t0, long ago: keep them for the assertions.
		Retention: 100 * 365 * 24 * time.Hour,
	}
}

// env is a notifier on a fresh database, with its metrics registry and a
// log of how far its delivery has got.
type env struct {
	st  *store.Store
	n   *notify.Notifier
	reg *prometheus.Registry
	log *deliveryLog
}

func newEnv(t *testing.T, opts notify.Options) *env {
	t.Helper()
	return newEnvOn(t, storekit.Open(t), opts)
}

func newEnvOn(t *testing.T, st *store.Store, opts notify.Options) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	log := &deliveryLog{Store: st}
	return &env{st: st, n: notify.New(log, logger, notify.NewMetrics(reg), opts), reg: reg, log: log}
}

// deliveryLog is the notifier's store, recording every look for channels
// with due messages (at the notifier's clock, with the channels found) and
// every claim of a message. Tests wait on it to know that delivery has got
// past the point where something they expect not to happen would have.
type deliveryLog struct {
	notify.Store
	mu     sync.Mutex
	polls  []poll
	claims []claim
}

type poll struct {
	At  time.Time
	Due []string
}

type claim struct {
	Channel string
	OK      bool // a message was claimed
}

func (l *deliveryLog) DueNotificationChannels(ctx context.Context, now time.Time) ([]string, error) {
	due, err := l.Store.DueNotificationChannels(ctx, now)
	if err == nil {
		l.mu.Lock()
		l.polls = append(l.polls, poll{At: now, Due: slices.Clone(due)})
		l.mu.Unlock()
	}
	return due, err
}

func (l *deliveryLog) ClaimNotification(ctx context.Context, channel string, now time.Time, lease time.Duration) (store.Notification, bool, error) {
	m, ok, err := l.Store.ClaimNotification(ctx, channel, now, lease)
	if err == nil {
		l.mu.Lock()
		l.claims = append(l.claims, claim{Channel: channel, OK: ok})
		l.mu.Unlock()
	}
	return m, ok, err
}

func (l *deliveryLog) snapshot() ([]poll, []claim) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.polls), slices.Clone(l.claims)
}

// run runs the notifier's delivery loop until the test ends.
func (e *env) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want context.Canceled", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Run did not return after its context ended")
		}
	})
}

// sync calls Sync and fails the test on error.
func (e *env) sync(t *testing.T, policy *spec.AlertPolicySpec, channels map[string]*spec.NotificationChannelSpec, now time.Time, firing ...alert.Alert) {
	t.Helper()
	if err := e.n.Sync(context.Background(), policy, channels, firing, now); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// messages lists the outbox, oldest first.
func (e *env) messages(t *testing.T) []store.Notification {
	t.Helper()
	msgs, err := e.st.ListNotifications(context.Background(), store.NotificationQuery{Limit: store.MaxPageSize})
	if err != nil {
		t.Fatalf("ListNotifications: %v", err)
	}
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	return msgs
}

// lastErrors maps each message's channel to its last delivery error.
func lastErrors(msgs []store.Notification) map[string]string {
	errs := make(map[string]string, len(msgs))
	for _, m := range msgs {
		errs[m.Channel] = m.LastError
	}
	return errs
}

// waitMessages waits until every message in the outbox satisfies done and
// there are want of them, and returns them.
func (e *env) waitMessages(t *testing.T, want int, done func(store.Notification) bool) []store.Notification {
	t.Helper()
	var msgs []store.Notification
	settled := false
	defer func() {
		if !settled {
			t.Logf("outbox: %+v", msgs)
		}
	}()
	testkit.WaitFor(t, waitTimeout, fmt.Sprintf("the outbox to settle on %d messages", want), func() bool {
		msgs = e.messages(t)
		ok := len(msgs) == want
		for _, m := range msgs {
			ok = ok && done(m)
		}
		return ok
	})
	settled = true
	return msgs
}

func hasStatus(status string) func(store.Notification) bool {
	return func(m store.Notification) bool { return m.Status == status }
}

// metric returns the value of the series of name with exactly labels.
func (e *env) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func policyFor(channels ...string) *spec.AlertPolicySpec {
	return &spec.AlertPolicySpec{Notify: channels}
}

func expiring(subject string, sev alert.Severity) alert.Alert {
	return alert.Alert{
		Name: alert.CertificateExpiringSoon, Severity: sev, Subject: subject,
		Summary:     "Certificate " + subject + " expires in 5 days",
		Description: "Its renewal is overdue; check the issuer and the agents.\nLast error: ACME order failed.",
		Labels:      map[string]string{notify.RunbookLabel: "https://docs.example.com/runbooks/alerts.md#certificate-expiring-soon", "team": "shop"},
		Since:       t0.Add(-time.Hour),
	}
}

// writeFile writes content to a fresh file and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// request is what an HTTP receiver got.
type request struct {
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
}

// receiver is a real HTTP server on loopback that records requests and
// answers with whatever answer returns for the n-th request (from 0).
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.reqs)
		rc.reqs = append(rc.reqs, request{Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now()})
		rc.mu.Unlock()
		if answer != nil {
			answer(n, w, r)
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

// testCA returns a server TLS configuration for 127.0.0.1 and localhost,
// with a certificate from a fresh CA, and a pool trusting that CA.
func testCA(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "certops notify test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}, pool
}

// mailServer is a real SMTP server (go-smtp) on loopback. With TLS it
// offers STARTTLS; it offers AUTH PLAIN only over TLS and requires it
// before MAIL when a user is set.
type mailServer struct {
	addr       string
	user, pass string

	mu       sync.Mutex
	mails    []receivedMail
	sessions int
	auths    int
}

// receivedMail is one message as the server received it.
type receivedMail struct {
	From string
	To   []string
	Data []byte
	TLS  bool
	User string
}

func newMailServer(t *testing.T, tlsConfig *tls.Config, user, pass string) *mailServer {
	t.Helper()
	ms := &mailServer{user: user, pass: pass}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		ms.mu.Lock()
		ms.sessions++
		ms.mu.Unlock()
		return &mailSession{srv: ms, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.TLSConfig = tlsConfig
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ms
}

func (ms *mailServer) hostPort(t *testing.T) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(ms.addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := net.LookupPort("tcp", port)
	return host, p
}

func (ms *mailServer) received() (mails []receivedMail, sessions, auths int) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]receivedMail(nil), ms.mails...), ms.sessions, ms.auths
}

type mailSession struct {
	srv  *mailServer
	conn *smtp.Conn
	user string
	from string
	to   []string
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(mech string) (sasl.Server, error) {
	s.srv.mu.Lock()
	s.srv.auths++
	s.srv.mu.Unlock()
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.srv.user || password != s.srv.pass {
			return errors.New("invalid username or password")
		}
		s.user = username
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.srv.user != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	s.srv.mails = append(s.srv.mails, receivedMail{From: s.from, To: s.to, Data: data, TLS: isTLS, User: s.user})
	s.srv.mu.Unlock()
	return nil
}

func (s *mailSession) Reset()        { s.from, s.to = "", nil }
func (s *mailSession) Logout() error { return nil }

// applyObjects applies desired-state objects to st as one revision, as the
// reconciler does.
func applyObjects(t *testing.T, st *store.Store, objs ...*spec.Object) {
	t.Helper()
	for _, o := range objs {
		o.Source = spec.Position{File: "alerts.yaml", Line: 1}
	}
	rev := state.Revision{Ref: "main", Commit: strings.Repeat("a", 40), Time: t0}
	storekit.Apply(t, st, rev, state.Status{LastAppliedRevision: rev.String()}, storekit.Desired(objs...))
}
