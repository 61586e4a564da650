package issuer

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// ACMEMetrics counts the requests acme issuers send to ACME servers.
type ACMEMetrics struct {
	requests *prometheus.CounterVec
}

// NewACMEMetrics registers certops_acme_requests_total with reg.
func NewACMEMetrics(reg prometheus.Registerer) *ACMEMetrics {
	m := &ACMEMetrics{requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "certops_acme_requests_total",
		Help: "Requests to ACME servers, by action (directory, newNonce, newAccount, newOrder, authorization, challenge, finalize, order, certificate, renewalInfo, …) and HTTP status (\"error\" when no answer came).",
	}, []string{"action", "status"})}
	if reg != nil {
		reg.MustRegister(m.requests)
	}
	return m
}

// transport wraps next so every request is counted; a nil m counts nothing.
func (m *ACMEMetrics) transport(next http.RoundTripper) http.RoundTripper {
	if m == nil {
		return next
	}
	return &countingTransport{next: next, requests: m.requests, actions: map[string]string{}}
}

// countingTransport names each ACME request by the resource it targets.
// The directory names the fixed resources; the URLs of orders,
// authorizations, challenges and certificates are learned from the
// answers that link to them (RFC 8555 §7.1).
type countingTransport struct {
	next     http.RoundTripper
	requests *prometheus.CounterVec

	mu      sync.Mutex
	actions map[string]string // URL → action
}

// maxLearnedURLs bounds the learned URLs; the map restarts when full.
const maxLearnedURLs = 4096

// maxSniffBytes bounds the JSON answers read to learn URLs from.
const maxSniffBytes = 1 << 20

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	action := t.action(req)
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.requests.WithLabelValues(action, "error").Inc()
		return nil, err
	}
	t.requests.WithLabelValues(action, strconv.Itoa(resp.StatusCode)).Inc()
	t.learn(action, resp)
	return resp, nil
}

func (t *countingTransport) action(req *http.Request) string {
	u := req.URL.String()
	t.mu.Lock()
	a, ok := t.actions[u]
	t.mu.Unlock()
	switch {
	case ok:
		return a
	case req.Method == http.MethodGet && strings.Contains(req.URL.Path, "renewalInfo"):
		return "renewalInfo"
	case req.Method == http.MethodGet:
		return "directory"
	}
	return "other"
}

func (t *countingTransport) remember(action string, urls ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.actions) >= maxLearnedURLs {
		t.actions = map[string]string{}
	}
	for _, u := range urls {
		if u == "" {
			continue
		}
		if old, ok := t.actions[u]; ok && old != "order" && action == "order" {
			continue // the directory's names win
		}
		t.actions[u] = action
	}
}

// learn reads the directory, order and authorization answers for the URLs
// they link to, and gives the body back unread.
func (t *countingTransport) learn(action string, resp *http.Response) {
	if loc := resp.Header.Get("Location"); loc != "" && action == "newOrder" {
		t.remember("order", loc)
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct != "application/json" || resp.Body == nil || resp.StatusCode >= 300 {
		return
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSniffBytes))
	resp.Body = readCloser{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
	if err != nil {
		return
	}
	var doc struct {
		// directory
		NewNonce, NewAccount, NewOrder, RevokeCert, KeyChange, RenewalInfo string
		// order
		Authorizations []string
		Finalize       string
		Certificate    string
		// authorization
		Challenges []struct{ URL string }
	}
	if json.Unmarshal(body, &doc) != nil {
		return
	}
	if action == "directory" {
		t.remember("newNonce", doc.NewNonce)
		t.remember("newAccount", doc.NewAccount)
		t.remember("newOrder", doc.NewOrder)
		t.remember("revokeCert", doc.RevokeCert)
		t.remember("keyChange", doc.KeyChange)
		return
	}
	t.remember("authorization", doc.Authorizations...)
	t.remember("finalize", doc.Finalize)
	t.remember("certificate", doc.Certificate)
	for _, c := range doc.Challenges {
		t.remember("challenge", c.URL)
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}
