package notify_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	amalert "github.com/prometheus/alertmanager/alert"
	amapi "github.com/prometheus/alertmanager/api"
	amconfig "github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/alertmanager/eventrecorder"
	"github.com/prometheus/alertmanager/provider/mem"
	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/route"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
)

// The tests in this file serve Alertmanager's API packages in-process, at
// the version go.mod requires: the alert's labels and its resolution as
// that version's API shows them, and what needs something in front of
// Alertmanager (a bearer token checked like an authenticating proxy does,
// TLS with a test CA). alertmanager_real_test.go runs the real
// Alertmanager process (Debian's prometheus-alertmanager) for the alert's
// way through its API, its routing to a receiver, a silence and the
// resolution.
//
// The alertmanager command cannot be pinned as a Go tool: its ui package
// embeds app/dist, which the module zip lacks (`go tool` fails with
// "pattern app/dist: no matching files found").

// startAlertmanager serves Alertmanager's own API v2 (its api, alert store
// and silences packages, wired as cmd/alertmanager wires them, with a
// config whose only receiver is a null one) on 127.0.0.1, and returns its
// base URL. Its HTTP handlers reached through Register require the bearer
// token, when set, like an authenticating proxy in front of Alertmanager.
func startAlertmanager(t *testing.T, token string) string {
	t.Helper()
	srv := httptest.NewServer(alertmanagerHandler(t, token))
	t.Cleanup(srv.Close)
	return srv.URL
}

