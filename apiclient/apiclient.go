// Package apiclient is a client of the reconciler's read API (/api/v1/)
// and of POST /hooks/reconcile, typed with package apiv1's wire types: the
// operator CLI (certops status, get, describe, reconcile) talks through it.
// Error answers (agentproto.ErrorBody) become errors of package failure's
// kinds, and a server that cannot be reached is a failure.Unavailable
// error saying so. It links no server code and no database driver.
package apiclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/redact"
	"github.com/certops/certops/state"
)

// Config says where the server is and how to talk to it.
type Config struct {
	// Server is the reconciler's base URL, e.g. https://certops.example.com.
	Server string
	// Token, when set, is sent as Authorization: Bearer.
	Token string
	// CAFile, when set, holds the PEM CAs trusted for the server's TLS
	// certificate instead of the system pool.
	CAFile string
	// Timeout bounds each request; DefaultTimeout when zero.
	Timeout time.Duration
	// HTTPClient overrides the client built from CAFile and Timeout.
	HTTPClient *http.Client
	// UserAgent is sent with every request.
	UserAgent string
}

// DefaultTimeout bounds one request.
const DefaultTimeout = 30 * time.Second

// maxResponseBytes bounds what one answer may hold.
const maxResponseBytes = 64 << 20

// Client talks to one server. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	hc        *http.Client
	token     string
	userAgent string
}

// New checks cfg and returns a client; a bad Server URL or CA file is a
// failure.Invalid error.
func New(cfg Config) (*Client, error) {
	base, err := url.Parse(cfg.Server)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, failure.New(failure.Invalid, fmt.Sprintf("server %q: want an http:// or https:// URL", redact.URL(cfg.Server)))
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pool, err := pki.LoadCertPool(cfg.CAFile)
			if err != nil {
				return nil, failure.Wrap(failure.Invalid, fmt.Errorf("CA file: %w", err))
			}
			tr.TLSClientConfig.RootCAs = pool
		}
		timeout := cfg.Timeout
		if timeout <= 0 {
			timeout = DefaultTimeout
		}
		hc = &http.Client{Transport: tr, Timeout: timeout}
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = "certops-apiclient"
	}
	return &Client{base: base, hc: hc, token: cfg.Token, userAgent: ua}, nil
}

// Server is the server's base URL, credentials masked.
func (c *Client) Server() string { return redact.URL(c.base.String()) }

// Status is GET /api/v1/status.
func (c *Client) Status(ctx context.Context) (apiv1.Status, error) {
	var st apiv1.Status
	return st, c.do(ctx, http.MethodGet, "/api/v1/status", nil, &st)
}

// Certificates is one page of GET /api/v1/certificates.
func (c *Client) Certificates(ctx context.Context, q apiv1.ListQuery) (apiv1.CertificateList, error) {
	var l apiv1.CertificateList
	return l, c.do(ctx, http.MethodGet, "/api/v1/certificates", listQuery(q), &l)
}

// Agents is one page of GET /api/v1/agents.
func (c *Client) Agents(ctx context.Context, q apiv1.ListQuery) (apiv1.AgentList, error) {
	var l apiv1.AgentList
	return l, c.do(ctx, http.MethodGet, "/api/v1/agents", listQuery(q), &l)
}

// Certificate is GET /api/v1/certificates/{name}; an unknown name is a
// failure.NotFound error.
func (c *Client) Certificate(ctx context.Context, name string) (apiv1.Certificate, error) {
	var v apiv1.Certificate
	return v, c.do(ctx, http.MethodGet, "/api/v1/certificates/"+url.PathEscape(name), nil, &v)
}

// Agent is GET /api/v1/agents/{name}; an unknown name is a
// failure.NotFound error.
func (c *Client) Agent(ctx context.Context, name string) (apiv1.Agent, error) {
	var v apiv1.Agent
	return v, c.do(ctx, http.MethodGet, "/api/v1/agents/"+url.PathEscape(name), nil, &v)
}

// Revisions is one page of GET /api/v1/revisions, newest first: at most
// limit records (the server's default when 0) older than the record id
// before (0: from the newest).
func (c *Client) Revisions(ctx context.Context, limit int, before int64) (apiv1.RevisionList, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	var l apiv1.RevisionList
	return l, c.do(ctx, http.MethodGet, "/api/v1/revisions", q, &l)
}

// Reconcile is POST /hooks/reconcile: it asks the leader to fetch now.
func (c *Client) Reconcile(ctx context.Context) (apiv1.ReconcileRequest, error) {
	var v apiv1.ReconcileRequest
	return v, c.do(ctx, http.MethodPost, "/hooks/reconcile", nil, &v)
}

