// Package webhook receives push notifications from GitHub, GitLab and generic
// senders and turns an authenticated one into a wake-up of the reconciler.
//
// A webhook is only ever a hint: the payload is authenticated and then
// discarded. The reconciler fetches the configured ref itself, so a forged or
// replayed payload can at worst cause one extra poll, and a commit SHA in the
// payload is never trusted.
//
// Receivers, each mounted only when its secret is configured (otherwise 404):
//
//	POST /hooks/github   X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>
//	POST /hooks/gitlab   X-Gitlab-Token: <token>
//	POST /hooks/generic  X-Certops-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>
//
// and one that is always mounted, for operators (`certops reconcile`):
//
//	POST /hooks/reconcile  Authorization: Bearer <the read API's token>
//
// It needs the read API's bearer token when one is configured and is open
// otherwise, as the read API then is; its 202 answer is an
// apiv1.ReconcileRequest, whose requestedAt tells which status shows the
// fetch it asked for.
//
// The generic receiver uses GitHub's scheme under a certops header name, so any
// sender can sign with, for example:
//
//	sig=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
//	curl -X POST -H "X-Certops-Signature-256: sha256=$sig" --data "$BODY" https://certops/hooks/generic
//
// Answers are JSON: 202 {"status":"accepted"} (with requestedAt on
// /hooks/reconcile) on success, otherwise an
// agentproto.ErrorBody written by failure.WriteHTTP: 401 unauthorized (bad
// or missing signature or token), 405 method_not_allowed (not POST, with Allow:
// POST), 413 too_large (body over 1 MiB), 400 invalid (unreadable body) or
// 404 not_found (receiver not configured).
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/bearer"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/secret"
)

// MaxBodyBytes is the largest request body a receiver reads; larger bodies get 413.
const MaxBodyBytes = 1 << 20

// Receiver names, used in URL paths and as the "receiver" metric label.
const (
	ReceiverGitHub  = "github"
	ReceiverGitLab  = "gitlab"
	ReceiverGeneric = "generic"
	// ReceiverReconcile is an operator's request (certops reconcile),
	// authenticated by the read API's bearer token.
	ReceiverReconcile = "reconcile"
)

// Results, used as the "result" metric label.
const (
	ResultAccepted         = "accepted"
	ResultUnauthorized     = "unauthorized"
	ResultBadRequest       = "bad_request"
	ResultMethodNotAllowed = "method_not_allowed"
)

// SignatureHeader is the generic receiver's signature header; certops'
// webhook notifications are signed the same way.
const SignatureHeader = "X-Certops-Signature-256"

// Sign returns the SignatureHeader value for body: "sha256=" followed by
// the hex HMAC-SHA256 of body under secret (GitHub's scheme).
func Sign(secret, body []byte) string {
	return "sha256=" + hex.EncodeToString(mac(secret, body))
}

func mac(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return m.Sum(nil)
}

// Config names the files holding each receiver's shared secret. A receiver
// whose file is empty is disabled and answers 404.
type Config struct {
	GitHubSecretFile  string
	GitLabTokenFile   string
	GenericSecretFile string
	// ReconcileToken is the bearer token POST /hooks/reconcile requires:
	// the read API's (serve --api-token-file). Empty leaves it open, as the
	// read API is without a token.
	ReconcileToken string

	// MinWakeInterval is the least time between two wake-ups: accepted
	// requests closer than that coalesce into one wake-up at the end of
	// the interval, so a flood of valid webhooks cannot drive one fetch per
	// request. 0 means DefaultMinWakeInterval.
	MinWakeInterval time.Duration
	// RejectLogInterval is the least time between two warnings about
	// rejected requests; the next warning counts the ones left out. 0 means
	// DefaultRejectLogInterval.
	RejectLogInterval time.Duration
}

// Defaults of Config's intervals.
const (
	DefaultMinWakeInterval   = time.Second
	DefaultRejectLogInterval = 10 * time.Second
)

// Metrics counts webhook requests by receiver and result.
type Metrics struct {
	requests *prometheus.CounterVec
}

