package notify_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	amwebhook "github.com/prometheus/alertmanager/notify/webhook"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
)

// The tests in this file run the real Alertmanager: Debian's
// prometheus-alertmanager package (0.25.0 on bookworm), which .ci/run
// installs. alertmanager_test.go serves Alertmanager's API packages
// in-process for the rest.

// startRealAlertmanager runs prometheus-alertmanager with config (its
// YAML configuration) on a free loopback port, without clustering and
// with its data in a temporary directory, waits until it is ready and
// returns its base URL. It is killed when the test ends; its output is
// shown if the test failed.
func startRealAlertmanager(t *testing.T, config string) string {
	t.Helper()
	bin := testkit.Program(t, "prometheus-alertmanager", "prometheus-alertmanager")
	configFile := writeFile(t, "alertmanager.yml", config)
	var output testkit.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("prometheus-alertmanager output:\n%s", output.String())
		}
	})
	// Alertmanager binds the address it is given and cannot be handed a
	// listener: give it a port that was free, and another one should
	// something take it first.
	for attempt := 1; ; attempt++ {
		addr := testkit.FreeAddr(t)
		before := len(output.String())
		if runAlertmanager(t, bin, configFile, addr, &output) {
			return "http://" + addr
		}
		if attempt == 3 || !strings.Contains(output.String()[before:], "address already in use") {
			t.Fatalf("prometheus-alertmanager on %s exited before it was ready", addr)
		}
	}
}

