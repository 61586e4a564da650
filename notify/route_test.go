package notify_test

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit/storekit"
)

// certAlert is an expiry alert about a certificate, labelled with its name
// as the alerting monitor labels it.
func certAlert(name string) alert.Alert {
	return alert.Alert{Name: alert.CertificateExpiringSoon, Severity: alert.Warning, Subject: name,
		Summary: "Certificate " + name + " expires soon", Labels: map[string]string{notify.SubjectCertificateLabel: name},
		Since: t0.Add(-time.Hour)}
}

// routedObjects is the desired state of the routing test: three webhook
// channels, an AlertPolicy routing team shop and team pay to their own
// channel (ops by default), and certificates and an agent with labels.
// shopTeam is the team label of Certificate shop-frontend.
func routedObjects(urls map[string]string, shopTeam string) []*spec.Object {
	cert := func(name string, labels map[string]string) *spec.Object {
		return &spec.Object{Kind: spec.KindCertificate, Name: name, Labels: labels,
			Spec: &spec.CertificateSpec{IssuerRef: "ca", CommonName: name + ".example.com"}}
	}
	objs := []*spec.Object{
		{Kind: spec.KindAlertPolicy, Name: "default", Spec: &spec.AlertPolicySpec{
			Notify: []string{"ops-hook"},
			Routes: []spec.AlertRoute{
				{Match: map[string]string{"team": "shop"}, Notify: []string{"shop-hook"}},
				{Match: map[string]string{"team": "pay"}, Notify: []string{"pay-hook"}},
			}}},
		cert("shop-frontend", map[string]string{"team": shopTeam}),
		cert("pay-api", map[string]string{"team": "pay", "env": "prod"}),
		cert("misc", nil),
		{Kind: spec.KindAgent, Name: "web-01", Labels: map[string]string{"team": "pay"},
			Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("ab", 32)}},
	}
	for name, url := range urls {
		objs = append(objs, &spec.Object{Kind: spec.KindNotificationChannel, Name: name,
			Spec: &spec.NotificationChannelSpec{Webhook: &spec.WebhookChannel{URL: url}}})
	}
	for _, o := range objs {
		o.Source = spec.Position{File: "alerts.yaml", Line: 1}
	}
	return objs
}

// subjects are the alert subjects a receiver got, as "kind:subject", sorted.
func subjects(t *testing.T, rc *receiver) []string {
	t.Helper()
	var out []string
	for _, r := range rc.requests() {
		var p struct {
			Kind  string
			Alert alert.Alert
		}
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatalf("webhook body %s: %v", r.Body, err)
		}
		out = append(out, p.Kind+":"+cmp.Or(p.Alert.Subject, p.Alert.Name))
	}
	slices.Sort(out)
	return out
}

// TestRoutingByLabels delivers, from the desired state applied to a real
// Postgres, each alert to the receivers of its subject's team, and the
// rest to the default.
func TestRoutingByLabels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shop, pay, ops := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	urls := map[string]string{"shop-hook": shop.URL, "pay-hook": pay.URL, "ops-hook": ops.URL}
	e := newEnv(t, fastOptions())
	apply := func(commit string, shopTeam string) {
		rev := state.Revision{Ref: "main", Commit: strings.Repeat(commit, 40), Time: t0}
		storekit.Apply(t, e.st, rev, state.Status{LastAppliedRevision: rev.String()}, storekit.Desired(routedObjects(urls, shopTeam)...))
	}
	apply("a", "shop")
	e.run(t)

	stalled := alert.Alert{Name: alert.ReconcileStalled, Severity: alert.Warning, Summary: "stalled", Since: t0}
	firing := []alert.Alert{certAlert("shop-frontend"), certAlert("pay-api"), certAlert("misc"), stalled}
	if err := e.n.SyncApplied(ctx, firing, t0); err != nil {
		t.Fatalf("SyncApplied: %v", err)
	}
	// A deployment event names a certificate without labels and an agent
	// of team pay: the agent's labels route it.
	deploy := alert.Alert{Name: alert.DeployFailed, Severity: alert.Warning, Subject: "misc@web-01",
		Labels: map[string]string{"certificate": "misc", "agent": "web-01"}, Since: t0}
	if err := e.n.Event(ctx, deploy); err != nil {
		t.Fatalf("Event: %v", err)
	}
	e.waitMessages(t, 5, hasStatus(store.OutboxSent))
	got := map[string][]string{"shop": subjects(t, shop), "pay": subjects(t, pay), "ops": subjects(t, ops)}
	want := map[string][]string{
		"shop": {"firing:shop-frontend"},
		"pay":  {"event:misc@web-01", "firing:pay-api"},
		"ops":  {"firing:" + alert.ReconcileStalled, "firing:misc"},
	}
	if diff := gocmp.Diff(got, want); diff != "" {
		t.Fatalf("delivered (-got +want):\n%s", diff)
	}

	// shop-frontend moves to team pay while it fires: pay is told it
	// fires, shop nothing more; when it resolves, pay is told.
	apply("b", "pay")
	if err := e.n.SyncApplied(ctx, firing, t0.Add(time.Minute)); err != nil {
		t.Fatalf("SyncApplied: %v", err)
	}
	if err := e.n.SyncApplied(ctx, nil, t0.Add(2*time.Minute)); err != nil {
		t.Fatalf("SyncApplied: %v", err)
	}
	e.waitMessages(t, 10, hasStatus(store.OutboxSent))
	got = map[string][]string{"shop": subjects(t, shop), "pay": subjects(t, pay), "ops": subjects(t, ops)}
	want = map[string][]string{
		"shop": {"firing:shop-frontend"},
		"pay": {"event:misc@web-01", "firing:pay-api", "firing:shop-frontend",
			"resolved:pay-api", "resolved:shop-frontend"},
		"ops": {"firing:" + alert.ReconcileStalled, "firing:misc", "resolved:" + alert.ReconcileStalled, "resolved:misc"},
	}
	if diff := gocmp.Diff(got, want); diff != "" {
		t.Errorf("delivered after the label change (-got +want):\n%s", diff)
	}
}
