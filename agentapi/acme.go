package agentapi

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// ACME issuance is asynchronous: an issue request for a certificate whose
// issuer is an issuer.Orderer claims the order in Postgres (one per
// certificate and agent across replicas), starts it in the background and
// answers 202; the agent keeps polling and finds the certificate as Current
// when the order completes, or the CA's problem as the deployment's
// last_error (with a backoff) when it fails.
//
// http-01 challenges are answered by every agent deploying the
// certificate: PresentHTTP01 publishes the challenge in Postgres (so every
// replica lists it in the agents' assignments), waits for the agents'
// confirmations, and CleanUpHTTP01 withdraws it once the CA has validated.

// OrderStore is what the Orders read and write; *store.Store implements
// it.
type OrderStore interface {
	ClaimACMEOrder(ctx context.Context, o store.ACMEOrder) (store.ACMEClaim, error)
	ReleaseACMEOrder(ctx context.Context, certificate, agent, holder string) error
	ExtendIssueBackoff(ctx context.Context, certificate, agent string, notBefore time.Time) (state.Deployment, error)
	PutACMEChallenge(ctx context.Context, ch store.ACMEChallenge, now time.Time) error
	DeleteACMEChallenge(ctx context.Context, token string) error
	ConfirmACMEChallenge(ctx context.Context, token, agent string, at time.Time) (bool, error)
	ACMEChallengeReady(ctx context.Context, token string) ([]string, error)
}

// Orders runs this replica's ACME orders in the background and publishes
// their http-01 challenges to the agents; it is the orders'
// issuer.HTTP01Publisher.
type Orders struct {
	store    OrderStore
	snapshot *Snapshot
	ledger   *Ledger
	metrics  *Metrics
	now      func() time.Time
	log      *slog.Logger
	holder   string // this replica, as the holder of its order claims

	orderTimeout, challengeTimeout, challengePoll time.Duration
	jitter                                        float64

	// Orders run with bg, cancelled when Run ends; once stopped (under mu)
	// none starts any more.
	bg      context.Context
	stopBG  context.CancelFunc
	mu      sync.Mutex
	stopped bool
	running map[depKey]struct{} // orders this replica runs
	orders  sync.WaitGroup
}

// NewOrders returns the order runner; cfg.OrderTimeout,
// cfg.ChallengeTimeout, cfg.ChallengePoll, cfg.RenewalJitter and cfg.Now
// are used.
func NewOrders(st OrderStore, snapshot *Snapshot, ledger *Ledger, metrics *Metrics, cfg Config, logger *slog.Logger) *Orders {
	cfg = cfg.withDefaults()
	o := &Orders{store: st, snapshot: snapshot, ledger: ledger, metrics: metrics, now: cfg.Now, log: orDiscard(logger),
		holder: newHolderID(), orderTimeout: cfg.OrderTimeout, challengeTimeout: cfg.ChallengeTimeout,
		challengePoll: cfg.ChallengePoll, jitter: cfg.RenewalJitter, running: map[depKey]struct{}{}}
	o.bg, o.stopBG = context.WithCancel(context.Background())
	return o
}

// pendingRetry is the Retry-After of a 202: the agent polls again soon.
const pendingRetry = "2"

// justIssued is how long after an order completed a new issue request for
// the same spec is answered 202 without ordering again: the agent asked
// before it polled the new certificate.
const justIssued = time.Minute

// Start handles an issue request for an ACME certificate whose CSR passed
// the checks: it starts the order unless one is in progress, or unless the
// order would take the issuer over its rate limit for the certificate's
// names (then the deployment waits, and the answer is RateLimited with
// the wait as Retry-After). A nil error means pending (202).
func (s *Orders) Start(ctx context.Context, c *certEntry, name, agent string, o issuer.Orderer, csr *x509.CertificateRequest, now time.Time) error {
	key := depKey{name, agent}
	s.mu.Lock()
	_, running := s.running[key]
	s.mu.Unlock()
	d := s.snapshot.deployment(name, agent)
	if d != nil && d.Current != nil && d.Current.SpecHash == c.specHash &&
		now.Sub(d.Current.IssuedAt) < justIssued && now.Before(d.RenewAt) {
		// The order completed after the agent last polled: no new order.
		running = true
	}
	if running {
		return nil
	}
	ord := order{nameSet: c.spec.NameSet(), replaces: s.replaces(name, agent, c.spec.IssuerRef)}
	ord.ariRenewal = ord.replaces != nil && d.Current.RenewalWindow.Open(now) && leafNameSet(ord.replaces) == ord.nameSet
	claim, err := s.store.ClaimACMEOrder(ctx, store.ACMEOrder{
		Certificate: name, Agent: agent, SpecHash: c.specHash, Holder: s.holder,
		StartedAt: now, ExpiresAt: now.Add(s.orderTimeout),
		Issuer: c.spec.IssuerRef, NameSet: ord.nameSet, Limit: o.CertificatesPerNameSetPerWeek(), ARIRenewal: ord.ariRenewal,
	})
	if err != nil {
		return unavailable(s.log, "claim ACME order", err)
	}
	if w := claim.Wait; w != nil {
		s.snapshot.applyDeployments([]state.Deployment{*w})
		s.metrics.rateLimitWaits.WithLabelValues(c.spec.IssuerRef).Inc()
		s.log.Info("ACME order waits for the CA's rate limit", "certificate", name, "agent", agent,
			"issuer", c.spec.IssuerRef, "until", w.NotBefore, "reason", w.Waiting)
		return waiting(w.Waiting, w.NotBefore.Sub(now))
	}
	if claim.Claimed {
		s.startOrder(c, name, agent, o, csr, ord)
	}
	return nil
}

