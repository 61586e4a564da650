package dashboard_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/certops/certops/dashboard"
	"github.com/certops/certops/testkit/storekit"
)

// TestPagesInABrowser loads every page of the dashboard over a real store
// in chromium, checks what it shows, follows the links from the overview
// to a certificate and on to an agent, and checks that nothing broke the
// Content-Security-Policy.
func TestPagesInABrowser(t *testing.T) {
	tb := newTab(t, false)
	st := storekit.Open(t)
	fleet(t, st)
	srv := serve(t, st, "", firing)

	// The root redirects to the overview.
	tb.open(srv.URL + "/")
	if got := tb.location(); got != srv.URL+"/ui/" {
		t.Errorf("/ led to %s, want the overview", got)
	}
	if got := eval[bool](tb, `document.documentElement.classList.contains("js")`); !got {
		t.Error("the dashboard's script did not run")
	}
	checks := map[string]string{
		"#total-certificates": fmt.Sprint(5 + bulkCertificates),
		"#total-agents":       "4",
		"#total-expiring":     "2", // blog on web-01 (5 days), shop-frontend on web-02 (20 days)
		"#total-failing":      "2", // api-gateway rolled back, db-tls refused
		"#total-offline":      "2", // db-01 silent, edge-01 never seen
		`#by-state [data-state="rolled-back"] .count`:  "1",
		`#by-state [data-state="issue-failed"] .count`: "1",
		`#by-state [data-state="issued"] .count`:       "1", // shop-frontend: web-02 has not installed its newest
		`#by-state [data-state="installed"] .count`:    "1", // blog
		`#by-state [data-state="pending"] .count`:      fmt.Sprint(1 + bulkCertificates),
	}
	for sel, want := range checks {
		if got := tb.text(sel); got != want {
			t.Errorf("overview %s = %q, want %q", sel, got, want)
		}
	}
	if got := tb.text("#reconcile-errors"); !strings.Contains(got, `certs/data.yaml:12: spec.dnsNames[1]: "db..example.com" is not a valid DNS name`) ||
		!strings.Contains(got, "agents.yaml:3: metadata.name") {
		t.Errorf("reconcile errors = %q", got)
	}
	if got := tb.text(`.condition[data-type="Stalled"]`); !strings.Contains(got, "True") || !strings.Contains(got, "ValidationFailed") {
		t.Errorf("Stalled condition = %q", got)
	}
	if got := tb.text("#alerts"); !strings.Contains(got, "CertopsCertificateExpiringSoon") {
		t.Errorf("alerts = %q", got)
	}
	if n := tb.count("#expiring tbody tr"); n != 2 {
		t.Errorf("expiring rows = %d, want 2", n)
	}
	if got := tb.text("#expiring tbody tr:first-child"); !strings.Contains(got, "blog") || !strings.Contains(got, "web-01") {
		t.Errorf("first expiring row = %q, want blog on web-01", got)
	}
	if got := tb.text("#failing"); !strings.Contains(got, "reload: nginx -s reload: exit status 1") || !strings.Contains(got, "DNS names differ") {
		t.Errorf("failing = %q", got)
	}
	if got := tb.text("#offline tbody"); !strings.Contains(got, "edge-01 never") || !strings.Contains(got, "db-01") {
		t.Errorf("offline = %q", got)
	}
	if n := tb.count("#timeline g.week"); n != 12 {
		t.Errorf("timeline weeks = %d, want 12", n)
	}
	if n := tb.count("#timeline g.week.has"); n != 3 { // 5, 20 and 60 days from now
		t.Errorf("timeline weeks with expiries = %d, want 3", n)
	}
	tb.screenshot("overview", true)

	// Overview → certificate → agent.
	tb.follow(`#expiring a[href="/ui/certificates/blog"]`)
	if got := tb.text("h1"); !strings.HasPrefix(got, "blog") {
		t.Errorf("certificate page h1 = %q", got)
	}
	tb.open(srv.URL + "/ui/certificates/shop-frontend")
	if got := tb.text("#ready"); got != "Ready" { // both agents have a valid certificate installed
		t.Errorf("shop-frontend readiness = %q", got)
	}
	if n := tb.count("#deployments tbody tr"); n != 2 {
		t.Errorf("shop-frontend deployments = %d, want 2 (web-01, web-02)", n)
	}
	web02 := tb.text(`#deployments tr[data-agent="web-02"]`)
	for _, want := range []string{"issued", "5a02", "5a03", "not installed yet"} {
		if !strings.Contains(web02, want) {
			t.Errorf("web-02's deployment %q lacks %q", web02, want)
		}
	}
	if n := tb.count("#versions tbody tr"); n != 3 {
		t.Errorf("versions = %d, want 3", n)
	}
	// The newest (5a03) renewed web-02's inside the CA's window.
	if got := tb.text("#versions tbody tr:first-child"); !strings.Contains(got, "5a03") || !strings.Contains(got, "ARI renewal") ||
		!strings.Contains(got, " – ") {
		t.Errorf("newest version row = %q, want 5a03 marked as an ARI renewal, with its window", got)
	}
	if got := tb.text("#versions tbody tr:last-child"); strings.Contains(got, "ARI renewal") || !strings.Contains(got, "—") {
		t.Errorf("oldest version row = %q, want no ARI mark and no window", got)
	}
	if got := tb.text("#renew-at"); !strings.HasPrefix(got, "in ") {
		t.Errorf("renewal = %q, want a time to come", got)
	}
	tb.screenshot("certificate", true)
	tb.follow(`#deployments a[href="/ui/agents/web-02"]`)
	if got := tb.text("#liveness"); got != "online" {
		t.Errorf("web-02 is %q, want online", got)
	}
	if got := tb.text("#assignments"); !strings.Contains(got, "shop-frontend") || !strings.Contains(got, "api-gateway") {
		t.Errorf("web-02 assignments = %q", got)
	}
	tb.screenshot("agent", true)

	// Certificates: a full first page, a second page, search and labels.
	tb.open(srv.URL + "/ui/certificates")
	if n := tb.count("#certificates tbody tr"); n != dashboard.PageSize {
		t.Errorf("first page has %d rows, want %d", n, dashboard.PageSize)
	}
	tb.screenshot("certificates", false)
	tb.follow("#next")
	if n := tb.count("#certificates tbody tr"); n != 5+bulkCertificates-dashboard.PageSize {
		t.Errorf("second page has %d rows, want %d", n, 5+bulkCertificates-dashboard.PageSize)
	}
	if tb.count("#next") != 0 || tb.count(`a[rel="first"]`) != 1 {
		t.Error("the last page should link to the first and to no next page")
	}
	tb.open(srv.URL + "/ui/certificates")
	tb.do(chromedp.SendKeys(chromedp.CSS(`input[name="labels"]`), "team=shop"))
	tb.follow(`form.filters button[type="submit"]`)
	if got := tb.text("#certificates tbody"); !strings.Contains(got, "api-gateway") || !strings.Contains(got, "shop-frontend") ||
		tb.count("#certificates tbody tr") != 2 {
		t.Errorf("team=shop lists %q", got)
	}
	tb.open(srv.URL + "/ui/certificates?prefix=svc-14")
	if n := tb.count("#certificates tbody tr"); n != 10 {
		t.Errorf("prefix svc-14 lists %d, want 10", n)
	}

	// Agents and revisions.
	tb.open(srv.URL + "/ui/agents")
	if n := tb.count("#agents tbody tr"); n != 4 {
		t.Errorf("agents = %d, want 4", n)
	}
	tb.open(srv.URL + "/ui/revisions")
	if n := tb.count("#revisions > li"); n != 3 {
		t.Errorf("revisions = %d, want 3", n)
	}
	if got := tb.text("#revision-3"); !strings.Contains(got, "invalid") || !strings.Contains(got, "Carol") ||
		!strings.Contains(got, "certs/data.yaml:12:") || !strings.Contains(got, "Rename the database <certificate>") {
		t.Errorf("refused revision = %q", got)
	}
	if got := tb.text("#revision-2"); !strings.Contains(got, "applied") || !strings.Contains(got, "Certificate: +151") ||
		!strings.Contains(got, "main@"+strings.Repeat("b2", 6)) {
		t.Errorf("applied revision = %q", got)
	}
	tb.screenshot("revisions", true)

	if p := tb.problems(); len(p) > 0 {
		t.Errorf("the console reported problems (CSP violations among them):\n%s", strings.Join(p, "\n"))
	}

	// Unknown names get the 404 page.
	for _, path := range []string{"/ui/certificates/no-such-cert", "/ui/agents/no-such-agent", "/ui/nothing-here"} {
		tb.open(srv.URL + path)
		if got := tb.text("h1"); !strings.HasPrefix(got, "404") {
			t.Errorf("%s: h1 = %q, want the 404 page", path, got)
		}
	}
	// The console check sees a violation: an inline script is refused.
	ran := eval[bool](tb, `(() => { const s = document.createElement("script"); s.textContent = "window.inlineRan = true";
		document.body.appendChild(s); return window.inlineRan === true; })()`)
	if ran || !tb.waitConsole("Content Security Policy") {
		t.Errorf("an inline script ran (%v) or its CSP violation was not reported: %q", ran, tb.problems())
	}
}

