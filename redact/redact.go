// Package redact removes credentials from URLs before they reach a log
// line, an error or a status message: the userinfo (a password, or a user
// name that may be a token) and the values of query parameters that carry
// secrets (token, access_token, private_token, password, ...).
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces every secret that is removed.
const Mask = "REDACTED"

// secretParam reports whether a query parameter carries a secret.
func secretParam(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"token", "password", "passwd", "pwd", "secret", "key", "auth", "credential", "signature", "sig"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// URL returns raw with its credentials masked. A user name without a
// password is kept for ssh (git@host) and masked otherwise: over HTTP it is
// often a token. Text that does not parse as a URL with a scheme is
// returned as is, except that a userinfo before an "@" is masked.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return maskUnparsed(raw)
	}
	if u.User != nil {
		_, hasPass := u.User.Password()
		if !hasPass && (u.Scheme == "ssh" || strings.HasPrefix(u.Scheme, "git+ssh") || strings.HasSuffix(u.Scheme, "+ssh")) {
			u.User = url.User(u.User.Username())
		} else if hasPass && u.Scheme == "ssh" {
			u.User = url.UserPassword(u.User.Username(), Mask)
		} else {
			u.User = url.User(Mask)
		}
	}
	if u.RawQuery != "" {
		u.RawQuery = maskQuery(u.RawQuery)
	}
	if u.Fragment != "" && strings.Contains(u.Fragment, "=") {
		u.Fragment = Mask
		u.RawFragment = ""
	}
	return u.String()
}

// maskQuery masks the values of secret parameters, keeping the order and
// the encoding of the others.
func maskQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, p := range parts {
		name, _, hasValue := strings.Cut(p, "=")
		if dec, err := url.QueryUnescape(name); err == nil {
			name = dec
		}
		if hasValue && secretParam(name) {
			parts[i] = p[:strings.IndexByte(p, '=')+1] + Mask
		}
	}
	return strings.Join(parts, "&")
}

// maskUnparsed masks what looks like userinfo in text that is not a URL.
func maskUnparsed(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.LastIndexByte(rest, '@'); at >= 0 && !strings.ContainsAny(rest[:at], "/?#") {
			return s[:i+3] + Mask + "@" + rest[at+1:]
		}
	}
	return s
}

// urlPattern finds URLs with a scheme in free text, up to a space, a quote
// or an angle bracket.
var urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>` + "`" + `]+`)

// Text returns s with every URL in it passed through URL.
func Text(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlPattern.ReplaceAllStringFunc(s, URL)
}

// Error wraps err so that its message is passed through Text; errors.Is and
// errors.As still see err. A nil err stays nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*redacted); ok {
		return err
	}
	return &redacted{err: err}
}

type redacted struct{ err error }

func (e *redacted) Error() string { return Text(e.err.Error()) }
func (e *redacted) Unwrap() error { return e.err }
