package dashboard_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/certops/certops/dashboard"
	"github.com/certops/certops/testkit/storekit"
)

const token = "s3cret-token"

// noRedirect is a client that shows redirects instead of following them.
func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, url, auth string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestPagesWithoutJavaScript fetches every page as plain HTML, as a browser
// without JavaScript (or curl) gets it: everything is in the markup, every
// page carries the security headers, the search is a plain GET form, and
// what users wrote is escaped.
func TestPagesWithoutJavaScript(t *testing.T) {
	st := storekit.Open(t)
	fleet(t, st)
	srv := serve(t, st, "", firing)
	c := noRedirect()

	resp, _ := get(t, c, srv.URL+"/", "")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET / = %d to %q, want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	pages := map[string][]string{
		"/ui/":                                {`id="total-certificates">155<`, `certs/data.yaml:12: spec.dnsNames[1]: &#34;db..example.com&#34;`, `<svg class="chart"`},
		"/ui/certificates":                    {`href="/ui/certificates/shop-frontend"`, `href="/ui/certificates?after=svc-094"`, `<form class="filters" method="get"`},
		"/ui/certificates?labels=team%3Dshop": {`api-gateway`, `shop-frontend`},
		"/ui/certificates/shop-frontend":      {`data-agent="web-02"`, `5a03`, `not installed yet`},
		"/ui/agents":                          {`href="/ui/agents/edge-01"`},
		"/ui/agents/web-01":                   {`href="/ui/certificates/blog"`, `1.4.0`},
		"/ui/revisions":                       {`Rename the database &lt;certificate&gt;`, `agents.yaml:3: metadata.name: must be a DNS label`},
		"/ui/login":                           {`needs no token`},
	}
	for path, wants := range pages {
		resp, body := get(t, c, srv.URL+path, "")
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", path, resp.StatusCode)
		}
		for _, want := range wants {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s lacks %s", path, want)
			}
		}
		checkHeaders(t, path, resp)
		if strings.Contains(body, "style=") || strings.Contains(body, "<script>") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
			t.Errorf("GET %s has inline styles or scripts, or an external reference", path)
		}
	}
	if strings.Contains(pages["/ui/revisions"][0], "<certificate>") {
		t.Error("unescaped")
	}

	bad := map[string]int{
		"/ui/certificates/nope":        http.StatusNotFound,
		"/ui/agents/nope":              http.StatusNotFound,
		"/ui/nope":                     http.StatusNotFound,
		"/ui/certificates?labels=team": http.StatusBadRequest,
		"/ui/revisions?before=-1":      http.StatusBadRequest,
		"/ui/static/nope.css":          http.StatusNotFound,
	}
	for path, code := range bad {
		resp, body := get(t, c, srv.URL+path, "")
		if resp.StatusCode != code {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, code)
		}
		if code == http.StatusNotFound && strings.HasPrefix(path, "/ui/certificates/") && !strings.Contains(body, "404 · Not found") {
			t.Errorf("GET %s is not the 404 page: %s", path, body)
		}
		if !strings.HasPrefix(path, "/ui/static/") { // the file server's own 404
			checkHeaders(t, path, resp)
		}
	}
	resp, err := c.Post(srv.URL+"/ui/certificates", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/certificates = %d, want 405", resp.StatusCode)
	}
	for _, asset := range []string{"/ui/static/style.css", "/ui/static/app.js"} {
		resp, _ := get(t, c, srv.URL+asset, "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s = %d", asset, resp.StatusCode)
		}
	}
}

func checkHeaders(t *testing.T, path string, resp *http.Response) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": dashboard.ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("GET %s: %s = %q, want %q", path, k, got, v)
		}
	}
}

