package agentapi

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/issuer"
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

// pendingRetry is the Retry-After of a 202: the agent polls again soon.
const pendingRetry = "2"

// justIssued is how long after an order completed a new issue request for
// the same spec is answered 202 without ordering again: the agent asked
// before it polled the new certificate.
const justIssued = time.Minute

// issueACME answers an issue request for an ACME certificate: 202, after
// starting the order unless one is in progress.
func (s *Server) issueACME(w http.ResponseWriter, r *http.Request, c *certEntry, name, agent string, o issuer.Orderer, csr *x509.CertificateRequest, now time.Time) {
	key := depKey{name, agent}
	s.ordersMu.Lock()
	_, running := s.running[key]
	s.ordersMu.Unlock()
	if d := s.deployment(name, agent); d != nil && d.Current != nil && d.Current.SpecHash == c.specHash &&
		now.Sub(d.Current.IssuedAt) < justIssued && now.Before(d.RenewAt) {
		// The order completed after the agent last polled: no new order.
		running = true
	}
	if !running {
		claimed, err := s.store.ClaimACMEOrder(r.Context(), store.ACMEOrder{
			Certificate: name, Agent: agent, SpecHash: c.specHash, Holder: s.holder,
			StartedAt: now, ExpiresAt: now.Add(s.cfg.OrderTimeout),
		})
		if err != nil {
			s.unavailable(w, "claim ACME order", err)
			return
		}
		if claimed {
			s.startOrder(c, name, agent, o, csr)
		}
	}
	w.Header().Set("Retry-After", pendingRetry)
	writeJSON(w, http.StatusAccepted, agentproto.IssuePending{Status: "pending",
		Message: "the ACME order is in progress; the certificate appears in the assignments when it completes"})
}

// startOrder runs the order in the background until it completes, fails
// or OrderTimeout passes, then releases the claim. After Run ended no order
// starts: the claim is released at once.
func (s *Server) startOrder(c *certEntry, name, agent string, o issuer.Orderer, csr *x509.CertificateRequest) {
	key := depKey{name, agent}
	s.ordersMu.Lock()
	if s.stopped {
		s.ordersMu.Unlock()
		s.releaseOrder(name, agent)
		return
	}
	s.running[key] = struct{}{}
	s.background.Add(1)
	s.ordersMu.Unlock()
	go func() {
		defer s.background.Done()
		defer func() {
			s.ordersMu.Lock()
			delete(s.running, key)
			s.ordersMu.Unlock()
			s.releaseOrder(name, agent)
		}()
		ctx, cancel := context.WithTimeout(s.bg, s.cfg.OrderTimeout)
		defer cancel()
		s.runOrder(ctx, c, name, agent, o, csr)
	}()
}

// releaseOrder ends this replica's claim on an order.
func (s *Server) releaseOrder(name, agent string) {
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
func (s *Server) runOrder(ctx context.Context, c *certEntry, name, agent string, o issuer.Orderer, csr *x509.CertificateRequest) {
	iss := c.spec.IssuerRef
	s.log.Info("ACME order started", "certificate", name, "agent", agent, "issuer", iss)
	start := time.Now()
	res, err := o.Order(ctx, issuer.Order{Certificate: name, Agent: agent, Spec: c.spec, CSR: csr,
		Replaces: s.replaces(name, agent, iss), Webroots: s})
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
		d, rerr := s.recordRefusal(ctx, c, name, agent, now, result, err)
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
			s.applyDeployments([]state.Deployment{d})
		}
		return
	}
	issued := res.Issued
	d, err := s.store.RecordIssuance(ctx, store.Issuance{
		Version: state.CertificateVersion{
			Certificate: name, Agent: agent, SpecHash: c.specHash, Serial: issued.Serial, SHA256: issued.SHA256,
			NotBefore: issued.NotBefore, NotAfter: issued.NotAfter, CertPEM: issued.CertPEM, ChainPEM: issued.ChainPEM,
			Issuer: iss, IssuedAt: now,
		},
		RenewAt: s.acmeRenewalTime(c, name, agent, res, now),
	})
	if err != nil {
		s.metrics.issuance.WithLabelValues(iss, resultError).Inc()
		s.log.Error("ACME certificate issued but not stored; the agent will order again", "certificate", name,
			"agent", agent, "serial", issued.Serial, "err", err)
		return
	}
	s.applyDeployments([]state.Deployment{d})
	s.metrics.issuance.WithLabelValues(iss, resultSuccess).Inc()
	s.log.Info("certificate issued", "certificate", name, "agent", agent, "issuer", iss,
		"serial", issued.Serial, "notAfter", issued.NotAfter, "renewAt", d.RenewAt)
}

