package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/httpapi"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit/storekit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newServer serves the API over a real database holding n certificates
// (half labelled team=a, half team=b) and one agent.
func newServer(t *testing.T, token string, n int) (*httptest.Server, *store.Store) {
	t.Helper()
	st := storekit.Open(t)
	objs := []*spec.Object{{Kind: spec.KindAgent, Name: "web-01", Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("a", 64)}}}
	for i := range n {
		team := "a"
		if i%2 == 1 {
			team = "b"
		}
		objs = append(objs, &spec.Object{Kind: spec.KindCertificate, Name: fmt.Sprintf("cert-%02d", i), Labels: map[string]string{"team": team},
			Spec:   &spec.CertificateSpec{IssuerRef: "ca", CommonName: fmt.Sprintf("c%d.example.com", i)},
			Source: spec.Position{File: "certs.yaml", Line: 1 + 10*i}})
	}
	rev := state.Revision{Ref: "main", Commit: strings.Repeat("1", 40), Time: time.Now()}
	status := state.Status{LastAppliedRevision: rev.String(), LastAttemptedRevision: rev.String(),
		Conditions: []state.Condition{{Type: "Ready", Status: "True", Reason: "ReconciliationSucceeded"}}}
	if n > 0 {
		storekit.Apply(t, st, rev, status, storekit.Desired(objs...))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "certops_test_total", Help: "test"}))
	srv := httptest.NewServer(httpapi.NewHandler(st, httpapi.Config{BearerToken: token, Gatherer: reg}, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	return srv, st
}

type errorBody struct {
	Error struct{ Code, Message string }
}

func do(t *testing.T, method, url, token string, v any) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil && method != http.MethodHead {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s %s: %v in %q", method, url, err, body)
		}
	}
	return resp.StatusCode, resp.Header
}

