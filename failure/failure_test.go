package failure_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
)

func TestKinds(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   agentproto.Code
		exit   int
	}{
		{nil, 500, agentproto.CodeInternal, 0},
		{errors.New("plain"), 500, agentproto.CodeInternal, 1},
		{failure.New(failure.Internal, "x"), 500, agentproto.CodeInternal, 1},
		{failure.New(failure.Invalid, "x"), 400, agentproto.CodeInvalid, 1},
		{failure.New(failure.NotFound, "x"), 404, agentproto.CodeNotFound, 1},
		{failure.New(failure.Unauthorized, "x"), 401, agentproto.CodeUnauthorized, 1},
		{failure.New(failure.Forbidden, "x"), 403, agentproto.CodeForbidden, 1},
		{failure.New(failure.Conflict, "x"), 409, agentproto.CodeConflict, 1},
		{failure.New(failure.Unavailable, "x"), 503, agentproto.CodeUnavailable, 1},
		{failure.New(failure.Rejected, "x"), 422, agentproto.CodeRejected, 1},
		{failure.New(failure.MethodNotAllowed, "x"), 405, agentproto.CodeMethodNotAllowed, 1},
		{failure.New(failure.TooLarge, "x"), 413, agentproto.CodeTooLarge, 1},
		{failure.New(failure.RateLimited, "x"), 429, agentproto.CodeBackoff, 1},
		{failure.New(failure.Usage, "x"), 400, agentproto.CodeInvalid, 2},
		{spec.ErrorList{{File: "a.yaml", Line: 1, Message: "bad"}}, 400, agentproto.CodeInvalid, 1},
		{fmt.Errorf("context: %w", failure.New(failure.Usage, "x")), 400, agentproto.CodeInvalid, 2},
		{failure.WithCode(failure.New(failure.Rejected, "x"), agentproto.CodeCSRMismatch), 422, agentproto.CodeCSRMismatch, 1},
		{failure.WithCode(failure.New(failure.Rejected, "x"), agentproto.CodeNameNotPermitted), 422, agentproto.CodeNameNotPermitted, 1},
		{failure.Wrap(failure.Conflict, failure.WithCode(failure.New(failure.Rejected, "x"), agentproto.CodeCSRMismatch)), 409, agentproto.CodeConflict, 1},
	} {
		if tc.err != nil {
			if got := failure.HTTPStatus(tc.err); got != tc.status {
				t.Errorf("HTTPStatus(%v) = %d, want %d", tc.err, got, tc.status)
			}
			if got := failure.CodeOf(tc.err); got != tc.code {
				t.Errorf("CodeOf(%v) = %q, want %q", tc.err, got, tc.code)
			}
		}
		if got := failure.ExitCode(tc.err); got != tc.exit {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.exit)
		}
	}
}

func TestWriteHTTP(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		status     int
		body       string
		retryAfter string
	}{
		{"not found", failure.New(failure.NotFound, "no such thing"), 404,
			`{"error":{"code":"not_found","message":"no such thing"}}`, ""},
		{"internal hides its message", fmt.Errorf("query: %w", errors.New("password=hunter2")), 500,
			`{"error":{"code":"internal","message":"internal error"}}`, ""},
		{"specific code and Retry-After", failure.WithRetryAfter(failure.WithCode(
			failure.New(failure.Unavailable, "issuance failed; retry later"), agentproto.CodeIssuerUnavailable), 1500*time.Millisecond), 503,
			`{"error":{"code":"issuer_unavailable","message":"issuance failed; retry later"}}`, "2"},
		{"Retry-After first, then the code", failure.WithCode(failure.WithRetryAfter(
			failure.New(failure.Unavailable, "busy"), 5*time.Second), agentproto.CodeIssuerUnavailable), 503,
			`{"error":{"code":"issuer_unavailable","message":"busy"}}`, "5"},
		{"Retry-After at least a second", failure.WithRetryAfter(failure.New(failure.RateLimited, "wait"), -time.Minute), 429,
			`{"error":{"code":"backoff","message":"wait"}}`, "1"},
		{"wrapped keeps its annotations", fmt.Errorf("issue: %w", failure.WithRetryAfter(failure.New(failure.RateLimited, "wait"), time.Minute)), 429,
			`{"error":{"code":"backoff","message":"issue: wait"}}`, "60"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			failure.WriteHTTP(rec, tc.err)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d", rec.Code, tc.status)
			}
			if got := rec.Body.String(); got != tc.body+"\n" {
				t.Errorf("body %s, want %s", got, tc.body)
			}
			var b agentproto.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
				t.Errorf("body is not an ErrorBody: %v", err)
			}
			h := rec.Header()
			if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" || h.Get("Retry-After") != tc.retryAfter {
				t.Errorf("headers %v, want JSON, no-store and Retry-After %q", h, tc.retryAfter)
			}
		})
	}
}

