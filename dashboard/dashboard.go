// Package dashboard is the read-only web dashboard that `certops serve`
// mounts at /ui/: server-rendered HTML pages (overview, certificates, a
// certificate, agents, an agent, revisions) with their CSS and a small
// script embedded in the binary. Every page works without JavaScript; the
// script only adds comfort (local times, a search shortcut). Pages carry a
// strict Content-Security-Policy and load nothing from elsewhere.
//
// It reads through Source, which *httpapi.Service implements, so the pages
// show exactly what the read API answers. When a token is configured, a
// request needs it, as `Authorization: Bearer` or as the cookie that the
// login page sets.
package dashboard

import (
	"bytes"
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/failure"
)

// Source is what the dashboard reads: the read API's answers.
// *httpapi.Service implements it.
type Source interface {
	Status(ctx context.Context) (apiv1.Status, error)
	Overview(ctx context.Context, q apiv1.OverviewQuery) (apiv1.Overview, error)
	Certificates(ctx context.Context, q apiv1.ListQuery) (apiv1.CertificateList, error)
	Certificate(ctx context.Context, name string) (apiv1.Certificate, error)
	CertificateVersions(ctx context.Context, name string, limit int) ([]apiv1.CertificateVersion, error)
	Agents(ctx context.Context, q apiv1.ListQuery) (apiv1.AgentList, error)
	Agent(ctx context.Context, name string) (apiv1.Agent, error)
	Revisions(ctx context.Context, limit int, before int64) (apiv1.RevisionList, error)
}

// Config configures the dashboard.
type Config struct {
	// Token, when set, is required (the API's bearer token); empty leaves
	// the dashboard open, like the API.
	Token string
}

// ContentSecurityPolicy is sent with every response: only the
// dashboard's own stylesheet, script and images (and data: images).
const ContentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// PageSize is the number of rows of a list page.
const PageSize = 100

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

type dashboard struct {
	src   Source
	token string
	log   *slog.Logger
	pages map[string]*template.Template
}

// New returns the dashboard's handler, serving every path under /ui/.
func New(src Source, cfg Config, logger *slog.Logger) http.Handler {
	d := &dashboard{src: src, token: cfg.Token, log: logger, pages: parsePages()}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded directory is there: a build error
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", staticFiles(http.FileServerFS(static))))
	mux.HandleFunc("GET /ui/login", d.loginPage)
	mux.HandleFunc("POST /ui/login", d.login)
	mux.HandleFunc("POST /ui/logout", d.logout)
	mux.HandleFunc("GET /ui/{$}", d.authorized(d.overview))
	mux.HandleFunc("GET /ui/certificates", d.authorized(d.certificates))
	mux.HandleFunc("GET /ui/certificates/{name}", d.authorized(d.certificate))
	mux.HandleFunc("GET /ui/agents", d.authorized(d.agents))
	mux.HandleFunc("GET /ui/agents/{name}", d.authorized(d.agent))
	mux.HandleFunc("GET /ui/revisions", d.authorized(d.revisions))
	mux.HandleFunc("/ui/", d.authorized(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			d.errorPage(w, r, failure.New(failure.MethodNotAllowed, r.Method+" is not allowed here; the dashboard is read-only"))
			return
		}
		d.errorPage(w, r, failure.New(failure.NotFound, "there is no page at "+r.URL.Path))
	}))
	return secureHeaders(mux)
}

// secureHeaders sets the headers every response carries.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// staticFiles lets the browser keep the stylesheet and script, asking
// again each time (they change with the binary).
func staticFiles(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// view is what every page template gets: the page's own data and the
// layout's.
type view struct {
	Title   string
	Nav     string // the navigation entry to highlight
	Auth    bool   // a token is configured: show the logout button
	Now     time.Time
	Error   string
	Page    any
	Status  int
	Message string
}

// render writes the page template name with data, with status code.
// The page is rendered into memory first, so a template error is a clean
// 500 rather than half a page.
func (d *dashboard) render(w http.ResponseWriter, code int, name string, v view) {
	v.Auth = d.token != ""
	if v.Now.IsZero() {
		v.Now = time.Now()
	}
	var buf bytes.Buffer
	if err := d.pages[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		d.log.Error("dashboard: render", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// errorPage answers err as a page: its status from its failure kind, its
// message unless the failure is internal (then logged, not shown).
func (d *dashboard) errorPage(w http.ResponseWriter, r *http.Request, err error) {
	code := failure.HTTPStatus(err)
	msg := err.Error()
	title := http.StatusText(code)
	if failure.KindOf(err) == failure.Internal {
		d.log.Error("dashboard: page failed", "path", r.URL.Path, "err", err)
		code, title, msg = http.StatusServiceUnavailable, "Temporarily unavailable", "the status is temporarily unavailable; try again shortly"
	}
	if code == http.StatusNotFound {
		title = "Not found"
	}
	d.render(w, code, "error", view{Title: title, Status: code, Message: msg})
}
