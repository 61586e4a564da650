package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/webhook"
)

const (
	githubSecret  = "It's a Secret to Everybody"
	gitlabToken   = "gitlab-token-123"
	genericSecret = "generic secret"
)

type fixture struct {
	handler http.Handler
	wakes   int
	metrics *webhook.Metrics
	reg     *prometheus.Registry
}

func newFixture(t *testing.T, cfg webhook.Config) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewRegistry()}
	f.metrics = webhook.NewMetrics(f.reg)
	h, err := webhook.NewHandler(cfg, func() { f.wakes++ }, slog.New(slog.DiscardHandler), f.metrics)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	f.handler = h
	return f
}

func writeSecret(t *testing.T, content string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func allConfigured(t *testing.T) webhook.Config {
	t.Helper()
	return webhook.Config{
		GitHubSecretFile:  writeSecret(t, githubSecret+"\n"),
		GitLabTokenFile:   writeSecret(t, gitlabToken),
		GenericSecretFile: writeSecret(t, genericSecret),
	}
}

func sign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (f *fixture) do(method, path, body string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	return rec
}

func (f *fixture) count(receiver, result string) float64 {
	return counterValue(f.reg, receiver, result)
}

// counterValue reads certops_webhook_requests_total{receiver,result} from reg.
func counterValue(reg prometheus.Gatherer, receiver, result string) float64 {
	families, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range families {
		if mf.GetName() != "certops_webhook_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["receiver"] == receiver && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// TestGitHubDocumentedVector checks the example from GitHub's "Validating
// webhook deliveries" documentation.
func TestGitHubDocumentedVector(t *testing.T) {
	f := newFixture(t, allConfigured(t))
	const want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got := sign(githubSecret, "Hello, World!"); got != want {
		t.Fatalf("test helper signature = %s, want %s", got, want)
	}
	rec := f.do(http.MethodPost, "/hooks/github", "Hello, World!", map[string]string{
		"X-Hub-Signature-256": want,
		"X-GitHub-Event":      "push",
	})
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d, want 202; body %s", rec.Code, rec.Body)
	}
	if got, want := strings.TrimSpace(rec.Body.String()), `{"status":"accepted"}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
	if f.wakes != 1 {
		t.Errorf("wake called %d times, want 1", f.wakes)
	}
}

// TestSign checks Sign against GitHub's documented example and the generic
// receiver.
func TestSign(t *testing.T) {
	const want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got := webhook.Sign([]byte(githubSecret), []byte("Hello, World!")); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	f := newFixture(t, allConfigured(t))
	body := `{"ref":"refs/heads/main"}`
	sig := webhook.Sign([]byte(genericSecret), []byte(body))
	if rec := f.do(http.MethodPost, "/hooks/generic", body, map[string]string{webhook.SignatureHeader: sig}); rec.Code != http.StatusAccepted {
		t.Errorf("generic receiver answered %d to a Sign signature, want 202", rec.Code)
	}
}

func TestReceivers(t *testing.T) {
	const body = `{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000000"}`
	tests := []struct {
		name       string
		path       string
		receiver   string
		header     map[string]string
		wantStatus int
		wantWakes  int
	}{
		{"github valid", "/hooks/github", webhook.ReceiverGitHub,
			map[string]string{"X-Hub-Signature-256": sign(githubSecret, body), "X-GitHub-Event": "push"}, 202, 1},
		{"github wrong secret", "/hooks/github", webhook.ReceiverGitHub,
			map[string]string{"X-Hub-Signature-256": sign("other", body)}, 401, 0},
		{"github sha1 header only", "/hooks/github", webhook.ReceiverGitHub,
			map[string]string{"X-Hub-Signature": "sha1=0123"}, 401, 0},
		{"github not hex", "/hooks/github", webhook.ReceiverGitHub,
			map[string]string{"X-Hub-Signature-256": "sha256=zz"}, 401, 0},
		{"github missing", "/hooks/github", webhook.ReceiverGitHub, nil, 401, 0},
		{"github ping", "/hooks/github", webhook.ReceiverGitHub,
			map[string]string{"X-Hub-Signature-256": sign(githubSecret, body), "X-GitHub-Event": "ping"}, 202, 0},
		{"gitlab valid", "/hooks/gitlab", webhook.ReceiverGitLab,
			map[string]string{"X-Gitlab-Token": gitlabToken, "X-Gitlab-Event": "Push Hook"}, 202, 1},
		{"gitlab wrong", "/hooks/gitlab", webhook.ReceiverGitLab,
			map[string]string{"X-Gitlab-Token": gitlabToken + "x"}, 401, 0},
		{"gitlab missing", "/hooks/gitlab", webhook.ReceiverGitLab, nil, 401, 0},
		{"generic valid", "/hooks/generic", webhook.ReceiverGeneric,
			map[string]string{"X-Certops-Signature-256": sign(genericSecret, body)}, 202, 1},
		{"generic github header is not enough", "/hooks/generic", webhook.ReceiverGeneric,
			map[string]string{"X-Hub-Signature-256": sign(genericSecret, body)}, 401, 0},
		{"generic wrong", "/hooks/generic", webhook.ReceiverGeneric,
			map[string]string{"X-Certops-Signature-256": sign(genericSecret, body+" ")}, 401, 0},
		{"generic missing", "/hooks/generic", webhook.ReceiverGeneric, nil, 401, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, allConfigured(t))
			rec := f.do(http.MethodPost, tt.path, body, tt.header)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if f.wakes != tt.wantWakes {
				t.Errorf("wake called %d times, want %d", f.wakes, tt.wantWakes)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			result := webhook.ResultAccepted
			if tt.wantStatus == http.StatusUnauthorized {
				result = webhook.ResultUnauthorized
				var got map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
					t.Fatalf("decode error body: %v", err)
				}
				want := map[string]any{"error": map[string]any{"code": "unauthorized", "message": "invalid signature"}}
				if diff := cmp.Diff(got, want); diff != "" {
					t.Errorf("error body (-got +want):\n%s", diff)
				}
			}
			if got := f.count(tt.receiver, result); got != 1 {
				t.Errorf("certops_webhook_requests_total{receiver=%q,result=%q} = %v, want 1", tt.receiver, result, got)
			}
		})
	}
}

func TestOversizeBody(t *testing.T) {
	f := newFixture(t, allConfigured(t))
	body := strings.Repeat("x", webhook.MaxBodyBytes+1)
	rec := f.do(http.MethodPost, "/hooks/github", body, map[string]string{"X-Hub-Signature-256": sign(githubSecret, body)})
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413", rec.Code)
	}
	if f.wakes != 0 {
		t.Errorf("wake called %d times, want 0", f.wakes)
	}
	if got := f.count(webhook.ReceiverGitHub, webhook.ResultBadRequest); got != 1 {
		t.Errorf("bad_request count = %v, want 1", got)
	}

	// Exactly at the limit is fine.
	body = body[:webhook.MaxBodyBytes]
	rec = f.do(http.MethodPost, "/hooks/github", body, map[string]string{"X-Hub-Signature-256": sign(githubSecret, body)})
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status at limit = %d, want 202", rec.Code)
	}
}

