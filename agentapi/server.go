// Package agentapi is the server side of the agent protocol (see
// agentproto): it authenticates agents by the SHA-256 of their bearer
// token, serves each agent its assignments from an in-memory snapshot of the
// applied desired state and the deployments (so an idle agent's conditional
// poll costs no database query), signs CSRs that match the certificate's
// spec through the certificate's issuer, keeps per-agent deployment state
// (versions, renewal time, backoff, reports) in Postgres, and exports the
// certificate and agent metrics.
//
// Every replica serves the protocol. Run keeps a replica's snapshot fresh:
// once a second it asks Postgres, in one cheap query, whether a revision was
// applied or any replica changed a deployment, and reloads only what moved.
// A replica applies its own writes to its snapshot at once.
package agentapi

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/alert"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// Store is what the agent API reads and writes; *store.Store implements it.
// Every method is one transaction.
type Store interface {
	AgentChanges(ctx context.Context) (revision, seq int64, err error)
	AssignmentObjects(ctx context.Context) (int64, []store.AssignmentObject, error)
	DeploymentsSince(ctx context.Context, seq int64) ([]state.Deployment, int64, error)
	RecordIssuance(ctx context.Context, in store.Issuance) (state.Deployment, error)
	RecordIssueFailure(ctx context.Context, f store.IssueFailure) (state.Deployment, error)
	RecordReport(ctx context.Context, r store.DeploymentReport) (state.Deployment, error)
	RecordAgentsSeen(ctx context.Context, seen []store.AgentSeen) error
	AgentsSeen(ctx context.Context, names []string) (map[string]store.AgentSeen, error)

	// ACME orders and http-01 challenges (see acme.go).
	ClaimACMEOrder(ctx context.Context, o store.ACMEOrder) (bool, error)
	ReleaseACMEOrder(ctx context.Context, certificate, agent, holder string) error
	PutACMEChallenge(ctx context.Context, ch store.ACMEChallenge, now time.Time) error
	DeleteACMEChallenge(ctx context.Context, token string) error
	ACMEChallenges(ctx context.Context, now time.Time) ([]store.ACMEChallenge, error)
	ConfirmACMEChallenge(ctx context.Context, token, agent string, at time.Time) (bool, error)
	ACMEChallengeReady(ctx context.Context, token string) ([]string, error)
	ExtendIssueBackoff(ctx context.Context, certificate, agent string, notBefore time.Time) (state.Deployment, error)
}

// Signers finds the signer of an issuer by name; *issuer.Registry
// implements it.
type Signers interface {
	Signer(name string) (issuer.Signer, error)
}

// IssuerSync is told the Issuer objects of every revision the snapshot
// loads; *issuer.Registry implements it.
type IssuerSync interface {
	Sync(issuers []*spec.Object)
}

// Deps are the server's collaborators.
type Deps struct {
	Store   Store
	Signers Signers
	// Issuers, when set, is synced with the Issuer objects whenever a new
	// revision is loaded, so every replica's signers follow Git.
	Issuers IssuerSync
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Events, when set, is told about failed issuances and deployments.
	Events EventSink
}

// EventSink receives one-off events worth notifying someone about.
type EventSink interface {
	Event(ctx context.Context, a alert.Alert) error
}