// runAlertmanager starts Alertmanager on addr and waits until it answers
// /-/ready, or until it exits (false).
func runAlertmanager(t *testing.T, bin, configFile, addr string, output *testkit.Buffer) bool {
	t.Helper()
	cmd := exec.Command(bin,
		"--config.file="+configFile,
		"--storage.path="+t.TempDir(),
		"--cluster.listen-address=", // no clustering (it would bind :9094)
		"--web.listen-address="+addr,
		"--log.level=debug")
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(sync.OnceFunc(func() {
		_ = cmd.Process.Kill()
		<-exited
	}))
	running := true
	probe := &http.Client{Timeout: 2 * time.Second}
	testkit.WaitFor(t, waitTimeout, "prometheus-alertmanager on "+addr+" to answer /-/ready", func() bool {
		select {
		case <-exited:
			running = false
			return true
		default:
		}
		resp, err := probe.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if running {
		t.Logf("prometheus-alertmanager %s on %s", alertmanagerVersion(t, "http://"+addr), addr)
	}
	return running
}

// alertmanagerVersion is the version Alertmanager's GET /api/v2/status
// reports.
func alertmanagerVersion(t *testing.T, base string) string {
	t.Helper()
	var status struct {
		VersionInfo struct {
			Version string `json:"version"`
		} `json:"versionInfo"`
	}
	getJSON(t, base+"/api/v2/status", &status)
	return status.VersionInfo.Version
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// webhookRoute is an Alertmanager configuration whose one route sends
// every alert, grouped by alertname, to a webhook receiver at hookURL,
// firing and resolved, without waiting long: a group's first notification
// goes out 100ms after its first alert, later changes within a second,
// and nothing is repeated during a test.
func webhookRoute(hookURL string) string {
	return fmt.Sprintf(`route:
  receiver: certops-hook
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: certops-hook
    webhook_configs:
      - url: %s
        send_resolved: true
`, hookURL)
}

// notifications decodes what Alertmanager posted to the webhook receiver:
// its own payload (notify/webhook's Message).
func notifications(t *testing.T, hook *receiver) []amwebhook.Message {
	t.Helper()
	reqs := hook.requests()
	out := make([]amwebhook.Message, len(reqs))
	for i, r := range reqs {
		if err := json.Unmarshal(r.Body, &out[i]); err != nil || out[i].Data == nil {
			t.Fatalf("webhook request %d is not an Alertmanager notification (%v): %s", i, err, r.Body)
		}
	}
	return out
}

// waitNotification waits until the webhook receiver has got a
// notification that lists the alert of subject with status (firing or
// resolved), and returns it.
func waitNotification(t *testing.T, hook *receiver, subject, status string) amwebhook.Message {
	t.Helper()
	var found amwebhook.Message
	testkit.WaitFor(t, waitTimeout, "a notification of "+subject+" "+status, func() bool {
		for _, n := range notifications(t, hook) {
			for _, a := range n.Alerts {
				if a.Labels["subject"] == subject && a.Status == status {
					found = n
					return true
				}
			}
		}
		return false
	})
	return found
}

// The alerts certops posts appear in a real Alertmanager's API with their
// labels and annotations, its route sends them to a webhook receiver, and
// when certops resolves one, Alertmanager stops listing it and sends the
// receiver its resolved notification, while the other keeps firing.
func TestRealAlertmanagerRoutesTheAlertAndItsResolution(t *testing.T) {
	t.Parallel()
	hook := newReceiver(t, nil)
	am := startRealAlertmanager(t, webhookRoute(hook.URL+"/hook"))
	e := newEnv(t, fastOptions())
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{"am": {Alertmanager: &spec.AlertmanagerChannel{
		URL: am, DashboardURL: "https://certops.example.com"}}}
	// Alertmanager compares endsAt with its own clock: certops runs at the
	// real time here.
	now := time.Now().UTC().Truncate(time.Second)
	shop := expiring("shop", alert.Critical)
	shop.Labels["certificate"] = "shop"
	shop.Labels["app.kubernetes.io/team"] = "web"
	shop.Since = now.Add(-time.Hour)
	web1 := alert.Alert{Name: alert.AgentOffline, Severity: alert.Warning, Subject: "web-1",
		Summary: "Agent web-1 is offline", Description: "It has not polled for 20m.",
		Labels: map[string]string{"agent": "web-1"}, Since: now.Add(-20 * time.Minute)}

	e.sync(t, policyFor("am"), channels, now, shop, web1)
	e.waitMessages(t, 2, hasStatus(store.OutboxSent))

	wantShop := map[string]string{"alertname": alert.CertificateExpiringSoon, "severity": "critical", "subject": "shop",
		"certificate": "shop", "team": "shop", "app_kubernetes_io_team": "web"}
	wantShopAnnotations := map[string]string{"summary": shop.Summary, "description": shop.Description,
		"runbook_url": shop.Labels[notify.RunbookLabel]}
	wantWeb1 := map[string]string{"alertname": alert.AgentOffline, "severity": "warning", "subject": "web-1", "agent": "web-1"}
	got := getAlerts(t, am, "", "")
	slices.SortFunc(got, func(a, b gettableAlert) int { return strings.Compare(a.Labels["alertname"], b.Labels["alertname"]) })
	if len(got) != 2 {
		t.Fatalf("Alertmanager lists %d alerts, want 2: %+v", len(got), got)
	}
	if diff := cmp.Diff(got[0].Labels, wantWeb1); diff != "" {
		t.Errorf("agent alert's labels (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(got[1].Labels, wantShop); diff != "" {
		t.Errorf("certificate alert's labels (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(got[1].Annotations, wantShopAnnotations); diff != "" {
		t.Errorf("certificate alert's annotations (-got +want):\n%s", diff)
	}
	for _, a := range got {
		if a.Status.State != "active" {
			t.Errorf("%s: status.state = %q, want active", a.Labels["alertname"], a.Status.State)
		}
	}
	if !got[1].StartsAt.Equal(shop.Since) || !got[1].EndsAt.Equal(now.Add(2*notify.DefaultRenotifyInterval)) {
		t.Errorf("startsAt %v, endsAt %v; want %v and two renotify intervals after %v", got[1].StartsAt, got[1].EndsAt, shop.Since, now)
	}
	if got[0].GeneratorURL != "https://certops.example.com/ui/agents/web-1" || got[1].GeneratorURL != "https://certops.example.com/ui/certificates/shop" {
		t.Errorf("generatorURLs %q, %q; want the agent's and the certificate's dashboard pages", got[0].GeneratorURL, got[1].GeneratorURL)
	}

	// Alertmanager routes each group to the webhook receiver, in its own
	// notification format.
	firing := waitNotification(t, hook, "shop", "firing")
	if firing.Receiver != "certops-hook" || firing.Version != "4" || firing.Status != "firing" ||
		!cmp.Equal(map[string]string(firing.GroupLabels), map[string]string{"alertname": alert.CertificateExpiringSoon}) || len(firing.Alerts) != 1 {
		t.Fatalf("firing notification: receiver %q, version %q, status %q, group %v, %d alerts; want certops-hook, 4, firing, the alertname, 1",
			firing.Receiver, firing.Version, firing.Status, firing.GroupLabels, len(firing.Alerts))
	}
	if a := firing.Alerts[0]; a.Status != "firing" || !cmp.Equal(map[string]string(a.Labels), wantShop) ||
		!cmp.Equal(map[string]string(a.Annotations), wantShopAnnotations) || !a.StartsAt.Equal(shop.Since) ||
		a.GeneratorURL != "https://certops.example.com/ui/certificates/shop" {
		t.Errorf("firing notification's alert = %+v, want certops' alert as posted", a)
	}
	if n := waitNotification(t, hook, "web-1", "firing"); len(n.Alerts) != 1 || !cmp.Equal(map[string]string(n.Alerts[0].Labels), wantWeb1) {
		t.Errorf("agent's notification lists %+v, want the agent alert", n.Alerts)
	}

	// certops resolves the certificate's alert; the agent's keeps firing.
	resolvedAt := time.Now().UTC().Truncate(time.Second)
	e.sync(t, policyFor("am"), channels, resolvedAt, web1)
	e.waitMessages(t, 3, hasStatus(store.OutboxSent))
	if got := getAlerts(t, am, "", ""); len(got) != 1 || got[0].Labels["alertname"] != alert.AgentOffline {
		t.Errorf("after the resolution Alertmanager lists %+v, want the agent alert only", got)
	}
	resolved := waitNotification(t, hook, "shop", "resolved")
	if resolved.Status != "resolved" || len(resolved.Alerts) != 1 {
		t.Fatalf("resolved notification: status %q, alerts %+v; want resolved, one alert", resolved.Status, resolved.Alerts)
	}
	if a := resolved.Alerts[0]; a.Status != "resolved" || !cmp.Equal(map[string]string(a.Labels), wantShop) || !a.EndsAt.Equal(resolvedAt) {
		t.Errorf("resolved notification's alert: status %q, labels %v, endsAt %v; want resolved, the shop alert, %v",
			a.Status, a.Labels, a.EndsAt, resolvedAt)
	}
	for _, n := range notifications(t, hook) {
		if n.GroupLabels["alertname"] == alert.AgentOffline && n.Status != "firing" {
			t.Errorf("the agent's group got a %s notification, want it firing only", n.Status)
		}
	}
}

// A silence made with a real Alertmanager's API v2 suppresses the certops
// alert it matches: the API shows it suppressed by that silence, and the
// notifications of its group leave it out, while the alert beside it in
// the group is routed and resolved as usual.
func TestRealAlertmanagerSilenceSuppressesTheAlert(t *testing.T) {
	t.Parallel()
	hook := newReceiver(t, nil)
	am := startRealAlertmanager(t, webhookRoute(hook.URL+"/hook"))
	e := newEnv(t, fastOptions())
	e.run(t)
	channels := map[string]*spec.NotificationChannelSpec{"am": {Alertmanager: &spec.AlertmanagerChannel{URL: am}}}
	now := time.Now().UTC().Truncate(time.Second)
	silenceID := postSilence(t, am, "subject", "api", now.Add(time.Hour))
	shop, api := expiring("shop", alert.Warning), expiring("api", alert.Warning)
	shop.Since, api.Since = now.Add(-time.Hour), now.Add(-time.Hour)

	e.sync(t, policyFor("am"), channels, now, shop, api)
	e.waitMessages(t, 2, hasStatus(store.OutboxSent))
	states := map[string]gettableAlert{}
	for _, a := range getAlerts(t, am, "", "") {
		states[a.Labels["subject"]] = a
	}
	if a := states["api"]; a.Status.State != "suppressed" || !slices.Equal(a.Status.SilencedBy, []string{silenceID}) {
		t.Errorf("api: state %q, silenced by %v; want suppressed by %s", a.Status.State, a.Status.SilencedBy, silenceID)
	}
	if a := states["shop"]; a.Status.State != "active" || len(a.Status.SilencedBy) != 0 {
		t.Errorf("shop: state %q, silenced by %v; want active", a.Status.State, a.Status.SilencedBy)
	}

	// Both alerts are in one group (same alertname) and both have reached
	// Alertmanager. Resolving shop makes Alertmanager notify the group: its
	// notification would list api as firing were api not silenced.
	waitNotification(t, hook, "shop", "firing")
	e.sync(t, policyFor("am"), channels, time.Now().UTC(), api)
	e.waitMessages(t, 3, hasStatus(store.OutboxSent))
	resolved := waitNotification(t, hook, "shop", "resolved")
	if resolved.Status != "resolved" || len(resolved.Alerts) != 1 || resolved.Alerts[0].Labels["subject"] != "shop" {
		t.Errorf("resolved notification: status %q, alerts %+v; want resolved, shop only (not the silenced api)", resolved.Status, resolved.Alerts)
	}
	for i, n := range notifications(t, hook) {
		for _, a := range n.Alerts {
			if a.Labels["subject"] == "api" {
				t.Errorf("notification %d lists the silenced alert: %+v", i, a)
			}
		}
	}
	if got := getAlerts(t, am, "", ""); len(got) != 1 || got[0].Labels["subject"] != "api" || got[0].Status.State != "suppressed" {
		t.Errorf("after shop's resolution Alertmanager lists %+v, want api, still suppressed", got)
	}
}

// postSilence silences, until endsAt, the alerts whose label name equals
// value, through Alertmanager's POST /api/v2/silences, and returns the
// silence's ID.
func postSilence(t *testing.T, base, name, value string, endsAt time.Time) string {
	t.Helper()
	type matcher struct {
		Name    string `json:"name"`
		Value   string `json:"value"`
		IsRegex bool   `json:"isRegex"`
		IsEqual bool   `json:"isEqual"`
	}
	body, err := json.Marshal(map[string]any{
		"matchers":  []matcher{{Name: name, Value: value, IsEqual: true}},
		"startsAt":  time.Now().UTC(),
		"endsAt":    endsAt.UTC(),
		"createdBy": "certops test",
		"comment":   "maintenance of " + value,
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/api/v2/silences", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.SilenceID == "" {
		t.Fatalf("POST /api/v2/silences: %s, %v, %+v", resp.Status, err, out)
	}
	return out.SilenceID
}