// TestTokenOverHTTP checks the dashboard's authentication when a token is
// configured: bearer, the login form and its cookie, logout.
func TestTokenOverHTTP(t *testing.T) {
	st := storekit.Open(t)
	fleet(t, st)
	srv := serve(t, st, token, nil)
	c := noRedirect()

	resp, _ := get(t, c, srv.URL+"/ui/certificates?prefix=shop", "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login?next=%2Fui%2Fcertificates%3Fprefix%3Dshop" {
		t.Errorf("no token: %d to %q, want the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := get(t, c, srv.URL+"/ui/", "Bearer wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong bearer token: %d, want 401", resp.StatusCode)
	}
	if resp, _ := get(t, c, srv.URL+"/ui/", "Bearer "+token); resp.StatusCode != http.StatusOK {
		t.Errorf("bearer token: %d, want 200", resp.StatusCode)
	}
	if resp, _ := get(t, c, srv.URL+"/ui/static/style.css", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("the stylesheet needs no token (the login page uses it): %d", resp.StatusCode)
	}

	login := func(tok, next string) *http.Response {
		t.Helper()
		resp, err := c.PostForm(srv.URL+"/ui/login", url.Values{"token": {tok}, "next": {next}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := login("wrong", "/ui/"); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("wrong token: %d with %v, want 401 and no cookie", resp.StatusCode, resp.Cookies())
	}
	resp = login(token, "/ui/agents")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/agents" || len(resp.Cookies()) != 1 {
		t.Fatalf("right token: %d to %q with %v", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies())
	}
	ck := resp.Cookies()[0]
	if ck.Name != dashboard.CookieName || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" || ck.Secure {
		t.Errorf("cookie = %+v; want HttpOnly, SameSite=Strict, Path=/ui/, not Secure over plain HTTP", ck)
	}
	for _, next := range []string{"//evil.example/ui/", "https://evil.example/", "/api/v1/status", `/ui/\evil`} {
		if resp := login(token, next); resp.Header.Get("Location") != "/ui/" {
			t.Errorf("next=%q led to %q, want /ui/", next, resp.Header.Get("Location"))
		}
	}

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL + "/ui/")
	jar.SetCookies(u, []*http.Cookie{ck})
	withCookie := &http.Client{Jar: jar, CheckRedirect: c.CheckRedirect}
	if resp, _ := get(t, withCookie, srv.URL+"/ui/revisions", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("with the cookie: %d, want 200", resp.StatusCode)
	}
	jar.SetCookies(u, []*http.Cookie{{Name: dashboard.CookieName, Value: "d3Jvbmc", Path: "/ui/"}}) // "wrong"
	if resp, _ := get(t, withCookie, srv.URL+"/ui/revisions", ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("with a wrong cookie: %d, want the login page", resp.StatusCode)
	}
	resp, err = c.Post(srv.URL+"/ui/logout", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Errorf("logout: %d with %v, want the cookie cleared", resp.StatusCode, cs)
	}
	// The API keeps its own rule.
	if resp, _ := get(t, c, srv.URL+"/api/v1/status", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API without token: %d", resp.StatusCode)
	}
}

// TestLoginCookieIsSecureOverTLS checks the Secure attribute over TLS.
func TestLoginCookieIsSecureOverTLS(t *testing.T) {
	h := dashboard.New(nil, dashboard.Config{Token: token}, nil)
	srv := httptestTLS(t, h)
	c := srv.Client()
	c.CheckRedirect = noRedirect().CheckRedirect
	resp, err := c.PostForm(srv.URL+"/ui/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("cookie over TLS = %v, want Secure", cs)
	}
}

// TestLoginInABrowser signs in through the login page in chromium.
func TestLoginInABrowser(t *testing.T) {
	tb := newTab(t, false)
	st := storekit.Open(t)
	fleet(t, st)
	srv := serve(t, st, token, nil)

	tb.open(srv.URL + "/ui/agents/web-01")
	if got := tb.location(); !strings.HasPrefix(got, srv.URL+"/ui/login?next=") {
		t.Fatalf("without a token the page led to %s, want the login page", got)
	}
	tb.do(chromedp.SendKeys(chromedp.ID("token"), "not-the-token"))
	tb.follow(`form.login-form button`)
	if got := tb.text(`[role="alert"]`); got != "That token is not the right one." {
		t.Errorf("wrong token: alert = %q", got)
	}
	tb.screenshot("login-refused", false)
	tb.do(chromedp.SendKeys(chromedp.ID("token"), token))
	tb.follow(`form.login-form button`)
	if got := tb.location(); got != srv.URL+"/ui/agents/web-01" {
		t.Errorf("after the login: %s, want the page asked for", got)
	}
	if got := eval[string](tb, "document.cookie"); got != "" {
		t.Errorf("the page can read the cookie (%q): it must be HttpOnly", got)
	}
	tb.open(srv.URL + "/ui/")
	if got := tb.text("#total-agents"); got != "4" {
		t.Errorf("signed in, the overview shows %q agents", got)
	}
	tb.follow(`form.logout button`)
	if got := tb.location(); got != srv.URL+"/ui/login" {
		t.Errorf("after logout: %s", got)
	}
	tb.open(srv.URL + "/ui/")
	if got := tb.location(); !strings.HasPrefix(got, srv.URL+"/ui/login") {
		t.Errorf("after logout the overview led to %s, want the login page", got)
	}
	// The refused login answered 401: the console's only problem.
	for _, p := range tb.problems() {
		if !strings.Contains(p, "401") {
			t.Errorf("console: %s", p)
		}
	}
}