func TestAnnotationsKeepTheError(t *testing.T) {
	base := failure.New(failure.Rejected, "CSR names differ")
	err := failure.WithRetryAfter(failure.WithCode(base, agentproto.CodeCSRMismatch), time.Minute)
	if err.Error() != "CSR names differ" || failure.KindOf(err) != failure.Rejected {
		t.Errorf("annotated error %q of kind %v, want the message and kind of the original", err, failure.KindOf(err))
	}
	if failure.CodeOf(err) != agentproto.CodeCSRMismatch || failure.RetryAfterOf(err) != time.Minute {
		t.Errorf("code %q, Retry-After %s", failure.CodeOf(err), failure.RetryAfterOf(err))
	}
	if failure.WithCode(nil, agentproto.CodeBackoff) != nil || failure.WithRetryAfter(nil, time.Second) != nil || failure.Wrap(failure.Invalid, nil) != nil {
		t.Error("a nil error did not stay nil")
	}
	if plain := failure.WithCode(errors.New("x"), agentproto.CodeCSRMismatch); failure.KindOf(plain) != failure.Internal || failure.HTTPStatus(plain) != http.StatusInternalServerError {
		t.Errorf("a code on a plain error changed its kind to %v", failure.KindOf(plain))
	}
}

// TestFromAnswer reads back what WriteHTTP writes, kind by kind, and sorts
// answers that are not certops' by their status.
func TestFromAnswer(t *testing.T) {
	for _, k := range []failure.Kind{failure.Internal, failure.Invalid, failure.NotFound, failure.Unauthorized,
		failure.Forbidden, failure.Conflict, failure.Unavailable, failure.Rejected, failure.MethodNotAllowed,
		failure.TooLarge, failure.RateLimited} {
		rec := httptest.NewRecorder()
		failure.WriteHTTP(rec, failure.New(k, "the message"))
		var body agentproto.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		err := failure.FromAnswer(rec.Code, body)
		if got := failure.KindOf(err); got != k {
			t.Errorf("kind %v: read back as %v", k, got)
		}
		if k != failure.Internal && err.Error() != "the message" {
			t.Errorf("kind %v: message %q", k, err.Error())
		}
	}
	for _, tc := range []struct {
		status int
		body   agentproto.ErrorBody
		kind   failure.Kind
		code   agentproto.Code
		msg    string
	}{
		{422, agentproto.ErrorBody{Error: agentproto.ErrorDetail{Code: agentproto.CodeCSRMismatch, Message: "m"}}, failure.Rejected, agentproto.CodeCSRMismatch, "m"},
		{502, agentproto.ErrorBody{}, failure.Unavailable, agentproto.CodeUnavailable, "502 Bad Gateway"},
		{418, agentproto.ErrorBody{}, failure.Internal, agentproto.CodeInternal, "418 I'm a teapot"},
		{401, agentproto.ErrorBody{}, failure.Unauthorized, agentproto.CodeUnauthorized, "401 Unauthorized"},
	} {
		err := failure.FromAnswer(tc.status, tc.body)
		if failure.KindOf(err) != tc.kind || failure.CodeOf(err) != tc.code || err.Error() != tc.msg {
			t.Errorf("%d %+v: got %v %s %q, want %v %s %q", tc.status, tc.body, failure.KindOf(err), failure.CodeOf(err), err, tc.kind, tc.code, tc.msg)
		}
	}
}
