package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/httpapi"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/store"
)

// NUL, invalid UTF-8, control characters or overlong text in any path or
// query parameter, on any route, is a 400 invalid, not a 503 with an ERROR
// in the log.
func TestBadBytesInPathAndQuery(t *testing.T) {
	st, err := store.Open(context.Background(), pgtest.DB(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	var logs bytes.Buffer
	hooks := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := httpapi.NewHandler(st, httpapi.Config{Gatherer: prometheus.NewRegistry(), Hooks: hooks},
		slog.New(slog.NewTextHandler(&logs, nil)))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	var paths []string
	for _, bad := range []string{"%00", "%FF", "%C3%28", "%1B", "%0A", strings.Repeat("a", 5000)} {
		for _, route := range []string{"/api/v1/certificates/", "/api/v1/agents/", "/hooks/"} {
			paths = append(paths, route+"x"+bad)
		}
		for _, q := range []string{"after=", "prefix=", "label=team%3D", "label=", "limit=", "before=", "x", "label=k%3Dv&after="} {
			for _, route := range []string{"/api/v1/certificates", "/api/v1/agents", "/api/v1/revisions", "/api/v1/status", "/metrics"} {
				paths = append(paths, route+"?"+q+bad)
			}
		}
	}
	paths = append(paths, "/api/v1/certificates?after=%zz", "/api/v1/certificates?a;b")
	for _, p := range paths {
		var body errorBody
		code, _ := do(t, "GET", srv.URL+p, "", &body)
		if code != http.StatusBadRequest || body.Error.Code != "invalid" {
			t.Errorf("GET %.80s: got %d %+v, want 400 invalid", p, code, body)
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("bad requests logged errors:\n%s", logs.String())
	}
	// Clean requests still work.
	if code, _ := do(t, "GET", srv.URL+"/api/v1/certificates?prefix=caf%C3%A9&label=team%3Da", "", &list{}); code != 200 {
		t.Errorf("clean list: %d", code)
	}
}

// Before the schema is migrated (serve at boot), the read API answers 503
// "starting" with Retry-After, and logs no ERROR for it.
func TestNotReadyAnswersStarting(t *testing.T) {
	st, err := store.Open(context.Background(), pgtest.EmptyDB(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	var logs bytes.Buffer
	h := httpapi.NewHandler(st, httpapi.Config{Gatherer: prometheus.NewRegistry(),
		Ready: func() error { return errors.New("schema not migrated yet") }},
		slog.New(slog.NewTextHandler(&logs, nil)))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for _, path := range []string{"/api/v1/status", "/api/v1/certificates", "/api/v1/agents/web-01", "/api/v1/revisions"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "starting: schema not migrated yet") {
			t.Errorf("GET %s: %d %s (Retry-After %q), want 503 starting with Retry-After", path, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("logged:\n%s", logs.String())
	}
}