func TestWrongMethod(t *testing.T) {
	f := newFixture(t, allConfigured(t))
	for _, path := range []string{"/hooks/github", "/hooks/gitlab", "/hooks/generic"} {
		rec := f.do(http.MethodGet, path, "", map[string]string{"X-Gitlab-Token": gitlabToken})
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: status = %d, want 405", path, rec.Code)
		}
		if got := rec.Header().Get("Allow"); got != "POST" {
			t.Errorf("GET %s: Allow = %q, want POST", path, got)
		}
	}
	if f.wakes != 0 {
		t.Errorf("wake called %d times, want 0", f.wakes)
	}
	if got := f.count(webhook.ReceiverGitLab, webhook.ResultMethodNotAllowed); got != 1 {
		t.Errorf("method_not_allowed count = %v, want 1", got)
	}
}

func TestUnconfiguredReceiverIs404(t *testing.T) {
	f := newFixture(t, webhook.Config{GitLabTokenFile: writeSecret(t, gitlabToken)})
	for _, path := range []string{"/hooks/github", "/hooks/generic", "/hooks/other", "/hooks/reconcile/x"} {
		rec := f.do(http.MethodPost, path, "{}", map[string]string{"X-Hub-Signature-256": sign("", "{}")})
		if rec.Code != http.StatusNotFound {
			t.Errorf("POST %s: status = %d, want 404", path, rec.Code)
		}
	}
	if f.wakes != 0 {
		t.Errorf("wake called %d times, want 0", f.wakes)
	}
}

func TestNewHandlerSecretErrors(t *testing.T) {
	wake := func() {}
	for name, cfg := range map[string]webhook.Config{
		"missing file": {GitHubSecretFile: filepath.Join(t.TempDir(), "nope")},
		"empty file":   {GenericSecretFile: writeSecret(t, " \n")},
	} {
		if _, err := webhook.NewHandler(cfg, wake, nil, nil); err == nil {
			t.Errorf("%s: NewHandler succeeded, want error", name)
		}
	}
}

