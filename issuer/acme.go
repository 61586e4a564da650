package issuer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/lego"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// Orderer is a Signer that orders certificates from an ACME server. An
// order takes seconds to minutes (challenges are validated by the CA), so
// callers run it in the background; Sign is Order without agents to answer
// http-01 challenges.
type Orderer interface {
	Signer
	// Order obtains a certificate for o.CSR, checked against o.Spec by
	// the caller as for Sign. A failed order's error carries the
	// CA's problem document; RetryAfter tells how long the CA asked to wait.
	Order(ctx context.Context, o Order) (*OrderResult, error)
	// CertificatesPerNameSetPerWeek is the CA's limit of certificates for
	// one exact set of names in 7 days that orders are scheduled within;
	// 0 is none (spec.ACMEIssuer.CertificatesPerNameSetPerWeek).
	CertificatesPerNameSetPerWeek() int
}

// Order is one certificate to obtain for one agent.
type Order struct {
	Certificate string // the Certificate object's name
	Agent       string // the agent whose key the CSR carries
	Spec        *spec.CertificateSpec
	CSR         *x509.CertificateRequest
	// Replaces is the certificate this one renews, if any: its ARI
	// identifier is sent as the order's "replaces" (RFC 9773 §5) when the
	// server offers ACME Renewal Information.
	Replaces *x509.Certificate
	// Webroots answers http-01 challenges; required by http01 issuers.
	Webroots HTTP01Publisher
}

// OrderResult is an issued certificate and the CA's renewal advice.
type OrderResult struct {
	Issued *agentproto.Issued
	// RenewalWindow is the ARI suggested window (RFC 9773 §4.2) for the
	// new certificate; nil when the server offers none.
	RenewalWindow *state.RenewalWindow
}

// HTTP01Publisher places http-01 key authorizations on the agents that
// deploy a certificate; agentapi.Orders implements it.
type HTTP01Publisher interface {
	// PresentHTTP01 asks the agents deploying ch.Certificate to serve
	// ch.KeyAuth at WEBROOT/.well-known/acme-challenge/TOKEN and returns
	// once they confirmed it (or fails when they did not in time).
	PresentHTTP01(ctx context.Context, ch HTTP01Challenge) error
	// CleanUpHTTP01 withdraws the challenge; the agents remove the file.
	CleanUpHTTP01(ctx context.Context, ch HTTP01Challenge) error
}

// HTTP01Challenge is one http-01 challenge of an order.
type HTTP01Challenge struct {
	Certificate string // the Certificate object being ordered
	Agent       string // the agent the order is for
	Domain      string
	Token       string
	KeyAuth     string
	Webroot     string // the directory on the agents, from the Issuer spec
}

// ACMEOptions tune every acme issuer of a Registry; zero fields take the
// defaults below.
type ACMEOptions struct {
	// Metrics counts ACME requests; nil counts nothing.
	Metrics *ACMEMetrics
	// ScriptTimeout bounds each dns-01 present or cleanup script (2m).
	ScriptTimeout time.Duration
	// RequestTimeout bounds each HTTP request to the ACME server (1m).
	RequestTimeout time.Duration
	// SetupRetry is how long a failed account setup (directory, key,
	// registration) is remembered before the next order tries again (1m).
	SetupRetry time.Duration
	// UserAgent is sent to the ACME server ("certops").
	UserAgent string
}

func (o ACMEOptions) withDefaults() ACMEOptions {
	if o.ScriptTimeout <= 0 {
		o.ScriptTimeout = 2 * time.Minute
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = time.Minute
	}
	if o.SetupRetry <= 0 {
		o.SetupRetry = time.Minute
	}
	if o.UserAgent == "" {
		o.UserAgent = "certops"
	}
	return o
}

// The acme issuer is an Orderer (callers find it by type assertion, so
// the compiler checks it here), a RenewalInfoer and a Revoker.
var (
	_ Orderer       = (*acmeIssuer)(nil)
	_ RenewalInfoer = (*acmeIssuer)(nil)
	_ Revoker       = (*acmeIssuer)(nil)
)

// acmeIssuer orders certificates from one ACME server with one account.
type acmeIssuer struct {
	name   string
	cfg    spec.ACMEIssuer
	opts   ACMEOptions
	logger *slog.Logger
	// solver sets up the issuer's challenge type on a new lego client.
	solver func(*lego.Client) error
	// persist is the dns-persist-01 configuration; nil for other challenges.
	persist *dnsPersist

	mu       sync.Mutex
	client   *lego.Client // nil until the account is set up
	account  string       // the account URL, once set up
	setupErr error        // the last setup failure
	setupAt  time.Time    // when setup last failed
}