// TestPagesInABrowserWithoutJavaScript uses the dashboard in chromium with
// JavaScript turned off: the pages show everything, the search form and
// the links work.
func TestPagesInABrowserWithoutJavaScript(t *testing.T) {
	tb := newTab(t, true)
	st := storekit.Open(t)
	fleet(t, st)
	srv := serve(t, st, "", nil)

	tb.open(srv.URL + "/ui/")
	if eval[bool](tb, `document.documentElement.classList.contains("js")`) {
		t.Fatal("the page's script ran: JavaScript is not off")
	}
	if got := tb.text("#total-failing"); got != "2" {
		t.Errorf("failing deployments = %q, want 2", got)
	}
	if got := tb.text("#expiring tbody tr:first-child"); !strings.Contains(got, "in 4d 23h") {
		t.Errorf("without the script the server's relative time shows: %q", got)
	}
	tb.screenshot("overview-nojs", false)

	tb.follow(`nav a[href="/ui/certificates"]`)
	tb.do(chromedp.SendKeys(chromedp.CSS(`input[name="labels"]`), "team=shop"))
	tb.follow(`form.filters button[type="submit"]`)
	if got := tb.location(); got != srv.URL+"/ui/certificates?prefix=&labels=team%3Dshop" {
		t.Errorf("the search led to %s", got)
	}
	if n := tb.count("#certificates tbody tr"); n != 2 {
		t.Errorf("team=shop lists %d, want 2", n)
	}
	tb.follow(`#certificates a[href="/ui/certificates/shop-frontend"]`)
	tb.follow(`#deployments a[href="/ui/agents/web-01"]`)
	if got := tb.text("h1"); !strings.HasPrefix(got, "web-01") {
		t.Errorf("agent page h1 = %q", got)
	}
	if p := tb.problems(); len(p) > 0 {
		t.Errorf("console:\n%s", strings.Join(p, "\n"))
	}
}
