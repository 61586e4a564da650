package dashboard

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"github.com/certops/certops/bearer"
	"github.com/certops/certops/failure"
)

// CookieName is the cookie that holds the token after a login.
const CookieName = "certops_ui_token"

// maxLoginBody bounds the login form.
const maxLoginBody = 8 << 10

// authorized runs next when the request carries the token (or none is
// configured). A request with a wrong Authorization header gets a 401
// page; a browser without a valid cookie is sent to the login page, which
// brings it back here.
func (d *dashboard) authorized(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.token == "" || d.hasToken(r) {
			next(w, r)
			return
		}
		if r.Header.Get("Authorization") != "" { // a client that sent credentials: no login form for it
			w.Header().Set("WWW-Authenticate", `Bearer realm="certops"`)
			d.errorPage(w, r, failure.New(failure.Unauthorized, "missing or invalid bearer token"))
			return
		}
		http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	}
}

// hasToken reports whether r carries the token as a bearer token or in the
// login cookie, compared in constant time.
func (d *dashboard) hasToken(r *http.Request) bool {
	if got, ok := bearer.Token(r); ok {
		return bearer.Equal(got, d.token)
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(c.Value)
	return err == nil && bearer.Equal(string(got), d.token)
}

type loginView struct {
	Next  string
	Open  bool // no token is configured
	Error string
}

func (d *dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	d.render(w, http.StatusOK, "login", view{Title: "Sign in", Nav: "login", Page: loginView{Next: safeNext(r.URL.Query().Get("next")), Open: d.token == ""}})
}

// login checks the form's token and, when right, keeps it in an HttpOnly,
// SameSite=Strict cookie scoped to /ui/ (Secure over TLS).
func (d *dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		d.render(w, http.StatusBadRequest, "login", view{Title: "Sign in", Nav: "login", Page: loginView{Error: "the form could not be read"}})
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	if d.token == "" {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if !bearer.Equal(r.PostForm.Get("token"), d.token) {
		d.render(w, http.StatusUnauthorized, "login", view{Title: "Sign in", Nav: "login", Page: loginView{Next: next, Error: "That token is not the right one."}})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: base64.RawURLEncoding.EncodeToString([]byte(d.token)),
		Path: "/ui/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout clears the cookie.
func (d *dashboard) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// safeNext is where to go after a login: a dashboard path, never
// another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.Contains(next, `\`) {
		return "/ui/"
	}
	return next
}