// order is what Start found out about an order before it starts.
type order struct {
	nameSet  string            // the certificate's names, as the CA's limit counts them
	replaces *x509.Certificate // the certificate it renews, or nil
	// ariRenewal: it renews replaces, for the same names, inside the
	// window the CA suggested (RFC 9773), so the CA's limits exempt it.
	ariRenewal bool
}

// leafNameSet is a certificate's names as the CA's limit counts them (the
// one rule: spec.CertificateSpec.NameSet).
func leafNameSet(leaf *x509.Certificate) string {
	ips := make([]string, len(leaf.IPAddresses))
	for i, ip := range leaf.IPAddresses {
		ips[i] = ip.String()
	}
	return (&spec.CertificateSpec{DNSNames: leaf.DNSNames, IPAddresses: ips}).NameSet()
}

// startOrder runs the order in the background until it completes, fails
// or OrderTimeout passes, then releases the claim. After Run ended no order
// starts: the claim is released at once.
func (s *Orders) startOrder(c *certEntry, name, agent string, o issuer.Orderer, csr *x509.CertificateRequest, ord order) {
	key := depKey{name, agent}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		s.releaseOrder(name, agent)
		return
	}
	s.running[key] = struct{}{}
	s.orders.Add(1) // under mu: Run waits only once stopped
	s.mu.Unlock()
	go func() {
		defer s.orders.Done()
		defer func() {
			s.mu.Lock()
			delete(s.running, key)
			s.mu.Unlock()
			s.releaseOrder(name, agent)
		}()
		ctx, cancel := context.WithTimeout(s.bg, s.orderTimeout)
		defer cancel()
		s.runOrder(ctx, c, name, agent, o, csr, ord)
	}()
}

// releaseOrder ends this replica's claim on an order.
func (s *Orders) releaseOrder(name, agent string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.bg), 10*time.Second)
	defer cancel()
	if err := s.store.ReleaseACMEOrder(ctx, name, agent, s.holder); err != nil {
		s.log.Warn("release ACME order; it expires on its own", "certificate", name, "agent", agent, "err", err)
	}
}

