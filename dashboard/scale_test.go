package dashboard_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certops/certops/dashboard"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/testkit/storekit"
)

// TestCertificatesPageAt50K checks that the certificates list renders in
// chromium in under a second with 50,000 certificates, each deployed on
// one of 20 agents: the first page, a page deep in the list (keyset
// pagination), a name prefix and a label filter. The time is the
// browser's navigation timing, from the start of the navigation to the
// end of the load event (HTML, stylesheet and script).
func TestCertificatesPageAt50K(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 50,000 certificates")
	}
	const certs, agents = 50_000, 20
	tb := newTab(t, false)
	url := pgtest.DB(t)
	st := storekit.OpenURL(t, url)

	objs := []*spec.Object{}
	for i := range agents {
		objs = append(objs, agentObj(fmt.Sprintf("web-%02d", i), "web"))
	}
	for i := range certs {
		objs = append(objs, certObj(fmt.Sprintf("svc-%05d", i), fmt.Sprintf("team-%d", i%50), 1+10*(i%1000),
			toAgents(fmt.Sprintf("web-%02d", i%agents))))
	}
	start := time.Now()
	rev := state.Revision{Ref: "main", Commit: strings.Repeat("f", 40), Author: "Bench <bench@example.com>", Time: start}
	storekit.Apply(t, st, rev, applied(rev, start), storekit.Desired(objs...))
	t.Logf("applied %d certificates and %d agents in %v", certs, agents, time.Since(start).Round(time.Millisecond))

	// One deployment per certificate, installed, ending within 90 days:
	// one INSERT … SELECT, as the agents' reports would leave them; then
	// the vacuum and statistics that autovacuum would have made.
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	start = time.Now()
	if _, err := pool.Exec(ctx, `
		INSERT INTO deployments (certificate, agent, state, installed_serial, installed_not_after, last_attempt)
		SELECT name, spec->'deploy'->'agents'->>0, 'installed', md5(name),
			now() + (abs(hashtext(name)) % 90) * interval '1 day', now()
		FROM objects WHERE kind = 'Certificate'`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d deployments in %v", certs, time.Since(start).Round(time.Millisecond))

	srv := serve(t, st, "", nil)
	tb.open(srv.URL + "/ui/certificates") // warm up: the connection pool, the browser's cache of the stylesheet
	for _, page := range []struct {
		path  string
		rows  int
		first string
	}{
		{"/ui/certificates", dashboard.PageSize, "svc-00000"},
		{"/ui/certificates?after=svc-49000", dashboard.PageSize, "svc-49001"},
		{"/ui/certificates?after=svc-49950", 49, "svc-49951"},
		{"/ui/certificates?prefix=svc-2500", 10, "svc-25000"},
		{"/ui/certificates?labels=team%3Dteam-7", dashboard.PageSize, "svc-00007"},
	} {
		tb.open(srv.URL + page.path)
		nav := tb.timing()
		if n := tb.count("#certificates tbody tr"); n != page.rows {
			t.Errorf("%s: %d rows, want %d", page.path, n, page.rows)
		}
		if got := tb.text("#certificates tbody tr:first-child td:first-child"); got != page.first {
			t.Errorf("%s: first row %q, want %q", page.path, got, page.first)
		}
		t.Logf("%s at %d certificates: response %.0f ms, DOMContentLoaded %.0f ms, load %.0f ms",
			page.path, certs, nav.ResponseEnd, nav.DOMContentLoadedEventEnd, nav.LoadEventEnd)
		if nav.LoadEventEnd <= 0 || nav.LoadEventEnd >= 1000 {
			t.Errorf("%s took %.0f ms to load, want under a second", page.path, nav.LoadEventEnd)
		}
	}
	tb.screenshot("certificates-50k", false)

	// The overview's aggregates run over the whole fleet: logged, not bounded here.
	tb.open(srv.URL + "/ui/")
	nav := tb.timing()
	if got := tb.text("#total-certificates"); got != fmt.Sprint(certs) {
		t.Errorf("overview: %s certificates, want %d", got, certs)
	}
	t.Logf("/ui/ (overview) at %d certificates: response %.0f ms, load %.0f ms", certs, nav.ResponseEnd, nav.LoadEventEnd)
}