// doAuth GETs url with the Authorization header set to auth verbatim.
func doAuth(t *testing.T, url, auth string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

type list struct {
	Items []store.StoredObject
	Next  string
}

func TestListPaginationAndFilters(t *testing.T) {
	srv, _ := newServer(t, "", 5)
	var names []string
	next := ""
	for page := 0; page < 10; page++ {
		var l list
		if code, _ := do(t, "GET", srv.URL+"/api/v1/certificates?limit=2&after="+next, "", &l); code != 200 {
			t.Fatalf("page %d: status %d", page, code)
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
		if next = l.Next; next == "" {
			break
		}
	}
	if got, want := strings.Join(names, ","), "cert-00,cert-01,cert-02,cert-03,cert-04"; got != want {
		t.Errorf("paged names: got %s, want %s", got, want)
	}
	var l list
	do(t, "GET", srv.URL+"/api/v1/certificates?label=team=b", "", &l)
	if len(l.Items) != 2 || l.Items[0].Name != "cert-01" || l.Items[1].Name != "cert-03" {
		t.Errorf("label filter team=b: got %+v", l.Items)
	}
	do(t, "GET", srv.URL+"/api/v1/certificates?prefix=cert-04", "", &l)
	if len(l.Items) != 1 || l.Items[0].SourceFile != "certs.yaml" || l.Items[0].SourceLine != 41 {
		t.Errorf("prefix filter: got %+v", l.Items)
	}
	do(t, "GET", srv.URL+"/api/v1/agents", "", &l)
	if len(l.Items) != 1 || l.Items[0].Name != "web-01" || l.Items[0].Kind != spec.KindAgent {
		t.Errorf("agents: got %+v", l.Items)
	}
	var one store.StoredObject
	if code, _ := do(t, "GET", srv.URL+"/api/v1/certificates/cert-02", "", &one); code != 200 || one.Name != "cert-02" || !strings.Contains(string(one.Spec), "c2.example.com") {
		t.Errorf("get cert-02: %d %+v", code, one)
	}
}

func TestErrors(t *testing.T) {
	srv, st := newServer(t, "", 1)
	for _, tt := range []struct {
		method, path string
		code         int
		errCode      string
	}{
		{"GET", "/api/v1/certificates/nope", 404, "not_found"},
		{"GET", "/api/v1/agents/nope", 404, "not_found"},
		{"GET", "/api/v1/certificates/web-01", 404, "not_found"}, // an agent is not a certificate
		{"GET", "/api/v1/certificates?limit=0", 400, "invalid"},
		{"GET", "/api/v1/certificates?limit=abc", 400, "invalid"},
		{"GET", "/api/v1/certificates?limit=1001", 400, "invalid"}, // over MaxLimit
		{"GET", "/api/v1/agents?limit=-5", 400, "invalid"},
		{"GET", "/api/v1/certificates?label=novalue", 400, "invalid"},
		{"GET", "/api/v1/certificates?label==v", 400, "invalid"}, // empty key
		{"GET", "/api/v1/revisions?before=-1", 400, "invalid"},
		{"GET", "/api/v1/revisions?before=0", 400, "invalid"},
		{"GET", "/api/v1/revisions?before=abc", 400, "invalid"},
		{"GET", "/api/v1/revisions?limit=abc", 400, "invalid"},
		{"GET", "/api/v1/nothing-here", 404, "not_found"},
		{"POST", "/api/v1/status", 405, "method_not_allowed"},
		{"PUT", "/api/v1/certificates/cert-00", 405, "method_not_allowed"},
		{"DELETE", "/api/v1/agents/web-01", 405, "method_not_allowed"},
		{"PATCH", "/api/v1/revisions", 405, "method_not_allowed"},
		{"POST", "/api/v1/certificates", 405, "method_not_allowed"},
		{"OPTIONS", "/api/v1/agents", 405, "method_not_allowed"},
		{"POST", "/metrics", 405, "method_not_allowed"},
		{"POST", "/healthz", 405, "method_not_allowed"},
		{"PUT", "/readyz", 405, "method_not_allowed"},
	} {
		var body errorBody
		code, hdr := do(t, tt.method, srv.URL+tt.path, "", &body)
		if code != tt.code || body.Error.Code != tt.errCode || body.Error.Message == "" {
			t.Errorf("%s %s: got %d %+v, want %d %s", tt.method, tt.path, code, body, tt.code, tt.errCode)
		}
		if code == 405 && hdr.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", tt.method, tt.path, hdr.Get("Allow"))
		}
	}
	for _, path := range []string{"/api/v1/status", "/api/v1/certificates", "/api/v1/certificates/cert-00", "/healthz", "/metrics"} {
		if code, _ := do(t, "HEAD", srv.URL+path, "", nil); code != 200 {
			t.Errorf("HEAD %s: got %d, want 200", path, code)
		}
	}
	// With the database gone, readiness fails and reads answer 503 without details.
	st.Close()
	var body errorBody
	if code, _ := do(t, "GET", srv.URL+"/readyz", "", &body); code != 503 || body.Error.Code != "unavailable" {
		t.Errorf("readyz without a database: got %d %+v, want 503 unavailable", code, body)
	}
	if code, _ := do(t, "GET", srv.URL+"/api/v1/certificates", "", &body); code != 503 || strings.Contains(body.Error.Message, "closed") {
		t.Errorf("list without a database: got %d %+v, want 503 with no internals", code, body)
	}
	if code, _ := do(t, "GET", srv.URL+"/healthz", "", nil); code != 200 {
		t.Errorf("healthz: got %d, want 200 (liveness does not depend on the database)", code)
	}
}

func TestStatusAndRevisions(t *testing.T) {
	srv, _ := newServer(t, "", 0)
	var st struct {
		LastAppliedRevision string
		Conditions          []state.Condition
	}
	do(t, "GET", srv.URL+"/api/v1/status", "", &st)
	if st.LastAppliedRevision != "" || len(st.Conditions) != 3 || st.Conditions[0].Status != "Unknown" {
		t.Errorf("status before any reconcile: got %+v, want three Unknown conditions", st)
	}
	srv, _ = newServer(t, "", 2)
	do(t, "GET", srv.URL+"/api/v1/status", "", &st)
	if st.LastAppliedRevision != "main@sha1:"+strings.Repeat("1", 40) {
		t.Errorf("lastAppliedRevision: got %q", st.LastAppliedRevision)
	}
	var revs struct{ Items []state.RevisionRecord }
	do(t, "GET", srv.URL+"/api/v1/revisions", "", &revs)
	if len(revs.Items) != 1 || len(revs.Items[0].Actions) != 3 || revs.Items[0].Outcome != "applied" {
		t.Fatalf("revisions: got %+v, want one applied revision with 3 actions", revs.Items)
	}
	if r := revs.Items[0]; r.ActionCount != 3 || r.Counts[spec.KindCertificate].Create != 2 || r.Counts[spec.KindAgent].Create != 1 {
		t.Errorf("revision counts: got %d actions, %+v", r.ActionCount, r.Counts)
	}
}

func TestBearerToken(t *testing.T) {
	srv, _ := newServer(t, "t0ken", 1)
	for _, path := range []string{"/api/v1/status", "/api/v1/certificates", "/api/v1/agents/web-01", "/api/v1/revisions", "/metrics"} {
		var body errorBody
		code, hdr := do(t, "GET", srv.URL+path, "", &body)
		if code != 401 || body.Error.Code != "unauthorized" || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s without token: got %d %+v", path, code, body)
		}
		if code, _ := do(t, "GET", srv.URL+path, "wrong", &body); code != 401 {
			t.Errorf("%s with a wrong token: got %d, want 401", path, code)
		}
		if code := doAuth(t, srv.URL+path, "t0ken"); code != 401 {
			t.Errorf("%s with the token but no Bearer scheme: got %d, want 401", path, code)
		}
		if code := doAuth(t, srv.URL+path, "Basic dTp0MGtlbg=="); code != 401 {
			t.Errorf("%s with basic credentials: got %d, want 401", path, code)
		}
		if code, _ := do(t, "GET", srv.URL+path, "t0ken", nil); code != 200 {
			t.Errorf("%s with the token: got %d, want 200", path, code)
		}
		// One rule with the agent routes (package bearer): the scheme is
		// case-insensitive; a prefix or an extension of the token is not it.
		for _, h := range []string{"bearer t0ken", "BEARER t0ken", "Bearer  t0ken"} {
			if code := doAuth(t, srv.URL+path, h); code != 200 {
				t.Errorf("%s with %q: got %d, want 200", path, h, code)
			}
		}
		for _, h := range []string{"Bearer t0ke", "Bearer t0ken0", "Bearer ", "Bearer t0ken x"} {
			if code := doAuth(t, srv.URL+path, h); code != 401 {
				t.Errorf("%s with %q: got %d, want 401", path, h, code)
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := do(t, "GET", srv.URL+path, "", nil); code != 200 {
			t.Errorf("%s needs no token: got %d", path, code)
		}
	}
}

func TestStatusShowsFiringAlerts(t *testing.T) {
	st := storekit.Open(t)
	firing := []alert.Alert{{Name: alert.CertificateExpiringSoon, Severity: alert.Critical, Subject: "shop",
		Summary: "Certificate shop expires soon", Since: time.Unix(1_800_000_000, 0).UTC()}}
	h := httpapi.NewHandler(st, httpapi.Config{Gatherer: prometheus.NewRegistry(), Alerts: func() []alert.Alert { return firing }},
		slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	defer srv.Close()
	var got struct{ Alerts []alert.Alert }
	do(t, "GET", srv.URL+"/api/v1/status", "", &got)
	if len(got.Alerts) != 1 || got.Alerts[0].Key() != firing[0].Key() || !got.Alerts[0].Since.Equal(firing[0].Since) {
		t.Errorf("status alerts: got %+v, want %+v", got.Alerts, firing)
	}
}
