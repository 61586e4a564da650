package agentapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/bearer"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/textlimit"
)

// Parts are the services the Handler answers from.
type Parts struct {
	Snapshot *Snapshot // bearer tokens, assignments and their ETags
	Presence *Presence // liveness of every request, heartbeats
	Issuance *Issuance // issue requests
	Ledger   *Ledger   // reports and served checks
	Orders   *Orders   // http-01 challenge confirmations
}

// Handler serves the agent protocol under agentproto.PathPrefix: it routes,
// authenticates the bearer token, decodes bodies and turns the parts'
// results and failure errors into responses. It answers 503 until the
// snapshot is loaded.
type Handler struct {
	parts Parts
	log   *slog.Logger
	mux   *http.ServeMux
}

// NewHandler returns the agent API's HTTP handler.
func NewHandler(parts Parts, logger *slog.Logger) *Handler {
	h := &Handler{parts: parts, log: orDiscard(logger), mux: http.NewServeMux()}
	route := func(method, path string, serve func(http.ResponseWriter, *http.Request, string)) {
		h.mux.HandleFunc(method+" "+path, h.authenticated(serve))
		h.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", method)
			failure.WriteHTTP(w, failure.New(failure.MethodNotAllowed, r.Method+" is not allowed here; use "+method))
		})
	}
	route(http.MethodGet, agentproto.PathAssignments, h.assignments)
	route(http.MethodPost, agentproto.PathHeartbeat, h.heartbeat)
	route(http.MethodPost, agentproto.PathIssue, h.issue)
	route(http.MethodPost, agentproto.PathReports, h.report)
	route(http.MethodPost, agentproto.PathServed, h.served)
	route(http.MethodPost, agentproto.PathChallengeReady, h.challengeReady)
	h.mux.HandleFunc(agentproto.PathPrefix, func(w http.ResponseWriter, r *http.Request) {
		failure.WriteHTTP(w, failure.New(failure.NotFound, "no such endpoint"))
	})
	return h
}

// ServeHTTP serves the agent routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// authenticated resolves the bearer token to an agent name and calls serve
// with it. Missing, unknown and revoked tokens get the same bare 401.
func (h *Handler) authenticated(serve func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, _ := bearer.Token(r) // "" when missing: a bare 401
		agent, err := h.parts.Snapshot.Authenticate(token)
		if err != nil {
			if failure.KindOf(err) == failure.Unauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="certops-agent"`)
			}
			failure.WriteHTTP(w, err)
			return
		}
		h.parts.Presence.Seen(agent)
		if err := textlimit.Check(r.URL.Path, agentproto.MaxPathBytes, false); err != nil {
			failure.WriteHTTP(w, failure.New(failure.Invalid, "the request path "+err.Error()))
			return
		}
		serve(w, r, agent)
	}
}

// assignments serves GET assignments: 304 when If-None-Match holds the
// agent's current ETag, answered from memory.
func (h *Handler) assignments(w http.ResponseWriter, r *http.Request, agent string) {
	inm := r.Header.Get("If-None-Match")
	if etag := h.parts.Snapshot.ETag(agent); etag != "" && etagMatches(inm, etag) {
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body, etag, err := h.parts.Snapshot.Assignments(agent)
	if err != nil {
		h.log.Error("encode assignments", "agent", agent, "err", err)
		failure.WriteHTTP(w, failure.Wrap(failure.Internal, err))
		return
	}
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

// heartbeat serves POST heartbeat: recorded in memory, flushed in batches.
func (h *Handler) heartbeat(w http.ResponseWriter, r *http.Request, agent string) {
	var hb agentproto.Heartbeat
	if !decode(w, r, &hb) {
		return
	}
	if err := h.parts.Presence.Heartbeat(agent, hb); err != nil {
		failure.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// issue serves POST certificates/{name}/issue: 200 with the certificate,
// or 202 while an ACME order runs.
func (h *Handler) issue(w http.ResponseWriter, r *http.Request, agent string) {
	var req agentproto.IssueRequest
	if !decode(w, r, &req) {
		return
	}
	issued, err := h.parts.Issuance.Issue(r.Context(), agent, r.PathValue("name"), req)
	switch {
	case err != nil:
		failure.WriteHTTP(w, err)
	case issued == nil:
		w.Header().Set("Retry-After", pendingRetry)
		writeJSON(w, http.StatusAccepted, agentproto.IssuePending{Status: "pending",
			Message: "the ACME order is in progress; the certificate appears in the assignments when it completes"})
	default:
		writeJSON(w, http.StatusOK, issued)
	}
}

// report serves POST reports: the outcome of a deployment attempt.
func (h *Handler) report(w http.ResponseWriter, r *http.Request, agent string) {
	var rep agentproto.Report
	if !decode(w, r, &rep) {
		return
	}
	if err := h.parts.Ledger.Report(r.Context(), agent, rep); err != nil {
		failure.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// served serves POST served: the results of the agent's served checks.
func (h *Handler) served(w http.ResponseWriter, r *http.Request, agent string) {
	var rep agentproto.ServedReport
	if !decode(w, r, &rep) {
		return
	}
	if err := h.parts.Ledger.Served(r.Context(), agent, rep); err != nil {
		failure.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// challengeReady serves POST challenges/{token}/ready.
func (h *Handler) challengeReady(w http.ResponseWriter, r *http.Request, agent string) {
	if err := h.parts.Orders.ConfirmChallenge(r.Context(), agent, r.PathValue("token")); err != nil {
		failure.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decode reads a JSON body of at most agentproto.MaxBodyBytes into v and
// checks its strings (see checkText), answering 413 or 400 itself when it
// cannot.
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
	if err := checkText(reflect.ValueOf(v), ""); err != nil {
		failure.WriteHTTP(w, err)
		return false
	}
	return true
}

// checkText refuses (Invalid) a decoded message holding a string that
// breaks the rules of agentproto (valid UTF-8, no control characters,
// bounded; see agentproto.MaxFieldBytes): every string field, however
// deeply nested, so that a field added to a message is checked too. path
// is the JSON path of v, for the message.
func checkText(v reflect.Value, path string) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return checkText(v.Elem(), path)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
			if path != "" {
				name = path + "." + name
			}
			fv := v.Field(i)
			if fv.Kind() == reflect.String {
				max, multiline := agentproto.MaxFieldBytes, false
				switch f.Tag.Get("text") {
				case "multiline":
					max, multiline = agentproto.MaxTextBytes, true
				case "pem":
					max, multiline = agentproto.MaxBodyBytes, true
				}
				if err := textlimit.Check(fv.String(), max, multiline); err != nil {
					return failure.New(failure.Invalid, name+" "+err.Error())
				}
				continue
			}
			if err := checkText(fv, name); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := checkText(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.String:
		if err := textlimit.Check(v.String(), agentproto.MaxFieldBytes, false); err != nil {
			return failure.New(failure.Invalid, path+" "+err.Error())
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
