package agentapi_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
)

// A certificate deployed to three agents from an issuer allowing two
// certificates per name set per week, against a real Pebble: two agents
// get theirs, the third waits until the first certificate of the week
// leaves the window, and says so (deployment, assignment, issue answer);
// Pebble is asked for exactly two. A renewal inside the CA's ARI window
// then goes ahead although the week's limit is used (Let's Encrypt exempts
// those), is marked so in the ledger, and counts.
func TestACMERateLimitSchedulesOrders(t *testing.T) {
	f := newACMEFleet(t)
	iss := f.issuer("pebble", f.webroot)
	limit := 2
	iss.Issuer().ACME.RateLimits = &spec.ACMERateLimits{CertificatesPerNameSetPerWeek: &limit}
	agents := []string{"web-01", "web-02", "web-03"}
	fleet := f.cert(t, "fleet", "pebble", agents...)
	f.apply(iss, agentObj("web-01", nil), agentObj("web-02", nil), agentObj("web-03", nil), fleet)
	f.refresh()
	for _, a := range agents {
		f.runAgent(t, a)
	}

	// The third agent asked while the others' orders ran: it waits a
	// minute for them to settle, then for the week's limit.
	ds := f.waitDeployments(t, "fleet", "two installed, one not", func(ds []state.Deployment) bool {
		installed := 0
		for _, d := range ds {
			if d.State == state.DeploymentInstalled {
				installed++
			}
		}
		return installed == 2 && len(ds) == 3
	})
	var first time.Time
	var waiter state.Deployment
	for _, d := range ds {
		if d.State != state.DeploymentInstalled {
			waiter = d
		} else if first.IsZero() || d.Current.IssuedAt.Before(first) {
			first = d.Current.IssuedAt
		}
	}
	if !strings.HasPrefix(waiter.Waiting, "waiting for the CA's rate limit until ") || waiter.Current != nil {
		t.Fatalf("%s: %+v, want it waiting for the rate limit", waiter.Agent, waiter)
	}
	f.clock.Advance(2 * time.Minute)
	if r := f.issue(waiter.Agent, "fleet"); r.status != http.StatusTooManyRequests || !strings.Contains(string(r.body), `"code":"waiting"`) {
		t.Fatalf("issue request of %s: %d %s, want 429 waiting", waiter.Agent, r.status, r.body)
	}
	ds, err := f.st.CertificateDeployments(context.Background(), "fleet")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Agent == waiter.Agent {
			waiter = d
		}
	}
	until := first.Add(7 * 24 * time.Hour)
	if !waiter.NotBefore.Equal(until) {
		t.Errorf("%s waits until %s, want the first certificate's issue time + 7 days = %s", waiter.Agent, waiter.NotBefore, until)
	}
	want := "waiting for the CA's rate limit until " + until.UTC().Format(time.RFC3339) +
		" (issuer pebble allows 2 certificates for these names in 7 days: 2 issued)"
	if waiter.Waiting != want {
		t.Errorf("waiting = %q, want %q", waiter.Waiting, want)
	}
	if waiter.Current != nil || waiter.Failures != 0 || waiter.LastError != "" || waiter.State != "" {
		t.Errorf("the waiting deployment has a certificate, a state or a failure: %+v", waiter)
	}
	// The agent is told when to ask again, and asking earlier is refused
	// with the reason.
	testkit.WaitFor(t, 10*time.Second, "the wait in "+waiter.Agent+"'s assignments", func() bool {
		return f.assignment(waiter.Agent, "fleet").NotBefore.Equal(until)
	})
	r := f.issue(waiter.Agent, "fleet")
	if r.status != http.StatusTooManyRequests || !strings.Contains(string(r.body), "waiting for the CA's rate limit until") {
		t.Errorf("issue request while waiting: %d %s, want 429 with the reason", r.status, r.body)
	}
	if v, _ := f.metric("certops_acme_rate_limit_waits_total", map[string]string{"issuer": "pebble"}); v < 1 {
		t.Errorf("certops_acme_rate_limit_waits_total = %v, want ≥ 1", v)
	}
	if n := ledger(t, f.env, "pebble"); len(n) != 2 || slices.Contains(n, true) {
		t.Errorf("ledger %v, want two certificates, no ARI renewal", n)
	}

	// The CA moves one installed certificate's renewal window to now: its
	// renewal is exempt from the limit.
	renewer := ds[0].Agent
	if renewer == waiter.Agent {
		renewer = ds[1].Agent
	}
	openWindow(t, f.env, "fleet", renewer, f.clock.Now())
	f.refresh()
	if r := f.issue(renewer, "fleet"); r.status != http.StatusAccepted {
		t.Fatalf("ARI renewal of %s: %d %s, want 202 (not held back)", renewer, r.status, r.body)
	}
	testkit.WaitFor(t, 90*time.Second, "the ARI renewal in the ledger", func() bool {
		return len(ledger(t, f.env, "pebble")) == 3
	})
	if n := ledger(t, f.env, "pebble"); !slices.Equal(n, []bool{false, false, true}) {
		t.Errorf("ledger %v, want the third entry marked as an ARI renewal", n)
	}
	// Three certificates in the week now: the waiting agent still waits.
	if r := f.issue(waiter.Agent, "fleet"); r.status != http.StatusTooManyRequests {
		t.Errorf("issue request while waiting: %d %s, want 429", r.status, r.body)
	}

	// A week after the first certificate, a slot is free again (the ARI
	// renewal counts, so only one): the waiting agent's order goes ahead.
	f.clock.Advance(until.Sub(f.clock.Now()) + time.Minute)
	r = f.issue(waiter.Agent, "fleet")
	if r.status != http.StatusAccepted {
		t.Fatalf("issue request after the wait: %d %s, want 202", r.status, r.body)
	}
	d := f.waitDeployments(t, "fleet", waiter.Agent+"'s certificate", func(ds []state.Deployment) bool {
		for _, d := range ds {
			if d.Agent == waiter.Agent {
				return d.Current != nil
			}
		}
		return false
	})
	for _, x := range d {
		if x.Agent == waiter.Agent && x.Waiting != "" {
			t.Errorf("waiting = %q after the certificate was issued, want it cleared", x.Waiting)
		}
	}
}

// ledger lists the issuer's rate-limit ledger in order: whether each entry
// is an ARI renewal.
func ledger(t *testing.T, e *env, issuer string) []bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT ari_renewal FROM acme_issuances WHERE issuer = $1 ORDER BY id`, issuer)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// openWindow records, as the ARI re-check does when the CA moves a
// window, that agent's current certificate of cert is to be renewed in a
// window that began an hour before now.
func openWindow(t *testing.T, e *env, cert, agent string, now time.Time) {
	t.Helper()
	ctx := context.Background()
	ds, err := e.st.CertificateDeployments(ctx, cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Agent == agent {
			if _, err := e.st.RecordRenewalInfo(ctx, store.RenewalInfoCheck{VersionID: d.Current.ID,
				Window: state.RenewalWindow{Start: now.Add(-time.Hour), End: now.Add(time.Hour)}, CheckedAt: now,
				NextCheck: now.Add(24 * time.Hour)}); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no deployment of %s on %s", cert, agent)
}