// newACME checks what can be checked without the network (the challenge
// configuration, a DNS provider's name and env file) and returns the
// issuer; the account is set up on the first order.
func newACME(name string, cfg spec.ACMEIssuer, opts ACMEOptions, logger *slog.Logger) (*acmeIssuer, error) {
	if cfg.DirectoryURL == "" {
		cfg.DirectoryURL = lego.DirectoryURLLetsEncrypt
	}
	a := &acmeIssuer{name: name, cfg: cfg, opts: opts, logger: logger}
	ch := cfg.Challenge
	switch {
	case ch.HTTP01 != nil:
		p := &http01Provider{webroot: ch.HTTP01.Webroot}
		a.solver = func(c *lego.Client) error { return c.Challenge.SetHTTP01Provider(p) }
	case ch.DNS01 != nil && ch.DNS01.Provider != "":
		p, wait, err := newDNSProvider(ch.DNS01.Provider, ch.DNS01.EnvFile)
		if err != nil {
			return nil, err
		}
		a.solver = func(c *lego.Client) error { return c.Challenge.SetDNS01Provider(p, propagation(wait)...) }
	case ch.DNS01 != nil:
		wait, err := parseWait(ch.DNS01.PropagationWait)
		if err != nil {
			return nil, fmt.Errorf("dns01.propagationWait: %w", err)
		}
		p := &scriptProvider{present: ch.DNS01.PresentScript, cleanup: ch.DNS01.CleanupScript, wait: wait,
			timeout: opts.ScriptTimeout, logger: logger}
		a.solver = func(c *lego.Client) error { return c.Challenge.SetDNS01Provider(p, propagation(wait)...) }
	case ch.DNSPersist01 != nil:
		a.persist = newDNSPersist(ch.DNSPersist01)
		a.solver = func(c *lego.Client) error { return c.Challenge.SetDNSPersist01(a.persist.options()...) }
	default:
		return nil, errors.New("acme issuer has no challenge (http01, dns01 or dnsPersist01)")
	}
	return a, nil
}

// propagation is lego's dns-01 option for a wait: a fixed wait replaces
// lego's own check of the record on the zone's nameservers; no wait keeps
// that check.
func propagation(wait time.Duration) []dns01.ChallengeOption {
	if wait <= 0 {
		return nil
	}
	return []dns01.ChallengeOption{dns01.PropagationWait(wait, true)}
}

func (a *acmeIssuer) Type() string { return TypeACME }

func (a *acmeIssuer) CertificatesPerNameSetPerWeek() int {
	return a.cfg.CertificatesPerNameSetPerWeek()
}

// usable is the last setup failure while it is recent.
func (a *acmeIssuer) usable(now time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.client == nil && a.setupErr != nil && now.Sub(a.setupAt) < a.opts.SetupRetry {
		return a.setupErr
	}
	return nil
}

func (a *acmeIssuer) status(now time.Time) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.client == nil && a.setupErr != nil {
		return a.setupErr.Error()
	}
	return ""
}

// Sign orders a certificate without agents to answer http-01 challenges:
// it serves dns-01 issuers; an http-01 issuer refuses.
func (a *acmeIssuer) Sign(ctx context.Context, cert *spec.CertificateSpec, csr *x509.CertificateRequest, _ time.Time) (*agentproto.Issued, error) {
	res, err := a.Order(ctx, Order{Spec: cert, CSR: csr})
	if err != nil {
		return nil, err
	}
	return res.Issued, nil
}

