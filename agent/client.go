package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/secret"
)

// client speaks agentproto to the reconciler.
type client struct {
	base      *url.URL
	hc        *http.Client
	tokenFile string
	userAgent string
}

const (
	requestTimeout   = 60 * time.Second
	maxResponseBytes = 32 << 20
)

// errUnauthorized is the code unauthorized: the token is missing, unknown
// or revoked.
var errUnauthorized = errors.New("token rejected (401)")

// serverError is a non-2xx answer: its status and the code and message of
// its ErrorBody.
type serverError struct {
	Status     int
	Code       agentproto.Code // as sent; see code
	Message    string
	RetryAfter time.Duration
}

func (e *serverError) Error() string {
	msg := fmt.Sprintf("server answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		msg += ": " + string(e.Code)
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

func (e *serverError) Is(target error) bool {
	return target == errUnauthorized && e.code() == agentproto.CodeUnauthorized
}

// code is the code the agent acts on: the answer's when it is one of the
// protocol's, otherwise (an answer that is not certops', say a proxy's 502)
// one read from the status, as package agentproto documents.
func (e *serverError) code() agentproto.Code {
	switch e.Code {
	case agentproto.CodeInvalid, agentproto.CodeUnauthorized, agentproto.CodeForbidden, agentproto.CodeNotFound,
		agentproto.CodeMethodNotAllowed, agentproto.CodeConflict, agentproto.CodeTooLarge, agentproto.CodeRejected,
		agentproto.CodeCSRMismatch, agentproto.CodeNameNotPermitted, agentproto.CodeBackoff, agentproto.CodeInternal, agentproto.CodeUnavailable,
		agentproto.CodeIssuerUnavailable, agentproto.CodeSuspended, agentproto.CodeWaiting:
		return e.Code
	}
	switch {
	case e.Status == http.StatusUnauthorized:
		return agentproto.CodeUnauthorized
	case e.Status == http.StatusConflict:
		return agentproto.CodeConflict
	case e.Status == http.StatusTooManyRequests:
		return agentproto.CodeBackoff
	case e.Status == http.StatusServiceUnavailable:
		return agentproto.CodeUnavailable
	case e.Status >= 500:
		return agentproto.CodeInternal
	}
	return agentproto.CodeInvalid
}

// codeOf is the code of a serverError in err's chain, or "".
func codeOf(err error) agentproto.Code {
	var se *serverError
	if errors.As(err, &se) {
		return se.code()
	}
	return ""
}

// retryAfterOf is the Retry-After of a serverError in err's chain, or 0.
func retryAfterOf(err error) time.Duration {
	var se *serverError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}

// isServerTrouble reports whether err means the server cannot serve the
// agent right now (unreachable, a garbled answer, or the codes
// unauthorized, backoff, internal, unavailable, issuer_unavailable): the
// pass stops and Run backs off. Other codes (invalid, not_found, conflict,
// csr_mismatch, …) are about one request, and host-side failures are not
// about the server at all. (The issue route sorts out the codes that are
// about one certificate first: see issueAndDeploy.)
func isServerTrouble(err error) bool {
	var te *transportError
	if errors.As(err, &te) {
		return true
	}
	switch codeOf(err) {
	case agentproto.CodeUnauthorized, agentproto.CodeBackoff, agentproto.CodeInternal,
		agentproto.CodeUnavailable, agentproto.CodeIssuerUnavailable:
		return true
	}
	return false
}

// transportError is a request that got no usable answer.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// token reads the bearer token. It is read on every request so a rotated
// token file takes effect without a restart. It is never logged.
func (c *client) token() (string, error) {
	tok, err := secret.ReadFile(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("token file %s: the token must be one line without spaces", c.tokenFile)
	}
	return tok, nil
}

// assignments polls with If-None-Match; it returns nil (and etag) on 304.
func (c *client) assignments(ctx context.Context, etag string) (*agentproto.Assignments, string, error) {
	h := http.Header{}
	if etag != "" {
		h.Set("If-None-Match", etag)
	}
	var out agentproto.Assignments
	resp, err := c.do(ctx, http.MethodGet, agentproto.PathAssignments, h, nil, &out)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode == http.StatusNotModified {
		return nil, etag, nil
	}
	return &out, resp.Header.Get("ETag"), nil
}

func (c *client) heartbeat(ctx context.Context, hb agentproto.Heartbeat) error {
	_, err := c.do(ctx, http.MethodPost, agentproto.PathHeartbeat, nil, hb, nil)
	return err
}

func (c *client) report(ctx context.Context, r agentproto.Report) error {
	_, err := c.do(ctx, http.MethodPost, agentproto.PathReports, nil, r, nil)
	return err
}

// served reports a round of served checks.
func (c *client) served(ctx context.Context, r agentproto.ServedReport) error {
	_, err := c.do(ctx, http.MethodPost, agentproto.PathServed, nil, r, nil)
	return err
}

// errIssuePending is a 202 to an issue request: the server is ordering
// the certificate (ACME); it appears as the assignment's Current.
var errIssuePending = errors.New("the server is ordering the certificate")

func (c *client) issue(ctx context.Context, name string, req agentproto.IssueRequest) (*agentproto.Issued, error) {
	path := strings.Replace(agentproto.PathIssue, "{name}", url.PathEscape(name), 1)
	var out agentproto.Issued
	resp, err := c.do(ctx, http.MethodPost, path, nil, req, &out)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusAccepted {
		return nil, errIssuePending
	}
	return &out, nil
}

// challengeReady confirms an http-01 file is in place.
func (c *client) challengeReady(ctx context.Context, token string) error {
	path := strings.Replace(agentproto.PathChallengeReady, "{token}", url.PathEscape(token), 1)
	_, err := c.do(ctx, http.MethodPost, path, nil, nil, nil)
	return err
}

// do sends one request; in (if any) is the JSON body, out (if any) receives
// a 200 JSON body. Non-2xx, non-304 answers are *serverError.
func (c *client) do(ctx context.Context, method, path string, h http.Header, in, out any) (*http.Response, error) {
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		if len(b) > agentproto.MaxBodyBytes {
			return nil, fmt.Errorf("%s %s: request body of %d bytes exceeds the protocol limit", method, path, len(b))
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base.JoinPath(path).String(), body)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &transportError{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, &transportError{fmt.Errorf("%s %s: read answer: %w", method, path, err)}
	}
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return resp, nil
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if out != nil && resp.StatusCode != http.StatusNoContent {
			if err := json.Unmarshal(data, out); err != nil {
				return nil, &transportError{fmt.Errorf("%s %s: malformed answer: %w", method, path, err)}
			}
		}
		return resp, nil
	}
	se := &serverError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var eb agentproto.ErrorBody
	if json.Unmarshal(data, &eb) == nil {
		se.Code, se.Message = eb.Error.Code, eb.Error.Message
	}
	return nil, fmt.Errorf("%s %s: %w", method, path, se)
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or
// malformed. Values are capped at an hour.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), time.Hour)
}
