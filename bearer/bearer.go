// Package bearer is the one rule for "Authorization: Bearer <token>"
// shared by the API (/api/, /metrics) and the agent routes: the scheme is
// case-insensitive (RFC 9110 §11.1), one or more spaces separate it from
// the token (RFC 6750 §2.1), and tokens are compared in constant time over
// fixed-length SHA-256 hashes so that neither their content nor their
// length leaks through timing.
package bearer

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Token returns the bearer token of r's Authorization header, and false
// when there is none (no header, another scheme, or an empty token).
func Token(r *http.Request) (string, bool) {
	return Parse(r.Header.Get("Authorization"))
}

// Parse returns the token of an Authorization header value.
func Parse(header string) (string, bool) {
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token := strings.TrimLeft(rest, " ")
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// Equal reports whether got equals want, in time independent of both
// their contents and their lengths.
func Equal(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