// Config tunes the server; zero fields take the defaults below.
type Config struct {
	// RefreshInterval is how often Run checks Postgres for changes (1s).
	RefreshInterval time.Duration
	// FlushInterval is how often last-seen, version and hostname of the
	// agents this replica heard from are written, in one batch (5s).
	FlushInterval time.Duration
	// BackoffBase and BackoffCap bound the wait after a failed or refused
	// issue: min(BackoffCap, BackoffBase·2^(failures−1)) (1m and 6h).
	BackoffBase, BackoffCap time.Duration
	// OfflineAfter is how long an agent may be silent and still count as
	// online (5m).
	OfflineAfter time.Duration
	// RenewalJitter is the largest fraction of renewBefore by which renewal
	// is moved earlier, per (certificate, agent) (0.1).
	RenewalJitter float64
	// OrderTimeout bounds an ACME order, challenges included (10m).
	OrderTimeout time.Duration
	// ChallengeTimeout is how long an http-01 challenge waits for the
	// deploying agents to confirm the file is in place (2m: agents poll
	// every 30s by default, faster while an order of theirs is pending).
	ChallengeTimeout time.Duration
	// ChallengePoll is how often those confirmations are checked (250ms).
	ChallengePoll time.Duration
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RefreshInterval, time.Second)
	def(&c.FlushInterval, 5*time.Second)
	def(&c.BackoffBase, time.Minute)
	def(&c.BackoffCap, 6*time.Hour)
	def(&c.OfflineAfter, 5*time.Minute)
	def(&c.OrderTimeout, 10*time.Minute)
	def(&c.ChallengeTimeout, 2*time.Minute)
	def(&c.ChallengePoll, 250*time.Millisecond)
	if c.RenewalJitter <= 0 || c.RenewalJitter >= 1 {
		c.RenewalJitter = 0.1
	}
	return c
}

// Server serves the agent protocol under agentproto.PathPrefix.
type Server struct {
	store   Store
	events  EventSink
	signers Signers
	issuers IssuerSync
	now     func() time.Time
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	mux     *http.ServeMux

	// objs is the applied desired state as agents see it; nil until the
	// first load. It is replaced whole, never modified.
	objs atomic.Pointer[objects]

	mu sync.RWMutex
	// deps holds every deployment row, keyed by certificate and agent.
	deps map[depKey]*state.Deployment
	// seq is the agent change counter deps is loaded up to.
	seq int64
	// etags caches each agent's current ETag; gen counts invalidations, so
	// an ETag computed before one is not cached after it.
	etags map[string]string
	gen   uint64

	presence *presence
	chains   interner

	// challenges are the published http-01 challenges by agent (under mu).
	challenges map[string][]agentproto.Challenge

	// ACME orders run in the background with bg, cancelled when Run ends;
	// events are announced in the background too, at most maxAnnouncing at
	// a time. background counts both; once stopped (under ordersMu) neither
	// starts any more.
	bg         context.Context
	stopBG     context.CancelFunc
	holder     string // this replica, as the holder of its order claims
	background sync.WaitGroup
	ordersMu   sync.Mutex
	stopped    bool
	running    map[depKey]struct{} // orders this replica runs
	announcing chan struct{}       // semaphore of the announcements in flight
}

// maxAnnouncing bounds the announcements in flight: a flood of failure
// reports must not pile up goroutines behind a slow notification store.
const maxAnnouncing = 64

type depKey struct{ cert, agent string }

// NewHandler returns the agent API server. It answers 503 until Run has
// loaded the first snapshot. A nil metrics records into a private registry.
func NewHandler(deps Deps, cfg Config, logger *slog.Logger, metrics *Metrics) *Server {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = NewMetrics(nil, false)
	}
	s := &Server{
		store: deps.Store, events: deps.Events, signers: deps.Signers, issuers: deps.Issuers, now: deps.Now, cfg: cfg.withDefaults(), log: logger,
		metrics: metrics, deps: map[depKey]*state.Deployment{}, etags: map[string]string{},
		presence: newPresence(), chains: interner{m: map[string]string{}},
		challenges: map[string][]agentproto.Challenge{}, holder: newHolderID(), running: map[depKey]struct{}{},
		announcing: make(chan struct{}, maxAnnouncing),
	}
	s.bg, s.stopBG = context.WithCancel(context.Background())
	metrics.observe(s)
	s.mux = http.NewServeMux()
	route := func(method, path string, h func(http.ResponseWriter, *http.Request, string)) {
		s.mux.HandleFunc(method+" "+path, s.authenticated(h))
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", method)
			failure.WriteHTTP(w, failure.New(failure.MethodNotAllowed, r.Method+" is not allowed here; use "+method))
		})
	}
	route(http.MethodGet, agentproto.PathAssignments, s.assignments)
	route(http.MethodPost, agentproto.PathHeartbeat, s.heartbeat)
	route(http.MethodPost, agentproto.PathIssue, s.issue)
	route(http.MethodPost, agentproto.PathReports, s.report)
	route(http.MethodPost, agentproto.PathChallengeReady, s.challengeReady)
	s.mux.HandleFunc(agentproto.PathPrefix, func(w http.ResponseWriter, r *http.Request) {
		failure.WriteHTTP(w, failure.New(failure.NotFound, "no such endpoint"))
	})
	return s
}

