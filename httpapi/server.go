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

	"github.com/certops/certops/alert"
	"github.com/certops/certops/apiv1"
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
	OverviewReader
}

// Config configures the API.
type Config struct {
	// BearerToken, when set, is required on /api/ and /metrics.
	BearerToken string
	// Hooks serves /hooks/ (webhook receivers); nil disables them.
	Hooks http.Handler
	// Gatherer is scraped at /metrics.
	Gatherer prometheus.Gatherer
	// MetricsText, when set, writes more families in the text format,
	// served on /metrics after the Gatherer's.
	MetricsText MetricsText
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
	// UI, when set, serves the dashboard under /ui/ (it does its own
	// authentication), and GET / redirects there.
	UI http.Handler
}

// NameChecker tells whether an issuer may sign a certificate's names:
// nil when it may or cannot tell, else why not. *issuer.Registry
// implements it.
type NameChecker interface {
	CheckNames(issuer string, c *spec.CertificateSpec) error
}

// NewHandler returns the HTTP handler of the reconciler.
func NewHandler(r Reader, cfg Config, logger *slog.Logger) http.Handler {
	a := &api{svc: NewService(r, cfg), r: r, log: logger, readyFn: cfg.Ready}
	mux := http.NewServeMux()
	get := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc("GET "+pattern, h)
		mux.HandleFunc(pattern, methodNotAllowed) // every other method
	}
	get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	get("/readyz", a.ready)
	metrics := metricsHandler(cfg.Gatherer, cfg.MetricsText, slog.NewLogLogger(logger.Handler(), slog.LevelWarn))
	get("/metrics", authorize(cfg.BearerToken, metrics))
	get("/api/v1/status", authorize(cfg.BearerToken, a.status))
	get("/api/v1/certificates", authorize(cfg.BearerToken, list(a, a.svc.Certificates)))
	get("/api/v1/certificates/{name}", authorize(cfg.BearerToken, one(a, a.svc.Certificate)))
	get("/api/v1/agents", authorize(cfg.BearerToken, list(a, a.svc.Agents)))
	get("/api/v1/agents/{name}", authorize(cfg.BearerToken, one(a, a.svc.Agent)))
	get("/api/v1/revisions", authorize(cfg.BearerToken, a.revisions))
	get("/api/v1/openapi.json", authorize(cfg.BearerToken, openAPIDocument))
	if cfg.Hooks != nil {
		mux.Handle("/hooks/", cfg.Hooks)
	}
	if cfg.UI != nil {
		mux.Handle("/ui/", cfg.UI)
		get("/{$}", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/ui/", http.StatusFound)
		})
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
	svc     *Service
	r       Reader
	log     *slog.Logger
	readyFn func() error
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

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	st, err := a.svc.Status(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// list serves a paginated, filterable list: ?limit=N&after=NAME&prefix=P&label=k=v (repeatable).
func list[T any](a *api, page func(context.Context, apiv1.ListQuery) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseListQuery(r.URL.Query())
		if err != nil {
			failure.WriteHTTP(w, err)
			return
		}
		out, err := page(r.Context(), q)
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// ParseListQuery reads a list's query parameters: limit, after, prefix and
// label=key=value (repeatable). Errors are Invalid.
func ParseListQuery(q url.Values) (apiv1.ListQuery, error) {
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		return apiv1.ListQuery{}, err
	}
	labels := map[string]string{}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return apiv1.ListQuery{}, failure.New(failure.Invalid, "label filter must be key=value, got "+strconv.Quote(l))
		}
		labels[k] = v
	}
	return apiv1.ListQuery{Limit: limit, After: q.Get("after"), Prefix: q.Get("prefix"), Labels: labels}, nil
}

// one serves one object by the {name} in the path.
func one[T any](a *api, get func(context.Context, string) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := get(r.Context(), r.PathValue("name"))
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
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
	revs, err := a.svc.Revisions(r.Context(), limit, before)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, revs)
}

func parseLimit(s string) (int, error) {
	if s == "" {
		return apiv1.DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > apiv1.MaxLimit {
		return 0, failure.New(failure.Invalid, "limit must be an integer from 1 to "+strconv.Itoa(apiv1.MaxLimit))
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

// openAPIDocument serves the OpenAPI document of the routes above.
func openAPIDocument(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(apiv1.OpenAPIDocument())
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
