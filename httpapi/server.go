// Package httpapi is the reconciler's HTTP surface: health and readiness
// probes, the Prometheus scrape, the read-only status API under /api/v1/,
// and the webhook receivers mounted under /hooks/. Every replica serves it
// from Postgres, whether or not it holds the reconcile lease.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/bearer"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/textlimit"
)

// Reader is what the API reads; *store.Store implements it.
type Reader interface {
	Ping(ctx context.Context) error
	Status(ctx context.Context) (state.Status, error)
	ListObjects(ctx context.Context, q store.ObjectQuery) ([]store.StoredObject, string, error)
	GetObject(ctx context.Context, kind spec.Kind, name string) (store.StoredObject, error)
	ListRevisions(ctx context.Context, limit int, before int64) ([]state.RevisionRecord, error)
	StatusReader
}

// Config configures the API.
type Config struct {
	// BearerToken, when set, is required on /api/ and /metrics.
	BearerToken string
	// Hooks serves /hooks/ (webhook receivers); nil disables them.
	Hooks http.Handler
	// Gatherer is scraped at /metrics.
	Gatherer prometheus.Gatherer
	// Ready, when set, must return nil besides the database answering for
	// /readyz to report ready (e.g. schema migrated, source opened).
	Ready func() error
	// Alerts, when set, returns the alerts certops' own evaluation finds
	// firing now; /api/v1/status shows them.
	Alerts func() []alert.Alert
	// AgentOfflineAfter is how long an agent may be silent and still be
	// shown online; DefaultAgentOfflineAfter when zero.
	AgentOfflineAfter time.Duration
	// Issuers, when set, tells whether a certificate's issuer can sign its
	// names (a local CA's name constraints), so the status says so before
	// any agent asks.
	Issuers NameChecker
}

// NameChecker tells whether an issuer may sign a certificate's names:
// nil when it may or cannot tell, else why not. *issuer.Registry
// implements it.
type NameChecker interface {
	CheckNames(issuer string, c *spec.CertificateSpec) error
}

// Pagination limits of list endpoints.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// NewHandler returns the HTTP handler of the reconciler.
func NewHandler(r Reader, cfg Config, logger *slog.Logger) http.Handler {
	a := &api{r: r, log: logger, readyFn: cfg.Ready, alerts: cfg.Alerts, offlineAfter: cfg.AgentOfflineAfter, issuers: cfg.Issuers}
	if a.offlineAfter <= 0 {
		a.offlineAfter = DefaultAgentOfflineAfter
	}
	mux := http.NewServeMux()
	get := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc("GET "+pattern, h)
		mux.HandleFunc(pattern, methodNotAllowed) // every other method
	}
	get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	get("/readyz", a.ready)
	metrics := promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)})
	get("/metrics", authorize(cfg.BearerToken, metrics.ServeHTTP))
	get("/api/v1/status", authorize(cfg.BearerToken, a.status))
	get("/api/v1/certificates", authorize(cfg.BearerToken, a.list(spec.KindCertificate)))
	get("/api/v1/certificates/{name}", authorize(cfg.BearerToken, a.get(spec.KindCertificate)))
	get("/api/v1/agents", authorize(cfg.BearerToken, a.list(spec.KindAgent)))
	get("/api/v1/agents/{name}", authorize(cfg.BearerToken, a.get(spec.KindAgent)))
	get("/api/v1/revisions", authorize(cfg.BearerToken, a.revisions))
	if cfg.Hooks != nil {
		mux.Handle("/hooks/", cfg.Hooks)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		failure.WriteHTTP(w, failure.New(failure.NotFound, "no such endpoint: "+strconv.Quote(r.URL.Path)))
	})
	return checkRequestText(mux)
}

// Limits of what a request may carry in its path and query.
const (
	maxPathBytes  = 1024
	maxQueryBytes = 4096 // the raw query, all parameters
)