// Ready returns an error until the first snapshot is loaded (for /readyz).
func (s *Server) Ready() error {
	if s.objs.Load() == nil {
		return errors.New("agent API: desired state not loaded yet")
	}
	return nil
}

// ServeHTTP serves the agent routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// authenticated resolves the bearer token to an agent name and calls h with
// it. Missing, unknown and revoked tokens get the same bare 401.
func (s *Server) authenticated(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		objs := s.objs.Load()
		if objs == nil {
			failure.WriteHTTP(w, failure.WithRetryAfter(
				failure.New(failure.Unavailable, "starting: desired state not loaded yet"), time.Second))
			return
		}
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		agent := ""
		if ok && strings.EqualFold(scheme, "Bearer") && token != "" {
			agent = objs.tokens[sha256.Sum256([]byte(token))]
		}
		if agent == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="certops-agent"`)
			failure.WriteHTTP(w, failure.New(failure.Unauthorized, "unauthorized"))
			return
		}
		s.presence.seen(agent, s.now())
		h(w, r, agent)
	}
}

// assignments serves GET assignments: 304 when If-None-Match holds the
// agent's current ETag, answered from memory.
func (s *Server) assignments(w http.ResponseWriter, r *http.Request, agent string) {
	s.mu.RLock()
	etag, gen := s.etags[agent], s.gen
	s.mu.RUnlock()
	inm := r.Header.Get("If-None-Match")
	if etag != "" && etagMatches(inm, etag) {
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.mu.RLock()
	a := s.assignmentsLocked(s.objs.Load(), agent)
	s.mu.RUnlock()
	body, err := json.Marshal(a)
	if err != nil {
		s.log.Error("encode assignments", "agent", agent, "err", err)
		failure.WriteHTTP(w, failure.Wrap(failure.Internal, err))
		return
	}
	sum := sha256.Sum256(body)
	etag = fmt.Sprintf(`"%x"`, sum[:16])
	s.mu.Lock()
	if s.gen == gen {
		s.etags[agent] = etag
	}
	s.mu.Unlock()
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if etagMatches(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// etagMatches reports whether an If-None-Match header lists etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// Limits of the free-text fields agents send.
const (
	maxHeartbeatField = 256
	maxReportError    = 4096
)

// heartbeat serves POST heartbeat: recorded in memory, flushed in batches.
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, agent string) {
	var hb agentproto.Heartbeat
	if !decode(w, r, &hb) {
		return
	}
	if len(hb.Version) > maxHeartbeatField || len(hb.Hostname) > maxHeartbeatField {
		failure.WriteHTTP(w, failure.New(failure.Invalid, fmt.Sprintf("version and hostname are limited to %d bytes", maxHeartbeatField)))
		return
	}
	s.presence.heartbeat(agent, s.now(), hb.Version, hb.Hostname)
	w.WriteHeader(http.StatusNoContent)
}

// report serves POST reports: the outcome of a deployment attempt.
func (s *Server) report(w http.ResponseWriter, r *http.Request, agent string) {
	var rep agentproto.Report
	if !decode(w, r, &rep) {
		return
	}
	switch {
	case rep.Certificate == "":
		failure.WriteHTTP(w, failure.New(failure.Invalid, "certificate is required"))
		return
	case rep.Result != agentproto.ResultInstalled && rep.Result != agentproto.ResultFailed && rep.Result != agentproto.ResultRolledBack:
		failure.WriteHTTP(w, failure.New(failure.Invalid, fmt.Sprintf("result must be %q, %q or %q",
			agentproto.ResultInstalled, agentproto.ResultFailed, agentproto.ResultRolledBack)))
		return
	case rep.Result == agentproto.ResultInstalled && rep.Serial == "":
		failure.WriteHTTP(w, failure.New(failure.Invalid, "an installed report needs the serial"))
		return
	}
	if _, ok := s.objs.Load().assigned(rep.Certificate, agent); !ok {
		failure.WriteHTTP(w, failure.New(failure.NotFound, "certificate "+strconv.Quote(rep.Certificate)+" is not assigned to this agent"))
		return
	}
	now := s.now()
	at := rep.At
	if at.IsZero() || at.After(now) {
		at = now
	}
	msg := rep.Error
	if len(msg) > maxReportError {
		msg = msg[:maxReportError]
	}
	if rep.Stage != "" {
		msg = strings.TrimSpace(rep.Stage + ": " + msg)
	}
	if rep.Result == agentproto.ResultInstalled {
		msg = ""
	}
	d, err := s.store.RecordReport(r.Context(), store.DeploymentReport{
		Certificate: rep.Certificate, Agent: agent, SpecHash: rep.SpecHash, Serial: rep.Serial,
		Result: state.DeploymentState(rep.Result), Error: msg, At: at,
	})
	if err != nil {
		s.unavailable(w, "record report", err)
		return
	}
	s.applyDeployments([]state.Deployment{d})
	s.metrics.report(rep)
	if rep.Result != agentproto.ResultInstalled {
		s.announce(alert.Alert{Name: alert.DeployFailed, Severity: alert.Warning,
			Subject:     rep.Certificate + "@" + agent,
			Summary:     fmt.Sprintf("Deployment of %s on %s %s", rep.Certificate, agent, rep.Result),
			Description: msg, Labels: map[string]string{"certificate": rep.Certificate, "agent": agent}, Since: at})
	}
	w.WriteHeader(http.StatusNoContent)
}

// announce hands an event to the EventSink in the background: notifying
// must never slow an agent's request down. With maxAnnouncing already in
// flight, or after Run ended, the event is dropped and logged.
func (s *Server) announce(a alert.Alert) {
	if s.events == nil {
		return
	}
	s.ordersMu.Lock()
	defer s.ordersMu.Unlock()
	if s.stopped {
		s.log.Warn("agent API: shutting down; event not notified", "event", a.Name, "subject", a.Subject)
		return
	}
	select {
	case s.announcing <- struct{}{}:
	default:
		s.log.Warn("agent API: too many notifications in flight; event not notified", "event", a.Name, "subject", a.Subject)
		return
	}
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		defer func() { <-s.announcing }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.events.Event(ctx, a); err != nil {
			s.log.Warn("notify event", "event", a.Name, "subject", a.Subject, "err", err)
		}
	}()
}

// decode reads a JSON body of at most agentproto.MaxBodyBytes into v,
// answering 413 or 400 itself when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, agentproto.MaxBodyBytes))
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		failure.WriteHTTP(w, failure.New(failure.TooLarge, fmt.Sprintf("request body exceeds %d bytes", agentproto.MaxBodyBytes)))
		return false
	case err != nil:
		failure.WriteHTTP(w, failure.New(failure.Invalid, "malformed JSON request: "+err.Error()))
		return false
	}
	return true
}

// unavailable logs a storage failure and asks the agent to retry.
func (s *Server) unavailable(w http.ResponseWriter, what string, err error) {
	s.log.Error("agent API: "+what, "err", err)
	failure.WriteHTTP(w, failure.WithRetryAfter(
		failure.New(failure.Unavailable, "temporarily unavailable; retry later"), 5*time.Second))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