// alertmanagerHandler is the handler startAlertmanager serves.
func alertmanagerHandler(t *testing.T, token string) http.Handler {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	rec := eventrecorder.NopRecorder()
	silences, err := silence.New(silence.Options{Retention: time.Hour, Logger: logger, Metrics: reg, EventRecorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	silencer := silence.NewSilencer(silences, logger, rec)
	alerts, err := mem.NewAlerts(context.Background(), time.Minute, 0, silencer, logger, rec, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(alerts.Close)
	api, err := amapi.New(amapi.Options{
		Alerts: alerts, Silences: silences, Logger: logger, Registry: reg,
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "alertmanager_http_request_duration_seconds"},
			[]string{"handler", "method", "code"}),
		GroupMutedFunc: func(string, string) ([]string, bool) { return nil, false },
		GroupFunc: func(context.Context, func(*dispatch.Route) bool, func(*amalert.Alert, time.Time) bool) (dispatch.AlertGroups, map[model.Fingerprint][]string, error) {
			return nil, nil, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := amconfig.Load("route: {receiver: 'null'}\nreceivers: [{name: 'null'}]\n")
	if err != nil {
		t.Fatal(err)
	}
	// As Alertmanager's reloader does (without an inhibitor: no rules):
	// the silencer marks each alert silenced or active.
	api.Update(cfg, func(ctx context.Context, labels model.LabelSet) { silencer.Mutes(ctx, labels) })
	handler := api.Register(route.New(), "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		handler.ServeHTTP(w, r)
	})
}

// gettableAlert is the part of Alertmanager's GET /api/v2/alerts answer
// the test looks at.
type gettableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Status       struct {
		State      string   `json:"state"`
		SilencedBy []string `json:"silencedBy"`
	} `json:"status"`
}

func getAlerts(t *testing.T, base, token, query string) []gettableAlert {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v2/alerts"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []gettableAlert
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v2/alerts%s: %s", query, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAlertmanagerShowsTheAlertAndItsResolution(t *testing.T) {
	t.Parallel()
	const token = "am-t0ken"
	am := startAlertmanager(t, token)
	e := newEnv(t, fastOptions())
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{"am": {Alertmanager: &spec.AlertmanagerChannel{
		URL: am + "/", BearerTokenFile: writeFile(t, "token", token+"\n"), DashboardURL: "https://certops.example.com"}}}
	shop := expiring("shop", alert.Critical)
	shop.Labels["certificate"] = "shop"
	shop.Labels["app.kubernetes.io/team"] = "web"
	// Events and alerts are sent at the real time, so Alertmanager (which
	// compares endsAt with its clock) sees a firing alert as active.
	now := time.Now().UTC().Truncate(time.Second)
	shop.Since = now.Add(-time.Hour)

	e.sync(t, policyFor("am"), channels, now, shop)
	e.waitMessages(t, 1, hasStatus(store.OutboxSent))
	got := getAlerts(t, am, token, "")
	if len(got) != 1 {
		t.Fatalf("Alertmanager lists %d alerts, want 1: %+v", len(got), got)
	}
	a := got[0]
	wantLabels := map[string]string{"alertname": alert.CertificateExpiringSoon, "severity": "critical", "subject": "shop",
		"certificate": "shop", "team": "shop", "app_kubernetes_io_team": "web"}
	wantAnnotations := map[string]string{"summary": shop.Summary, "description": shop.Description,
		"runbook_url": shop.Labels[notify.RunbookLabel]}
	if diff := cmp.Diff(a.Labels, wantLabels); diff != "" {
		t.Errorf("labels (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(a.Annotations, wantAnnotations); diff != "" {
		t.Errorf("annotations (-got +want):\n%s", diff)
	}
	if !a.StartsAt.Equal(shop.Since) || !a.EndsAt.Equal(now.Add(2*notify.DefaultRenotifyInterval)) {
		t.Errorf("startsAt %v, endsAt %v; want %v and two renotify intervals after %v", a.StartsAt, a.EndsAt, shop.Since, now)
	}
	if a.Status.State != "active" {
		t.Errorf("status.state = %q, want an active alert", a.Status.State)
	}
	if a.GeneratorURL != "https://certops.example.com/ui/certificates/shop" {
		t.Errorf("generatorURL = %q, want the certificate's dashboard page", a.GeneratorURL)
	}

	// Resolved: Alertmanager no longer lists it as firing (its endsAt is past).
	e.sync(t, policyFor("am"), channels, time.Now().UTC())
	e.waitMessages(t, 2, hasStatus(store.OutboxSent))
	if got := getAlerts(t, am, token, ""); len(got) != 0 {
		t.Errorf("after the resolution Alertmanager still lists %+v", got)
	}
}

func TestAlertmanagerRefusalsAreRetriedAndReported(t *testing.T) {
	t.Parallel()
	am := startAlertmanager(t, "right-token")
	opts := fastOptions()
	opts.MaxAttempts = 2
	e := newEnv(t, opts)
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{"am": {Alertmanager: &spec.AlertmanagerChannel{
		URL: am, BearerTokenFile: writeFile(t, "token", "wr0ng-token")}}}
	e.sync(t, policyFor("am"), channels, time.Now(), expiring("shop", alert.Warning))
	msgs := e.waitMessages(t, 1, hasStatus(store.OutboxDead))
	if m := msgs[0]; m.Attempts != 2 || !strings.Contains(m.LastError, "POST to Alertmanager "+am+"/api/v2/alerts: 401 Unauthorized") ||
		strings.Contains(m.LastError, "wr0ng") {
		t.Errorf("dead message: %d attempts, error %q; want 2 and the 401 without the token", m.Attempts, m.LastError)
	}
}

func TestAlertmanagerOverHTTPSTrustsCAFile(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(alertmanagerHandler(t, ""))
	t.Cleanup(srv.Close)
	caFile := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	opts := fastOptions()
	opts.MaxAttempts = 1
	e := newEnv(t, opts)
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{
		"trusted":   {Alertmanager: &spec.AlertmanagerChannel{URL: srv.URL, CAFile: caFile}},
		"untrusted": {Alertmanager: &spec.AlertmanagerChannel{URL: srv.URL}},
		"no-pem":    {Alertmanager: &spec.AlertmanagerChannel{URL: srv.URL, CAFile: writeFile(t, "empty.pem", "not a certificate")}},
	}
	e.sync(t, policyFor("trusted", "untrusted", "no-pem"), channels, time.Now(), expiring("shop", alert.Warning))
	msgs := e.waitMessages(t, 3, func(m store.Notification) bool {
		return m.Channel == "trusted" && m.Status == store.OutboxSent || m.Channel != "trusted" && m.Status == store.OutboxDead
	})
	for _, m := range msgs {
		switch m.Channel {
		case "untrusted":
			if !strings.Contains(m.LastError, "certificate signed by unknown authority") {
				t.Errorf("untrusted: error %q, want the unknown CA reported", m.LastError)
			}
		case "no-pem":
			if !strings.Contains(m.LastError, "holds no PEM certificate") {
				t.Errorf("no-pem: error %q, want the CA file refused", m.LastError)
			}
		}
	}
	if got := getAlertsTLS(t, srv); len(got) != 1 || got[0].Labels["alertname"] != alert.CertificateExpiringSoon {
		t.Errorf("Alertmanager lists %+v, want the one alert", got)
	}
}

func getAlertsTLS(t *testing.T, srv *httptest.Server) []gettableAlert {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []gettableAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}