// runOrder runs one order and records its outcome. The outcome is written
// with a context of its own: an order that ran into OrderTimeout must still
// back the agent off, and a certificate issued just before it must still be
// stored. An order cut short by shutdown is no failure of the CA's and is
// not recorded; the agent asks again.
func (s *Orders) runOrder(ctx context.Context, c *certEntry, name, agent string, o issuer.Orderer, csr *x509.CertificateRequest, ord order) {
	iss := c.spec.IssuerRef
	s.log.Info("ACME order started", "certificate", name, "agent", agent, "issuer", iss, "ari_renewal", ord.ariRenewal)
	start := time.Now()
	res, err := o.Order(ctx, issuer.Order{Certificate: name, Agent: agent, Spec: c.spec, CSR: csr,
		Replaces: ord.replaces, Webroots: s})
	s.metrics.issuanceDuration.WithLabelValues(iss).Observe(time.Since(start).Seconds())
	now := s.now()
	if err != nil && s.bg.Err() != nil {
		s.log.Warn("ACME order interrupted by shutdown", "certificate", name, "agent", agent, "issuer", iss, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err != nil {
		result := resultFailure
		if failure.KindOf(err) == failure.Rejected {
			result = resultRejected
		}
		d, rerr := s.ledger.refused(ctx, c, name, agent, now, result, err)
		if rerr != nil {
			s.log.Error("record failed ACME order", "certificate", name, "agent", agent, "err", rerr)
			return
		}
		if wait := issuer.RetryAfter(err); wait > 0 && now.Add(wait).After(d.NotBefore) {
			d, rerr = s.store.ExtendIssueBackoff(ctx, name, agent, now.Add(wait))
			if rerr != nil {
				s.log.Error("honour the CA's Retry-After", "certificate", name, "agent", agent, "err", rerr)
				return
			}
			s.snapshot.applyDeployments([]state.Deployment{d})
		}
		return
	}
	issued := res.Issued
	d, err := s.ledger.issued(ctx, c, name, agent, issued, s.acmeRenewalTime(c, name, agent, res, now), now,
		&acmeIssued{window: res.RenewalWindow, ledger: store.ACMEIssuance{NameSet: ord.nameSet, ARIRenewal: ord.ariRenewal}})
	if err != nil {
		s.log.Error("ACME certificate issued but not stored; the agent will order again", "certificate", name,
			"agent", agent, "serial", issued.Serial, "err", err)
		return
	}
	s.log.Info("certificate issued", "certificate", name, "agent", agent, "issuer", iss,
		"serial", issued.Serial, "not_after", issued.NotAfter, "renew_at", d.RenewAt, "ari_renewal", ord.ariRenewal)
}

// replaces is the certificate the agent holds from the same issuer, which
// a new order renews (ARI "replaces"), or nil.
func (s *Orders) replaces(name, agent, iss string) *x509.Certificate {
	d := s.snapshot.deployment(name, agent)
	if d == nil || d.Current == nil || d.Current.Issuer != iss {
		return nil
	}
	leaf, err := pki.ParseLeaf(d.Current.CertPEM)
	if err != nil {
		return nil
	}
	return leaf
}

// acmeRenewalTime is when the agent renews: inside the CA's ARI window
// when it offered one, else on the certificate's renewBefore schedule.
func (s *Orders) acmeRenewalTime(c *certEntry, name, agent string, res *issuer.OrderResult, now time.Time) time.Time {
	w := res.RenewalWindow
	if w == nil {
		return assign.RenewalTime(c.spec, name, agent, res.Issued.NotBefore, res.Issued.NotAfter, s.jitter)
	}
	return assign.RenewalInWindow(w.Start, w.End, name, agent, now)
}

// PresentHTTP01 publishes an http-01 challenge to every agent deploying the
// certificate and waits until they all confirmed it, at most
// ChallengeTimeout; after that it goes ahead when the ordering agent did
// confirm (an agent that is down must not block the others), and fails
// naming the agents that did not otherwise.
func (s *Orders) PresentHTTP01(ctx context.Context, ch issuer.HTTP01Challenge) error {
	if !agentproto.ValidToken(ch.Token) {
		return fmt.Errorf("http-01 token %q is not base64url", ch.Token)
	}
	agents := s.snapshot.targets(ch.Certificate)
	if !slices.Contains(agents, ch.Agent) {
		agents = append(agents, ch.Agent)
		slices.Sort(agents)
	}
	now := s.now()
	err := s.store.PutACMEChallenge(ctx, store.ACMEChallenge{Token: ch.Token, Certificate: ch.Certificate,
		KeyAuth: ch.KeyAuth, Webroot: ch.Webroot, Agents: agents, ExpiresAt: now.Add(s.orderTimeout)}, now)
	if err != nil {
		return err
	}
	s.snapshot.reloadChallenges(ctx)
	s.log.Info("http-01 challenge published", "certificate", ch.Certificate, "domain", ch.Domain, "agents", agents)

	deadline := time.Now().Add(s.challengeTimeout)
	tick := time.NewTicker(s.challengePoll)
	defer tick.Stop()
	for {
		ready, err := s.store.ACMEChallengeReady(ctx, ch.Token)
		if err != nil {
			return err
		}
		var missing []string
		for _, a := range agents {
			if !slices.Contains(ready, a) {
				missing = append(missing, a)
			}
		}
		switch {
		case len(missing) == 0:
			return nil
		case time.Now().After(deadline) && slices.Contains(ready, ch.Agent):
			s.log.Warn("http-01: going ahead without agents that did not confirm the challenge",
				"certificate", ch.Certificate, "domain", ch.Domain, "missing", missing)
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("agent(s) %s did not confirm the http-01 challenge file for %s within %s",
				strings.Join(missing, ", "), ch.Domain, s.challengeTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// CleanUpHTTP01 withdraws the challenge; the agents remove the file.
func (s *Orders) CleanUpHTTP01(ctx context.Context, ch issuer.HTTP01Challenge) error {
	if err := s.store.DeleteACMEChallenge(ctx, ch.Token); err != nil {
		return err
	}
	s.snapshot.reloadChallenges(ctx)
	return nil
}

// ConfirmChallenge records that agent put the http-01 challenge file of
// token in place: Invalid for a malformed token, NotFound when no such
// challenge was published to the agent.
func (s *Orders) ConfirmChallenge(ctx context.Context, agent, token string) error {
	if !agentproto.ValidToken(token) {
		return failure.New(failure.Invalid, "the token is not base64url")
	}
	ok, err := s.store.ConfirmACMEChallenge(ctx, token, agent, s.now())
	if err != nil {
		return unavailable(s.log, "confirm ACME challenge", err)
	}
	if !ok {
		return failure.New(failure.NotFound, "no such challenge for this agent")
	}
	s.snapshot.reloadChallenges(ctx)
	return nil
}

// Run waits until ctx ends, then keeps new orders from starting, cancels
// the orders in progress and waits (briefly) for them to release their
// claims.
func (s *Orders) Run(ctx context.Context) error {
	<-ctx.Done()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.stopBG()
	if !waitFor(&s.orders, 15*time.Second) {
		s.log.Warn("agent API: ACME orders still running at shutdown; order claims expire on their own")
	}
	return nil
}

// newHolderID names this replica in order claims.
func newHolderID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	host, _ := os.Hostname()
	return host + "/" + hex.EncodeToString(b[:])
}
