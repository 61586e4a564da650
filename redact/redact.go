// Package redact removes credentials from URLs before they reach a log
// line, an error or a status message: the userinfo (a password, or a user
// name that may be a token) and the values of query parameters that carry
// secrets (token, access_token, private_token, password, ...). The rule is
// spec's (spec.RedactURL), which the validation messages follow too.
package redact

import "github.com/certops/certops/spec"

// Mask replaces every secret that is removed.
const Mask = spec.RedactMask

// URL returns raw with its credentials masked (see spec.RedactURL).
func URL(raw string) string { return spec.RedactURL(raw) }

// Text returns s with every URL in it passed through URL.
func Text(s string) string { return spec.RedactText(s) }

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