// NewMetrics creates the webhook metrics and registers them with reg. If an
// identical collector is already registered with reg, that one is reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "certops_webhook_requests_total",
		Help: "Webhook requests received, by receiver and result.",
	}, []string{"receiver", "result"})
	if err := reg.Register(requests); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			panic(fmt.Sprintf("webhook: register metrics: %v", err)) // programming error: conflicting descriptor
		}
		requests = are.ExistingCollector.(*prometheus.CounterVec)
	}
	for _, receiver := range []string{ReceiverGitHub, ReceiverGitLab, ReceiverGeneric, ReceiverReconcile} {
		for _, result := range []string{ResultAccepted, ResultUnauthorized, ResultBadRequest, ResultMethodNotAllowed} {
			requests.WithLabelValues(receiver, result)
		}
	}
	return &Metrics{requests: requests}
}

func (m *Metrics) observe(receiver, result string) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(receiver, result).Inc()
}

// NewHandler returns the handler serving /hooks/github, /hooks/gitlab,
// /hooks/generic and /hooks/reconcile. Secrets are read from their files now; a file that cannot be
// read or holds only whitespace is an error. wake is called for
// authenticated requests (except GitHub's ping), at most once per
// cfg.MinWakeInterval, and must not block. Warnings about rejected requests
// are limited to one per cfg.RejectLogInterval. metrics may
// be nil.
func NewHandler(cfg Config, wake func(), logger *slog.Logger, metrics *Metrics) (http.Handler, error) {
	if wake == nil {
		return nil, errors.New("webhook: wake function is nil")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MinWakeInterval <= 0 {
		cfg.MinWakeInterval = DefaultMinWakeInterval
	}
	if cfg.RejectLogInterval <= 0 {
		cfg.RejectLogInterval = DefaultRejectLogInterval
	}
	h := &handler{wake: &throttle{fn: wake, every: cfg.MinWakeInterval},
		rejects: &logLimiter{every: cfg.RejectLogInterval}, logger: logger, metrics: metrics,
		reconcileToken: cfg.ReconcileToken}
	for _, r := range []struct {
		name, file string
		dst        *[]byte
	}{
		{"github secret", cfg.GitHubSecretFile, &h.github},
		{"gitlab token", cfg.GitLabTokenFile, &h.gitlab},
		{"generic secret", cfg.GenericSecretFile, &h.generic},
	} {
		if r.file == "" {
			continue // receiver not configured
		}
		v, err := secret.ReadFile(r.file)
		if err != nil {
			return nil, fmt.Errorf("webhook: %s: %w", r.name, err)
		}
		*r.dst = []byte(v)
	}
	return h, nil
}

type handler struct {
	github, gitlab, generic []byte
	reconcileToken          string // "": /hooks/reconcile is open
	wake                    *throttle
	rejects                 *logLimiter // warnings about rejected requests
	logger                  *slog.Logger
	metrics                 *Metrics
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var (
		receiver string
		secret   []byte
		verify   func(secret, body []byte, header http.Header) bool
	)
	switch r.URL.Path {
	case "/hooks/reconcile":
		h.reconcile(w, r)
		return
	case "/hooks/github":
		receiver, secret, verify = ReceiverGitHub, h.github, verifyGitHub
	case "/hooks/gitlab":
		receiver, secret, verify = ReceiverGitLab, h.gitlab, verifyGitLab
	case "/hooks/generic":
		receiver, secret, verify = ReceiverGeneric, h.generic, verifyGeneric
	}
	if secret == nil {
		failure.WriteHTTP(w, failure.New(failure.NotFound, "no such webhook receiver"))
		return
	}
	log := h.logger.With("receiver", receiver, "remote", r.RemoteAddr)

	if r.Method != http.MethodPost {
		h.metrics.observe(receiver, ResultMethodNotAllowed)
		w.Header().Set("Allow", http.MethodPost)
		failure.WriteHTTP(w, failure.New(failure.MethodNotAllowed, "only POST is allowed"))
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		h.metrics.observe(receiver, ResultBadRequest)
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.warn(log, "webhook body too large", "limit", MaxBodyBytes)
			failure.WriteHTTP(w, failure.New(failure.TooLarge, fmt.Sprintf("body exceeds %d bytes", MaxBodyBytes)))
			return
		}
		h.warn(log, "webhook body unreadable", "err", err)
		failure.WriteHTTP(w, failure.New(failure.Invalid, "cannot read request body"))
		return
	}

	if !verify(secret, body, r.Header) {
		h.metrics.observe(receiver, ResultUnauthorized)
		h.warn(log, "webhook rejected: invalid signature")
		failure.WriteHTTP(w, failure.New(failure.Unauthorized, "invalid signature"))
		return
	}

	h.metrics.observe(receiver, ResultAccepted)
	event := r.Header.Get("X-GitHub-Event")
	if event == "" {
		event = r.Header.Get("X-Gitlab-Event")
	}
	if receiver == ReceiverGitHub && event == "ping" {
		log.Info("webhook ping accepted")
	} else {
		log.Debug("webhook accepted; waking reconciler", "event", event)
		h.wake.call()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"accepted"}`+"\n")
}

// reconcile serves POST /hooks/reconcile: an operator asks for a fetch now.
// It wakes the reconciler exactly as a webhook does (throttled, relayed to
// the leader) and answers when it asked, so the caller can tell the pass
// that follows from the ones before.
func (h *handler) reconcile(w http.ResponseWriter, r *http.Request) {
	log := h.logger.With("receiver", ReceiverReconcile, "remote", r.RemoteAddr)
	if r.Method != http.MethodPost {
		h.metrics.observe(ReceiverReconcile, ResultMethodNotAllowed)
		w.Header().Set("Allow", http.MethodPost)
		failure.WriteHTTP(w, failure.New(failure.MethodNotAllowed, "only POST is allowed"))
		return
	}
	if h.reconcileToken != "" {
		if got, ok := bearer.Token(r); !ok || !bearer.Equal(got, h.reconcileToken) {
			h.metrics.observe(ReceiverReconcile, ResultUnauthorized)
			h.warn(log, "reconcile request rejected: missing or invalid bearer token")
			w.Header().Set("WWW-Authenticate", `Bearer realm="certops"`)
			failure.WriteHTTP(w, failure.New(failure.Unauthorized, "missing or invalid bearer token"))
			return
		}
	}
	h.metrics.observe(ReceiverReconcile, ResultAccepted)
	at := time.Now().UTC()
	log.Info("reconcile requested; waking reconciler")
	h.wake.call()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(apiv1.ReconcileRequest{Status: ResultAccepted, RequestedAt: at})
}

// warn logs a rejected request unless another was logged less than
// RejectLogInterval ago; the ones left out are counted in the next one.
func (h *handler) warn(log *slog.Logger, msg string, args ...any) {
	ok, suppressed := h.rejects.allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	log.Warn(msg, args...)
}

// logLimiter lets one event through per interval and counts the others.
type logLimiter struct {
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now and how many events were left out
// since the last one logged.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

// throttle calls fn at most once per interval: a call within the interval
// of the last one is deferred to the end of it, and further calls meanwhile
// join that deferred one. No call is lost, so a push that arrives while the
// previous fetch is running is still fetched.
type throttle struct {
	fn    func()
	every time.Duration

	mu      sync.Mutex
	last    time.Time
	pending bool
}

func (t *throttle) call() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending {
		return
	}
	now := time.Now()
	if wait := t.every - now.Sub(t.last); !t.last.IsZero() && wait > 0 {
		t.pending = true
		time.AfterFunc(wait, func() {
			t.mu.Lock()
			t.pending, t.last = false, time.Now()
			t.mu.Unlock()
			t.fn()
		})
		return
	}
	t.last = now
	t.fn()
}

func verifyGitHub(secret, body []byte, header http.Header) bool {
	return verifyHMAC(secret, body, header.Get("X-Hub-Signature-256"))
}

func verifyGeneric(secret, body []byte, header http.Header) bool {
	return verifyHMAC(secret, body, header.Get(SignatureHeader))
}

// verifyHMAC checks a "sha256=<hex>" signature of body in constant time.
func verifyHMAC(secret, body []byte, signature string) bool {
	hexSig, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	return hmac.Equal(got, mac(secret, body))
}

// verifyGitLab compares the token through SHA-256 digests so that neither the
// content nor the length of the secret leaks through timing.
func verifyGitLab(secret, _ []byte, header http.Header) bool {
	token := header.Get("X-Gitlab-Token")
	if token == "" {
		return false
	}
	got := sha256.Sum256([]byte(token))
	want := sha256.Sum256(secret)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}