// Order obtains a certificate for the agent's CSR (lego's ObtainForCSR:
// the CSR finalizes the order as is), then asks for its ARI window.
func (a *acmeIssuer) Order(ctx context.Context, o Order) (*OrderResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(o.Spec.URIs) > 0 || len(o.Spec.EmailAddresses) > 0 {
		return nil, failure.Wrap(failure.Invalid, fmt.Errorf("issuer %q: ACME certifies DNS names and IP addresses only, not URIs or email addresses", a.name))
	}
	if a.cfg.Challenge.HTTP01 != nil && o.Webroots == nil {
		return nil, failure.Wrap(failure.Invalid, fmt.Errorf("issuer %q answers http-01 on the agents' webroot: order through the agent API", a.name))
	}
	names := certcrypto.ExtractDomainsCSR(o.CSR) // what lego orders
	if a.persist != nil {
		if _, err := a.persist.domains(names); err != nil {
			return nil, failure.Wrap(failure.Invalid, fmt.Errorf("issuer %q: %w", a.name, err))
		}
	}
	client, account, err := a.setup(ctx)
	if err != nil {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: %w", a.name, err))
	}
	if a.persist != nil {
		if err := a.persist.check(ctx, names, account, time.Now()); err != nil {
			return nil, fmt.Errorf("issuer %q: %w", a.name, err)
		}
	}
	req := certificate.ObtainForCSRRequest{CSR: o.CSR, Profile: a.cfg.Profile}
	if o.Replaces != nil {
		if req.ReplacesCertID, err = api.MakeARICertID(o.Replaces); err != nil {
			a.logger.Warn("cannot name the replaced certificate for ARI", "certificate", o.Certificate, "err", err)
		}
	}
	res, err := client.Certificate.ObtainForCSR(withOrder(ctx, &o), req)
	if err != nil {
		return nil, &OrderError{Issuer: a.name, Err: a.explain(err, names, account)}
	}
	issued, leaf, err := issuedFrom(res, o.CSR)
	if err != nil {
		return nil, fmt.Errorf("issuer %q: %w", a.name, err)
	}
	out := &OrderResult{Issued: issued}
	info, err := a.renewalInfo(ctx, client, leaf)
	switch {
	case err == nil:
		out.RenewalWindow = &info.Window
	case !errors.Is(err, ErrNoARI):
		a.logger.Warn("renewal information unavailable; renewing on the certificate's schedule",
			"certificate", o.Certificate, "err", err)
	}
	return out, nil
}

// explain adds to a failed order's error what the CA expected to find,
// for the challenges whose answer the operator set up: dns-persist-01's
// records.
func (a *acmeIssuer) explain(err error, names []string, account string) error {
	if a.persist == nil {
		return err
	}
	records, rerr := a.persist.records(names, account)
	if rerr != nil || len(records) == 0 {
		return err
	}
	want := make([]string, len(records))
	for i, r := range records {
		want[i] = r.String()
	}
	return fmt.Errorf("%w; dns-persist-01 expects the TXT record(s) %s", err, strings.Join(want, "; "))
}

// RenewalInfoer asks a CA for its current renewal advice on a certificate
// it issued (ACME Renewal Information, RFC 9773): the acme issuers
// implement it (Registry.RenewalInfoer).
type RenewalInfoer interface {
	// RenewalInfo returns the CA's advice for leaf now: ErrNoARI when the
	// CA offers none (no renewalInfo in its directory), another error when
	// it could not be asked (to be asked again later).
	RenewalInfo(ctx context.Context, leaf *x509.Certificate) (*RenewalInfo, error)
}

// RenewalInfo is a CA's renewal advice on one certificate (RFC 9773 §4.2).
type RenewalInfo struct {
	// Window is when the CA suggests renewing (always Valid).
	Window state.RenewalWindow
	// RetryAfter is how long the CA asks to wait before asking again; 0
	// when it did not say.
	RetryAfter time.Duration
	// ExplanationURL is a page that says why the window is what it is
	// (a mass revocation, load balancing), if the CA gave one.
	ExplanationURL string
}

// ErrNoARI is RenewalInfo's answer when the CA offers no renewal
// information. lego gives the same answer for an empty window (end not
// after start), which RFC 9773 §4.2 says to treat as no answer.
var ErrNoARI = errors.New("the ACME server offers no renewal information (ARI)")

// RenewalInfo implements RenewalInfoer through lego (GetRenewalInfo),
// with the issuer's account client.
func (a *acmeIssuer) RenewalInfo(ctx context.Context, leaf *x509.Certificate) (*RenewalInfo, error) {
	client, _, err := a.setup(ctx)
	if err != nil {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: %w", a.name, err))
	}
	info, err := a.renewalInfo(ctx, client, leaf)
	if err != nil {
		return nil, fmt.Errorf("issuer %q: renewal information: %w", a.name, err)
	}
	return info, nil
}

// renewalInfo asks the CA for leaf's renewal information.
func (a *acmeIssuer) renewalInfo(ctx context.Context, client *lego.Client, leaf *x509.Certificate) (*RenewalInfo, error) {
	info, err := client.Certificate.GetRenewalInfo(ctx, leaf)
	if errors.Is(err, api.ErrNoARI) {
		return nil, ErrNoARI
	}
	if err != nil {
		return nil, err
	}
	w := state.RenewalWindow{Start: info.SuggestedWindow.Start, End: info.SuggestedWindow.End}
	if !w.Valid() { // lego refuses end <= start; a zero start is no window either
		return nil, ErrNoARI
	}
	return &RenewalInfo{Window: w, RetryAfter: max(info.RetryAfter, 0), ExplanationURL: info.ExplanationURL}, nil
}