// checkRequestText answers 400 (invalid) to a request whose path or query
// — any name, value or parameter, on any route — is not valid UTF-8, holds
// a control character or is too long, before anything reads it (Postgres
// refuses such text, and the answer would be a misleading 503).
func checkRequestText(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := textlimit.Check(r.URL.Path, maxPathBytes, false); err != nil {
			failure.WriteHTTP(w, failure.New(failure.Invalid, "the request path "+err.Error()))
			return
		}
		if len(r.URL.RawQuery) > maxQueryBytes {
			failure.WriteHTTP(w, failure.New(failure.Invalid, "the query is over "+strconv.Itoa(maxQueryBytes)+" bytes"))
			return
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			failure.WriteHTTP(w, failure.New(failure.Invalid, "malformed query: "+err.Error()))
			return
		}
		for k, vs := range q {
			if err := textlimit.Check(k, maxQueryBytes, false); err != nil {
				failure.WriteHTTP(w, failure.New(failure.Invalid, "a query parameter name "+err.Error()))
				return
			}
			for _, v := range vs {
				if err := textlimit.Check(v, maxQueryBytes, false); err != nil {
					failure.WriteHTTP(w, failure.New(failure.Invalid, "query parameter "+strconv.Quote(k)+" "+err.Error()))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

type api struct {
	r            Reader
	log          *slog.Logger
	readyFn      func() error
	alerts       func() []alert.Alert
	offlineAfter time.Duration
	issuers      NameChecker // nil: names are not checked
}

func (a *api) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.r.Ping(ctx); err != nil {
		failure.WriteHTTP(w, failure.Wrap(failure.Unavailable, errors.New("database unreachable")))
		return
	}
	if a.readyFn != nil {
		if err := a.readyFn(); err != nil {
			failure.WriteHTTP(w, failure.Wrap(failure.Unavailable, err))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// statusResponse is the body of GET /api/v1/status.
type statusResponse struct {
	LastAppliedRevision   string            `json:"lastAppliedRevision"`
	LastAppliedAt         *time.Time        `json:"lastAppliedAt,omitempty"`
	LastAttemptedRevision string            `json:"lastAttemptedRevision"`
	LastAttemptedAt       *time.Time        `json:"lastAttemptedAt,omitempty"`
	LastFetchAt           *time.Time        `json:"lastFetchAt,omitempty"`
	Conditions            []state.Condition `json:"conditions"`
	Errors                []string          `json:"errors"`
	Alerts                []alert.Alert     `json:"alerts"`
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	st, err := a.r.Status(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	resp := statusResponse{
		LastAppliedRevision: st.LastAppliedRevision, LastAppliedAt: st.LastAppliedAt,
		LastAttemptedRevision: st.LastAttemptedRevision, LastAttemptedAt: st.LastAttemptedAt,
		LastFetchAt: st.LastFetchAt, Conditions: st.Conditions, Errors: make([]string, len(st.Errors)),
		Alerts: []alert.Alert{},
	}
	if a.alerts != nil {
		resp.Alerts = append(resp.Alerts, a.alerts()...)
	}
	if resp.Conditions == nil {
		resp.Conditions = unknownConditions()
	}
	for i, e := range st.Errors {
		resp.Errors[i] = e.Error()
	}
	writeJSON(w, http.StatusOK, resp)
}

// unknownConditions is the status before the first reconcile.
func unknownConditions() []state.Condition {
	var out []state.Condition
	for _, t := range []state.ConditionType{state.ConditionReady, state.ConditionReconciling, state.ConditionStalled} {
		out = append(out, state.Condition{Type: t, Status: state.Unknown, Reason: "NotReconciled", Message: "no revision attempted yet"})
	}
	return out
}

// list serves a paginated, filterable list: ?limit=N&after=NAME&prefix=P&label=k=v (repeatable).
func (a *api) list(kind spec.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit, err := parseLimit(q.Get("limit"))
		if err != nil {
			failure.WriteHTTP(w, err)
			return
		}
		labels := map[string]string{}
		for _, l := range q["label"] {
			k, v, ok := strings.Cut(l, "=")
			if !ok || k == "" {
				failure.WriteHTTP(w, failure.New(failure.Invalid, "label filter must be key=value, got "+strconv.Quote(l)))
				return
			}
			labels[k] = v
		}
		objs, next, err := a.r.ListObjects(r.Context(), store.ObjectQuery{
			Kind: kind, Labels: labels, NamePrefix: q.Get("prefix"), After: q.Get("after"), Limit: limit})
		if err != nil {
			a.fail(w, err)
			return
		}
		items, err := a.listWithStatus(r.Context(), kind, objs)
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": items, "next": next})
	}
}

func (a *api) get(kind spec.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		o, err := a.r.GetObject(r.Context(), kind, name)
		if errors.Is(err, store.ErrNotFound) {
			failure.WriteHTTP(w, failure.New(failure.NotFound, strings.ToLower(string(kind))+" "+strconv.Quote(name)+" not found"))
			return
		}
		if err != nil {
			a.fail(w, err)
			return
		}
		withStatus, err := a.withStatus(r.Context(), o)
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, withStatus)
	}
}

// revisions serves the revision history, newest first: ?limit=N&before=ID.
func (a *api) revisions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		failure.WriteHTTP(w, err)
		return
	}
	var before int64
	if s := q.Get("before"); s != "" {
		if before, err = strconv.ParseInt(s, 10, 64); err != nil || before <= 0 {
			failure.WriteHTTP(w, failure.New(failure.Invalid, "before must be a positive revision id"))
			return
		}
	}
	revs, err := a.r.ListRevisions(r.Context(), limit, before)
	if err != nil {
		a.fail(w, err)
		return
	}
	if revs == nil {
		revs = []state.RevisionRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": revs})
}

func parseLimit(s string) (int, error) {
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, failure.New(failure.Invalid, "limit must be an integer from 1 to "+strconv.Itoa(MaxLimit))
	}
	return n, nil
}

// fail logs an unexpected error and answers without leaking its details.
// While the replica is not ready yet (the schema still being migrated at
// boot), a failed read is expected: it answers 503 "starting", unlogged.
func (a *api) fail(w http.ResponseWriter, err error) {
	if failure.KindOf(err) == failure.Internal && a.readyFn != nil {
		if notReady := a.readyFn(); notReady != nil {
			failure.WriteHTTP(w, failure.WithRetryAfter(failure.Wrap(failure.Unavailable, fmt.Errorf("starting: %w", notReady)), time.Second))
			return
		}
	}
	if failure.KindOf(err) == failure.Internal {
		a.log.Error("api request failed", "err", err)
		err = failure.Wrap(failure.Unavailable, errors.New("status temporarily unavailable"))
	}
	failure.WriteHTTP(w, err)
}

func authorize(token string, next http.HandlerFunc) http.HandlerFunc {
	if token == "" {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer.Token(r)
		if !bearer.Equal(got, token) || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="certops"`)
			failure.WriteHTTP(w, failure.New(failure.Unauthorized, "missing or invalid bearer token"))
			return
		}
		next(w, r)
	}
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	failure.WriteHTTP(w, failure.New(failure.MethodNotAllowed, r.Method+" is not allowed; this API is read-only"))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