// AllCertificates pages through GET /api/v1/certificates with q's filters
// from q.After on, until the last page or max items (0: no maximum).
func (c *Client) AllCertificates(ctx context.Context, q apiv1.ListQuery, max int) ([]apiv1.CertificateSummary, error) {
	return all(ctx, q, max, func(ctx context.Context, q apiv1.ListQuery) ([]apiv1.CertificateSummary, string, error) {
		l, err := c.Certificates(ctx, q)
		return l.Items, l.Next, err
	})
}

// AllAgents pages through GET /api/v1/agents as AllCertificates does.
func (c *Client) AllAgents(ctx context.Context, q apiv1.ListQuery, max int) ([]apiv1.AgentSummary, error) {
	return all(ctx, q, max, func(ctx context.Context, q apiv1.ListQuery) ([]apiv1.AgentSummary, string, error) {
		l, err := c.Agents(ctx, q)
		return l.Items, l.Next, err
	})
}

// AllRevisions pages backwards through GET /api/v1/revisions until the
// oldest record or max records (0: no maximum).
func (c *Client) AllRevisions(ctx context.Context, max int) (apiv1.RevisionList, error) {
	out := apiv1.RevisionList{Items: []state.RevisionRecord{}}
	var before int64
	for {
		limit := apiv1.MaxLimit
		if max > 0 {
			limit = min(limit, max-len(out.Items))
		}
		page, err := c.Revisions(ctx, limit, before)
		if err != nil {
			return apiv1.RevisionList{}, err
		}
		out.Items = append(out.Items, page.Items...)
		if max > 0 && len(out.Items) >= max {
			out.Items = out.Items[:max]
			return out, nil
		}
		if len(page.Items) == 0 {
			return out, nil
		}
		last := page.Items[len(page.Items)-1].ID
		if last <= 1 || (before > 0 && last >= before) {
			return out, nil // the oldest record, or a server that does not page
		}
		before = last
	}
}

// all pages through a name-ordered list: each page's Next is the After of
// the following one.
func all[T any](ctx context.Context, q apiv1.ListQuery, max int, page func(context.Context, apiv1.ListQuery) ([]T, string, error)) ([]T, error) {
	out := []T{}
	for {
		q.Limit = apiv1.MaxLimit
		if max > 0 {
			q.Limit = min(q.Limit, max-len(out))
		}
		items, next, err := page(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if max > 0 && len(out) >= max {
			return out[:max], nil
		}
		if next == "" || next == q.After {
			return out, nil
		}
		q.After = next
	}
}

func listQuery(q apiv1.ListQuery) url.Values {
	v := url.Values{}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	if q.Prefix != "" {
		v.Set("prefix", q.Prefix)
	}
	for k, val := range q.Labels {
		v.Add("label", k+"="+val)
	}
	return v
}

// do sends one request and decodes a 2xx answer into out; any other answer
// is a failure error of the kind its code says.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	u := *c.base
	u.Path += path
	u.RawPath = ""
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return failure.Wrap(failure.Invalid, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return failure.Wrap(failure.Unavailable, &UnreachableError{Server: c.Server(), Err: cause(err)})
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return failure.Wrap(failure.Unavailable, fmt.Errorf("%s %s: reading the answer: %w", method, path, err))
	}
	if len(body) > maxResponseBytes {
		return failure.New(failure.TooLarge, fmt.Sprintf("%s %s: the answer is over %d bytes", method, path, maxResponseBytes))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var eb agentproto.ErrorBody
		_ = json.Unmarshal(body, &eb) // not certops' answer (a proxy's): the status decides
		return failure.FromAnswer(resp.StatusCode, eb)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return failure.Wrap(failure.Internal, fmt.Errorf("%s %s: the answer is not what certops sends: %w", method, path, err))
	}
	return nil
}

// UnreachableError is a request that got no answer: the server is down,
// unknown, or its TLS certificate is not trusted. Err is the cause without
// Go's request prefix ("connection refused").
type UnreachableError struct {
	Server string
	Err    error
}

func (e *UnreachableError) Error() string { return "cannot reach " + e.Server + ": " + e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// cause strips the layers of a transport error that only repeat the
// request ("Get \"https://…\": dial tcp 127.0.0.1:8080: connect:"), down
// to what happened.
func cause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) && se.Err != nil {
		err = se.Err
	}
	return err
}
