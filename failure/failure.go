// Package failure sorts errors into kinds and is the one place that maps a
// kind to an HTTP status code and a process exit code.
package failure

import (
	"errors"
	"net/http"

	"github.com/certops/certops/spec"
)

// Kind is the class of an error, as the user should see it.
type Kind int

// The kinds of error.
const (
	Internal         Kind = iota // a bug or an unexpected fault
	Invalid                      // bad input: the request, a flag, or a revision
	NotFound                     // the named thing does not exist
	Unauthorized                 // missing or wrong credentials
	Forbidden                    // credentials fine, access not allowed
	Conflict                     // refused because of the current state (e.g. prune guard)
	Unavailable                  // a dependency is down; retry later
	Rejected                     // well-formed but refused, e.g. a CSR that does not match its certificate
	MethodNotAllowed             // the HTTP method is not served on this path
)

// String is the stable, machine-readable code of the kind, used in JSON errors.
func (k Kind) String() string {
	switch k {
	case Invalid:
		return "invalid"
	case NotFound:
		return "not_found"
	case Unauthorized:
		return "unauthorized"
	case Forbidden:
		return "forbidden"
	case Conflict:
		return "conflict"
	case Unavailable:
		return "unavailable"
	case Rejected:
		return "rejected"
	case MethodNotAllowed:
		return "method_not_allowed"
	default:
		return "internal"
	}
}

// Error is an error with a kind.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// New returns an error of kind k with message msg.
func New(k Kind, msg string) error { return &Error{Kind: k, Err: errors.New(msg)} }

// Wrap marks err as being of kind k; a nil err stays nil.
func Wrap(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Err: err}
}

// KindOf returns the kind of err: the outermost *Error's kind, Invalid for a
// spec.ErrorList, Internal otherwise.
func KindOf(err error) Kind {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	var el spec.ErrorList
	if errors.As(err, &el) {
		return Invalid
	}
	return Internal
}

// HTTPStatus maps err's kind to an HTTP status code.
func HTTPStatus(err error) int {
	switch KindOf(err) {
	case Invalid:
		return http.StatusBadRequest
	case NotFound:
		return http.StatusNotFound
	case Unauthorized:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	case Conflict:
		return http.StatusConflict
	case Unavailable:
		return http.StatusServiceUnavailable
	case Rejected:
		return http.StatusUnprocessableEntity
	case MethodNotAllowed:
		return http.StatusMethodNotAllowed
	default:
		return http.StatusInternalServerError
	}
}

// ExitCode maps err to a process exit code: 0 for nil, 1 for every error.
// Commands with richer conventions (plan's "2 = changes") return those codes
// for outcomes that are not errors.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	return 1
}