func TestMetricsExposition(t *testing.T) {
	f := newFixture(t, allConfigured(t))
	f.do(http.MethodPost, "/hooks/gitlab", "{}", map[string]string{"X-Gitlab-Token": gitlabToken})
	want := `
# HELP certops_webhook_requests_total Webhook requests received, by receiver and result.
# TYPE certops_webhook_requests_total counter
certops_webhook_requests_total{receiver="generic",result="accepted"} 0
certops_webhook_requests_total{receiver="generic",result="bad_request"} 0
certops_webhook_requests_total{receiver="generic",result="method_not_allowed"} 0
certops_webhook_requests_total{receiver="generic",result="unauthorized"} 0
certops_webhook_requests_total{receiver="github",result="accepted"} 0
certops_webhook_requests_total{receiver="github",result="bad_request"} 0
certops_webhook_requests_total{receiver="github",result="method_not_allowed"} 0
certops_webhook_requests_total{receiver="github",result="unauthorized"} 0
certops_webhook_requests_total{receiver="gitlab",result="accepted"} 1
certops_webhook_requests_total{receiver="gitlab",result="bad_request"} 0
certops_webhook_requests_total{receiver="gitlab",result="method_not_allowed"} 0
certops_webhook_requests_total{receiver="gitlab",result="unauthorized"} 0
certops_webhook_requests_total{receiver="reconcile",result="accepted"} 0
certops_webhook_requests_total{receiver="reconcile",result="bad_request"} 0
certops_webhook_requests_total{receiver="reconcile",result="method_not_allowed"} 0
certops_webhook_requests_total{receiver="reconcile",result="unauthorized"} 0
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "certops_webhook_requests_total"); err != nil {
		t.Error(err)
	}
	// A second NewMetrics on the same registry reuses the collector.
	webhook.NewMetrics(f.reg)
	if got := f.count(webhook.ReceiverGitLab, webhook.ResultAccepted); got != 1 {
		t.Errorf("after re-registration gitlab accepted = %v, want 1", got)
	}
}

// TestReconcileReceiver: POST /hooks/reconcile wakes the reconciler with
// the read API's bearer token (or without one when none is configured),
// answers when it asked, and refuses everything else without waking.
func TestReconcileReceiver(t *testing.T) {
	const token = "api-token"
	cfg := webhook.Config{ReconcileToken: token}
	for _, tc := range []struct {
		name       string
		cfg        webhook.Config
		method     string
		header     map[string]string
		wantStatus int
		result     string
	}{
		{"token", cfg, http.MethodPost, map[string]string{"Authorization": "Bearer " + token}, 202, webhook.ResultAccepted},
		{"scheme in any case", cfg, http.MethodPost, map[string]string{"Authorization": "bearer " + token}, 202, webhook.ResultAccepted},
		{"wrong token", cfg, http.MethodPost, map[string]string{"Authorization": "Bearer nope"}, 401, webhook.ResultUnauthorized},
		{"no token", cfg, http.MethodPost, nil, 401, webhook.ResultUnauthorized},
		{"a webhook signature is not a token", cfg, http.MethodPost, map[string]string{webhook.SignatureHeader: sign(token, "")}, 401, webhook.ResultUnauthorized},
		{"GET", cfg, http.MethodGet, map[string]string{"Authorization": "Bearer " + token}, 405, webhook.ResultMethodNotAllowed},
		{"open without a token", webhook.Config{}, http.MethodPost, nil, 202, webhook.ResultAccepted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg)
			before := time.Now().UTC()
			rec := f.do(tc.method, "/hooks/reconcile", "", tc.header)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			wantWakes := 0
			if tc.wantStatus == 202 {
				wantWakes = 1
				var got apiv1.ReconcileRequest
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
					t.Fatal(err)
				}
				if got.Status != "accepted" || got.RequestedAt.Before(before) || got.RequestedAt.After(time.Now()) {
					t.Errorf("answer %+v; want accepted, requested between %v and now", got, before)
				}
			}
			if tc.wantStatus == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if f.wakes != wantWakes {
				t.Errorf("wake called %d times, want %d", f.wakes, wantWakes)
			}
			if got := f.count(webhook.ReceiverReconcile, tc.result); got != 1 {
				t.Errorf("reconcile %s count = %v, want 1", tc.result, got)
			}
		})
	}
}