// OrderError is a failed order: its message carries the CA's problem
// document (type, detail, subproblems) when the CA sent one.
type OrderError struct {
	Issuer string
	Err    error
}

func (e *OrderError) Error() string {
	return fmt.Sprintf("issuer %q: order failed: %v", e.Issuer, e.Err)
}
func (e *OrderError) Unwrap() error { return e.Err }

// RetryAfter is how long the CA asked to wait (a rateLimited problem's
// Retry-After), or 0.
func (e *OrderError) RetryAfter() time.Duration {
	var rl *acme.RateLimitedError
	if errors.As(e.Err, &rl) {
		return rl.RetryAfter
	}
	return 0
}

// RetryAfter is how long err asks to wait before the next order, or 0.
func RetryAfter(err error) time.Duration {
	var oe *OrderError
	if errors.As(err, &oe) {
		return oe.RetryAfter()
	}
	return 0
}

// issuedFrom converts lego's resource and checks the leaf is for the CSR's key.
func issuedFrom(res *certificate.Resource, csr *x509.CertificateRequest) (*agentproto.Issued, *x509.Certificate, error) {
	block, rest := pem.Decode(res.Certificate)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, errors.New("the CA returned no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA returned an unparsable certificate: %w", err)
	}
	if !pki.SamePublicKey(leaf.PublicKey, csr.PublicKey) {
		return nil, nil, errors.New("the CA returned a certificate for another key than the CSR's")
	}
	chain := res.IssuerCertificate
	if len(chain) == 0 {
		chain = rest // a bundle: the leaf came first
	}
	return pki.NewIssued(leaf, strings.TrimLeft(string(chain), "\n")), leaf, nil
}

// setup returns the lego client with its account: on first use it reads
// (or creates) the account key, finds the account by key or registers it
// (with EAB when configured) and installs the challenge solver. It returns
// the client and the account URL. A failure is remembered for SetupRetry so
// a broken issuer does not hammer the CA.
func (a *acmeIssuer) setup(ctx context.Context) (*lego.Client, string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.client != nil {
		return a.client, a.account, nil
	}
	if a.setupErr != nil && time.Since(a.setupAt) < a.opts.SetupRetry {
		return nil, "", a.setupErr
	}
	client, account, err := a.newClient(ctx)
	if err != nil {
		a.setupErr, a.setupAt = err, time.Now()
		a.logger.Error("acme account setup failed", "directory", a.cfg.DirectoryURL, "err", err)
		return nil, "", err
	}
	a.client, a.account, a.setupErr = client, account, nil
	if a.persist != nil {
		a.persist.logRecords(a.logger, account)
	}
	return client, account, nil
}

// newClient builds the lego client, sets its account up and returns the
// account URL with it.
func (a *acmeIssuer) newClient(ctx context.Context) (*lego.Client, string, error) {
	hc, err := a.httpClient()
	if err != nil {
		return nil, "", err
	}
	key, created, err := loadOrCreateAccountKey(a.cfg.AccountKeyFile)
	if err != nil {
		return nil, "", err
	}
	if created {
		a.logger.Info("acme account key created", "file", a.cfg.AccountKeyFile)
	}
	user := &acmeUser{email: a.cfg.Email, key: key}
	cfg := lego.NewConfig(user)
	cfg.CADirURL = a.cfg.DirectoryURL
	cfg.HTTPClient = hc
	cfg.UserAgent = a.opts.UserAgent
	client, err := lego.NewClient(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("ACME directory %s: %w", a.cfg.DirectoryURL, err)
	}
	if err := a.findAccount(ctx, client, user); err != nil {
		return nil, "", err
	}
	if err := a.solver(client); err != nil {
		return nil, "", fmt.Errorf("challenge solver: %w", err)
	}
	if a.cfg.Profile != "" {
		if _, ok := client.GetServerMetadata().Profiles[a.cfg.Profile]; !ok {
			return nil, "", fmt.Errorf("the ACME server offers no profile %q", a.cfg.Profile)
		}
	}
	return client, user.reg.Location, nil
}