// replaces is the certificate the agent holds from the same issuer, which
// a new order renews (ARI "replaces"), or nil.
func (s *Server) replaces(name, agent, iss string) *x509.Certificate {
	d := s.deployment(name, agent)
	if d == nil || d.Current == nil || d.Current.Issuer != iss {
		return nil
	}
	block, _ := pem.Decode([]byte(d.Current.CertPEM))
	if block == nil {
		return nil
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	return leaf
}

// acmeRenewalTime is when the agent renews: inside the CA's ARI window
// when it offered one, else on the certificate's renewBefore schedule.
func (s *Server) acmeRenewalTime(c *certEntry, name, agent string, res *issuer.OrderResult, now time.Time) time.Time {
	w := res.RenewalWindow
	if w.IsZero() || !w.Start.Before(w.End) {
		return assign.RenewalTime(c.spec, name, agent, res.Issued.NotBefore, res.Issued.NotAfter, s.cfg.RenewalJitter)
	}
	return assign.RenewalInWindow(w.Start, w.End, name, agent, now)
}

// PresentHTTP01 publishes an http-01 challenge to every agent deploying the
// certificate and waits until they all confirmed it, at most
// ChallengeTimeout; after that it goes ahead when the ordering agent did
// confirm (an agent that is down must not block the others), and fails
// naming the agents that did not otherwise.
func (s *Server) PresentHTTP01(ctx context.Context, ch issuer.HTTP01Challenge) error {
	if !agentproto.ValidToken(ch.Token) {
		return fmt.Errorf("http-01 token %q is not base64url", ch.Token)
	}
	var agents []string
	if c := s.objs.Load().certs[ch.Certificate]; c != nil {
		agents = slices.Clone(c.targets)
	}
	if !slices.Contains(agents, ch.Agent) {
		agents = append(agents, ch.Agent)
		slices.Sort(agents)
	}
	now := s.now()
	err := s.store.PutACMEChallenge(ctx, store.ACMEChallenge{Token: ch.Token, Certificate: ch.Certificate,
		KeyAuth: ch.KeyAuth, Webroot: ch.Webroot, Agents: agents, ExpiresAt: now.Add(s.cfg.OrderTimeout)}, now)
	if err != nil {
		return err
	}
	s.reloadChallenges(ctx)
	s.log.Info("http-01 challenge published", "certificate", ch.Certificate, "domain", ch.Domain, "agents", agents)

	deadline := time.Now().Add(s.cfg.ChallengeTimeout)
	tick := time.NewTicker(s.cfg.ChallengePoll)
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
				strings.Join(missing, ", "), ch.Domain, s.cfg.ChallengeTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// CleanUpHTTP01 withdraws the challenge; the agents remove the file.
func (s *Server) CleanUpHTTP01(ctx context.Context, ch issuer.HTTP01Challenge) error {
	if err := s.store.DeleteACMEChallenge(ctx, ch.Token); err != nil {
		return err
	}
	s.reloadChallenges(ctx)
	return nil
}

// challengeReady serves POST challenges/{token}/ready.
func (s *Server) challengeReady(w http.ResponseWriter, r *http.Request, agent string) {
	token := r.PathValue("token")
	if !agentproto.ValidToken(token) {
		failure.WriteHTTP(w, failure.New(failure.Invalid, "the token is not base64url"))
		return
	}
	ok, err := s.store.ConfirmACMEChallenge(r.Context(), token, agent, s.now())
	if err != nil {
		s.unavailable(w, "confirm ACME challenge", err)
		return
	}
	if !ok {
		failure.WriteHTTP(w, failure.New(failure.NotFound, "no such challenge for this agent"))
		return
	}
	s.reloadChallenges(r.Context())
	w.WriteHeader(http.StatusNoContent)
}

// reloadChallenges loads the published challenges into the snapshot and
// invalidates the ETag of every agent whose list changed. A failure is
// logged: the next Refresh retries.
func (s *Server) reloadChallenges(ctx context.Context) {
	rows, err := s.store.ACMEChallenges(ctx, s.now())
	if err != nil {
		s.log.Warn("agent API: load ACME challenges", "err", err)
		return
	}
	next := map[string][]agentproto.Challenge{}
	for _, c := range rows {
		for _, a := range c.Agents {
			next[a] = append(next[a], agentproto.Challenge{Token: c.Token, KeyAuth: c.KeyAuth, Webroot: c.Webroot,
				Certificate: c.Certificate, Ready: slices.Contains(c.Ready, a)})
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for a, list := range next {
		if !slices.Equal(list, s.challenges[a]) {
			delete(s.etags, a)
			changed = true
		}
	}
	for a := range s.challenges {
		if _, ok := next[a]; !ok {
			delete(s.etags, a)
			changed = true
		}
	}
	if changed {
		s.challenges = next
		s.gen++
	}
}

// stopBackground keeps new orders and announcements from starting,
// cancels the orders in progress and waits (briefly) for them to release
// their claims and for the announcements in flight.
func (s *Server) stopBackground() {
	s.ordersMu.Lock()
	s.stopped = true
	s.ordersMu.Unlock()
	s.stopBG()
	done := make(chan struct{})
	go func() { s.background.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		s.log.Warn("agent API: ACME orders or notifications still running at shutdown; order claims expire on their own")
	}
}

// newHolderID names this replica in order claims.
func newHolderID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	host, _ := os.Hostname()
	return host + "/" + hex.EncodeToString(b[:])
}
