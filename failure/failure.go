// Package failure sorts errors into kinds and is the one place that maps a
// kind to an HTTP status, a wire code (agentproto's) and a process exit
// code, and the one writer of JSON error answers (WriteHTTP) for every
// certops server.
package failure

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/spec"
)

// Kind is the class of an error, as the user should see it.
type Kind int

// The kinds of error.
const (
	Internal         Kind = iota // a bug or an unexpected fault
	Invalid                      // bad input: the request or a revision
	NotFound                     // the named thing does not exist
	Unauthorized                 // missing or wrong credentials
	Forbidden                    // credentials fine, access not allowed
	Conflict                     // refused because of the current state (e.g. an outdated spec, the prune guard)
	Unavailable                  // a dependency is down; retry later
	Rejected                     // well-formed but refused, e.g. a CSR that does not match its certificate
	MethodNotAllowed             // the HTTP method is not served on this path
	TooLarge                     // the request body is over the limit
	RateLimited                  // asked too soon: wait (Retry-After) before asking again
	Usage                        // bad command-line usage: unknown command or flag, missing or bad flag value
)

// kinds is the one table: each kind's HTTP status, default wire code and
// process exit code.
var kinds = [...]struct {
	status int
	code   agentproto.Code
	exit   int
}{
	Internal:         {http.StatusInternalServerError, agentproto.CodeInternal, 1},
	Invalid:          {http.StatusBadRequest, agentproto.CodeInvalid, 1},
	NotFound:         {http.StatusNotFound, agentproto.CodeNotFound, 1},
	Unauthorized:     {http.StatusUnauthorized, agentproto.CodeUnauthorized, 1},
	Forbidden:        {http.StatusForbidden, agentproto.CodeForbidden, 1},
	Conflict:         {http.StatusConflict, agentproto.CodeConflict, 1},
	Unavailable:      {http.StatusServiceUnavailable, agentproto.CodeUnavailable, 1},
	Rejected:         {http.StatusUnprocessableEntity, agentproto.CodeRejected, 1},
	MethodNotAllowed: {http.StatusMethodNotAllowed, agentproto.CodeMethodNotAllowed, 1},
	TooLarge:         {http.StatusRequestEntityTooLarge, agentproto.CodeTooLarge, 1},
	RateLimited:      {http.StatusTooManyRequests, agentproto.CodeBackoff, 1},
	Usage:            {http.StatusBadRequest, agentproto.CodeInvalid, 2},
}

func (k Kind) valid() bool { return k >= 0 && int(k) < len(kinds) }

// String is the kind's default wire code.
func (k Kind) String() string { return string(k.Code()) }

// Code is the kind's default wire code.
func (k Kind) Code() agentproto.Code {
	if !k.valid() {
		k = Internal
	}
	return kinds[k].code
}

// Error is an error with a kind and, optionally, a wire code more specific
// than the kind's default (Rejected with csr_mismatch) and how long the
// client should wait before retrying (Retry-After).
type Error struct {
	Kind       Kind
	Code       agentproto.Code // "" for the kind's default
	RetryAfter time.Duration   // 0 for none
	Err        error
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

// WithCode gives err (of its kind, see KindOf) the wire code c instead of
// the kind's default; a nil err stays nil.
func WithCode(err error, c agentproto.Code) error {
	return annotate(err, func(e *Error) { e.Code = c })
}

// WithRetryAfter asks the client to wait d, but at least a second, before
// retrying (Retry-After, in whole seconds rounded up); a nil err stays nil.
func WithRetryAfter(err error, d time.Duration) error {
	return annotate(err, func(e *Error) { e.RetryAfter = max(d, time.Second) })
}

// annotate returns err as an *Error with the kind, code and Retry-After it
// has so far, changed by set.
func annotate(err error, set func(*Error)) error {
	if err == nil {
		return nil
	}
	e := &Error{Kind: KindOf(err), Code: CodeOf(err), RetryAfter: RetryAfterOf(err), Err: err}
	if fe, ok := err.(*Error); ok {
		e.Err = fe.Err // replace it rather than nest it
	}
	set(e)
	return e
}

// KindOf returns the kind of err: the outermost *Error's kind, Invalid for a
// spec.ErrorList, Internal otherwise.
func KindOf(err error) Kind {
	var fe *Error
	if errors.As(err, &fe) && fe.Kind.valid() {
		return fe.Kind
	}
	var el spec.ErrorList
	if errors.As(err, &el) {
		return Invalid
	}
	return Internal
}

// CodeOf returns the wire code of err: the outermost *Error's code, or its
// kind's default.
func CodeOf(err error) agentproto.Code {
	var fe *Error
	if errors.As(err, &fe) && fe.Code != "" {
		return fe.Code
	}
	return KindOf(err).Code()
}

// RetryAfterOf returns the Retry-After of the outermost *Error in err's
// chain, or 0.
func RetryAfterOf(err error) time.Duration {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.RetryAfter
	}
	return 0
}

// HTTPStatus maps err's kind to an HTTP status code.
func HTTPStatus(err error) int { return kinds[KindOf(err)].status }

// ExitCode maps err to a process exit code: 0 for nil, 2 for bad usage, 1
// for every other error. Commands with richer conventions (plan's "2 =
// changes") return those codes for outcomes that are not errors.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	return kinds[KindOf(err)].exit
}

// WriteHTTP answers a request with err: its status, an
// agentproto.ErrorBody with its code and message, Content-Type
// application/json, Cache-Control no-store and, when err carries one,
// Retry-After. The message of an Internal error is never sent: it is
// "internal error". Headers such as Allow or WWW-Authenticate are the
// caller's, set before.
func WriteHTTP(w http.ResponseWriter, err error) {
	if err == nil {
		err = errors.New("failure.WriteHTTP: nil error")
	}
	var body agentproto.ErrorBody
	body.Error.Code, body.Error.Message = CodeOf(err), err.Error()
	if KindOf(err) == Internal {
		body.Error.Message = "internal error"
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if d := RetryAfterOf(err); d > 0 {
		h.Set("Retry-After", strconv.FormatInt(max(int64(math.Ceil(d.Seconds())), 1), 10))
	}
	w.WriteHeader(HTTPStatus(err))
	_ = json.NewEncoder(w).Encode(body)
}

// FromAnswer is the error a client makes of a server's error answer: the
// kind whose default wire code the body carries, or, for a code that is no
// kind's default (csr_mismatch) or an answer that is not certops' (a
// proxy's 502: Unavailable), the kind of the HTTP status; the body's code is kept and
// its message is the error's. An empty message reads as the status text.
func FromAnswer(status int, body agentproto.ErrorBody) error {
	kind, found := Internal, false
	for k, row := range kinds {
		if Kind(k) != Usage && body.Error.Code != "" && row.code == body.Error.Code {
			kind, found = Kind(k), true
			break
		}
	}
	if !found && (status == http.StatusBadGateway || status == http.StatusGatewayTimeout) {
		kind, found = Unavailable, true // a proxy in front of an unreachable server
	}
	if !found {
		for k, row := range kinds {
			if Kind(k) != Usage && row.status == status {
				kind = Kind(k)
				break
			}
		}
	}
	msg := body.Error.Message
	if msg == "" {
		msg = strconv.Itoa(status) + " " + http.StatusText(status)
	}
	return &Error{Kind: kind, Code: body.Error.Code, Err: errors.New(msg)}
}