// findAccount finds the account of the key, registering it when the
// server does not know it.
func (a *acmeIssuer) findAccount(ctx context.Context, client *lego.Client, user *acmeUser) error {
	reg, err := client.Registration.ResolveAccountByKey(ctx)
	if err == nil {
		user.reg = reg
		a.logger.Info("acme account found", "account", reg.Location)
		return nil
	}
	var prob *acme.ProblemDetails
	if !errors.As(err, &prob) || prob.Type != acme.AccountDoesNotExistErrorType {
		return fmt.Errorf("look up the ACME account: %w", err)
	}
	if eab := a.cfg.EAB; eab != nil {
		hmac, err := os.ReadFile(eab.HMACFile)
		if err != nil {
			return fmt.Errorf("EAB HMAC key: %w", err)
		}
		reg, err = client.Registration.RegisterWithExternalAccountBinding(ctx, registrationEAB(eab.KeyID, hmac))
		if err != nil {
			return fmt.Errorf("register the ACME account (EAB key %s): %w", eab.KeyID, err)
		}
	} else if reg, err = client.Registration.Register(ctx, registrationTOS()); err != nil {
		return fmt.Errorf("register the ACME account: %w", err)
	}
	user.reg = reg
	a.logger.Info("acme account registered", "account", reg.Location, "email", a.cfg.Email)
	return nil
}

// httpClient talks to the ACME server: the CA bundle (if any) as roots,
// every request counted.
func (a *acmeIssuer) httpClient() (*http.Client, error) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: a.opts.RequestTimeout,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost:   4,
	}
	if f := a.cfg.CABundleFile; f != "" {
		pool, err := pki.LoadCertPool(f)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: a.opts.Metrics.transport(tr), Timeout: a.opts.RequestTimeout}, nil
}

// orderKey carries the Order through lego to the http-01 provider.
type orderKey struct{}

func withOrder(ctx context.Context, o *Order) context.Context {
	return context.WithValue(ctx, orderKey{}, o)
}

func orderFrom(ctx context.Context) *Order {
	o, _ := ctx.Value(orderKey{}).(*Order)
	return o
}

// Revoker revokes certificates at the CA that issued them: the ACME
// issuers implement it (Registry.Revoker).
type Revoker interface {
	// Revoke asks the CA to revoke the certificate (PEM) for an RFC 5280
	// reason code. A certificate the CA already revoked is not an error.
	Revoke(ctx context.Context, certPEM string, reason int) error
}

// Revoke implements Revoker through lego (RevokeWithReason).
func (a *acmeIssuer) Revoke(ctx context.Context, certPEM string, reason int) error {
	client, _, err := a.setup(ctx)
	if err != nil {
		return fmt.Errorf("issuer %q: %w", a.name, err)
	}
	r := uint(reason)
	err = client.Certificate.RevokeWithReason(ctx, []byte(certPEM), &r)
	var problem *acme.ProblemDetails
	if errors.As(err, &problem) && problem.Type == "urn:ietf:params:acme:error:alreadyRevoked" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("issuer %q: revoke: %w", a.name, err)
	}
	return nil
}

// RenewalInfoer returns the named issuer's RenewalInfoer: a
// failure.NotFound error when there is no such issuer or it is not an ACME
// issuer (no CA to ask), failure.Unavailable when it is an ACME issuer that
// cannot be used now (misconfigured, its account setup failed recently).
func (r *Registry) RenewalInfoer(name string) (RenewalInfoer, error) {
	e, ok := (*r.issuers.Load())[name]
	if !ok {
		return nil, failure.Wrap(failure.NotFound, fmt.Errorf("issuer %q is not defined", name))
	}
	if e.issuer.Type() != TypeACME {
		return nil, failure.Wrap(failure.NotFound, fmt.Errorf("issuer %q is not an ACME issuer", name))
	}
	if err := e.issuer.usable(r.now()); err != nil {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q is unavailable: %w", name, err))
	}
	ri, ok := e.issuer.(RenewalInfoer)
	if !ok {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q is unavailable: %s", name, e.issuer.status(r.now())))
	}
	return ri, nil
}

// Revoker returns the named issuer's Revoker: a failure.NotFound error
// when there is no such issuer or it cannot revoke (a local CA revokes by
// its CRL and OCSP instead).
func (r *Registry) Revoker(name string) (Revoker, error) {
	e, ok := (*r.issuers.Load())[name]
	if !ok {
		return nil, failure.Wrap(failure.NotFound, fmt.Errorf("issuer %q is not defined", name))
	}
	rv, ok := e.issuer.(Revoker)
	if !ok {
		return nil, failure.Wrap(failure.NotFound, fmt.Errorf("issuer %q cannot revoke at a CA", name))
	}
	return rv, nil
}
