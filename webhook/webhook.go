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
// The generic receiver uses GitHub's scheme under a certops header name, so any
// sender can sign with, for example:
//
//	sig=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
//	curl -X POST -H "X-Certops-Signature-256: sha256=$sig" --data "$BODY" https://certops/hooks/generic
//
// Answers are JSON: 202 {"status":"accepted"} on success, otherwise an
// agentproto.ErrorBody written by failure.WriteHTTP: 401 unauthorized (bad
// or missing signature), 405 method_not_allowed (not POST, with Allow:
// POST), 413 too_large (body over 1 MiB), 400 invalid (unreadable body) or
// 404 not_found (receiver not configured).
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

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
}

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
	for _, receiver := range []string{ReceiverGitHub, ReceiverGitLab, ReceiverGeneric} {
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

// NewHandler returns the handler serving /hooks/github, /hooks/gitlab and
// /hooks/generic. Secrets are read from their files now; a file that cannot be
// read or holds only whitespace is an error. wake is called once for every
// authenticated request (except GitHub's ping) and must not block. metrics may
// be nil.
func NewHandler(cfg Config, wake func(), logger *slog.Logger, metrics *Metrics) (http.Handler, error) {
	if wake == nil {
		return nil, errors.New("webhook: wake function is nil")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{wake: wake, logger: logger, metrics: metrics}
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
	wake                    func()
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
			log.Warn("webhook body too large", "limit", MaxBodyBytes)
			failure.WriteHTTP(w, failure.New(failure.TooLarge, fmt.Sprintf("body exceeds %d bytes", MaxBodyBytes)))
			return
		}
		log.Warn("webhook body unreadable", "err", err)
		failure.WriteHTTP(w, failure.New(failure.Invalid, "cannot read request body"))
		return
	}

	if !verify(secret, body, r.Header) {
		h.metrics.observe(receiver, ResultUnauthorized)
		log.Warn("webhook rejected: invalid signature")
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
		h.wake()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"accepted"}`+"\n")
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
