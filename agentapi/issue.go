package agentapi

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/state"
)

// Signers finds the signer of an issuer by name; *issuer.Registry
// implements it.
type Signers interface {
	Signer(name string) (issuer.Signer, error)
}

// Issuance answers issue requests: it checks them against the snapshot,
// signs through the certificate's issuer or hands ACME certificates to the
// Orders, and records the outcome through the Ledger.
type Issuance struct {
	snapshot *Snapshot
	signers  Signers
	orders   *Orders
	ledger   *Ledger
	metrics  *Metrics
	now      func() time.Time
	jitter   float64
	reissue  time.Duration // Config.ReissueInterval
	log      *slog.Logger
}

// NewIssuance returns the issuance service; cfg.RenewalJitter and cfg.Now
// are used.
func NewIssuance(snapshot *Snapshot, signers Signers, orders *Orders, ledger *Ledger, metrics *Metrics, cfg Config, logger *slog.Logger) *Issuance {
	cfg = cfg.withDefaults()
	return &Issuance{snapshot: snapshot, signers: signers, orders: orders, ledger: ledger, metrics: metrics,
		now: cfg.Now, jitter: cfg.RenewalJitter, reissue: cfg.ReissueInterval, log: orDiscard(logger)}
}

// Issue answers agent's request for certificate name: the certificate, or
// nil while an ACME order runs; every "no" is a failure error with the
// agentproto code and, where the agent is to wait, a Retry-After. The
// checks run cheapest first; the ones that say "no" to a well-formed
// request for an assigned certificate (CSR mismatch, issuer failure) are
// recorded on the deployment and back the agent off.
func (s *Issuance) Issue(ctx context.Context, agent, name string, req agentproto.IssueRequest) (*agentproto.Issued, error) {
	c := s.snapshot.assigned(name, agent)
	now := s.now()
	csr, mismatch, err := checkIssue(c, s.snapshot.deployment(name, agent), name, req, now, s.reissue)
	if err != nil {
		return nil, err
	}
	if why := s.snapshot.suspension(name, agent); why != "" {
		return nil, failure.WithCode(failure.New(failure.Conflict, why), agentproto.CodeSuspended)
	}
	if mismatch != nil {
		return nil, s.refuse(ctx, c, name, agent, now, resultRejected, mismatch)
	}
	iss := c.spec.IssuerRef
	if o, ok := s.orderer(iss); ok {
		return nil, s.orders.Start(ctx, c, name, agent, o, csr, now)
	}
	start := time.Now()
	issued, err := s.sign(issuer.WithRequest(ctx, issuer.Request{Certificate: name, Agent: agent}), c, csr, now)
	s.metrics.issuanceDuration.WithLabelValues(iss).Observe(time.Since(start).Seconds())
	if err != nil {
		result := resultFailure
		if failure.KindOf(err) == failure.Rejected {
			result = resultRejected // e.g. a name outside the CA's name constraints
		}
		return nil, s.refuse(ctx, c, name, agent, now, result, err)
	}
	renewAt := assign.RenewalTime(c.spec, name, agent, issued.NotBefore, issued.NotAfter, s.jitter)
	if _, err := s.ledger.issued(ctx, c, name, agent, issued, renewAt, now, nil); err != nil {
		return nil, unavailable(s.log, "record issuance", err)
	}
	s.log.Info("certificate issued", "certificate", name, "agent", agent, "issuer", iss,
		"serial", issued.Serial, "not_after", issued.NotAfter)
	return issued, nil
}

// checkIssue runs the checks of an issue request that need neither the
// store nor an issuer, cheapest first: c is the certificate if it is
// assigned to the agent (else nil), d its deployment (or nil). It returns
// the parsed CSR; a CSR that parses but does not match the spec comes back
// as mismatch (to be recorded, backing the agent off); every other "no" is
// err, a failure error to answer with. reissue is the least time between
// two certificates for one spec while renewal is not due.
func checkIssue(c *certEntry, d *state.Deployment, name string, req agentproto.IssueRequest, now time.Time, reissue time.Duration) (csr *x509.CertificateRequest, mismatch, err error) {
	if c == nil {
		return nil, nil, notAssigned(name) // the same whether the certificate exists or not
	}
	if req.SpecHash != c.specHash {
		return nil, nil, failure.New(failure.Conflict, "the certificate's spec changed; poll the assignments again")
	}
	if d != nil && d.SpecHash == c.specHash && d.NotBefore.After(now) {
		if why := d.WaitingNow(c.specHash, now); why != "" {
			return nil, nil, waiting(why, d.NotBefore.Sub(now))
		}
		return nil, nil, failure.WithRetryAfter(failure.New(failure.RateLimited,
			"backing off after "+strconv.Itoa(d.Failures)+" failed attempt(s): "+d.LastError), d.NotBefore.Sub(now))
	}
	if cur := currentFor(d, c.specHash); cur != nil && now.Before(d.RenewAt) {
		if wait := cur.IssuedAt.Add(reissue).Sub(now); wait > 0 {
			return nil, nil, failure.WithRetryAfter(failure.New(failure.RateLimited,
				"certificate "+cur.Serial+" was issued for this spec at "+cur.IssuedAt.UTC().Format(time.RFC3339)+
					"; it is in the assignments (current); another is issued from "+
					cur.IssuedAt.Add(reissue).UTC().Format(time.RFC3339)+" or when renewal is due"), wait)
		}
	}
	csr, err = pki.ParseCSR([]byte(req.CSRPEM))
	if err != nil {
		return nil, nil, failure.New(failure.Invalid, "csrPEM: "+err.Error())
	}
	// The one check of the CSR against the spec, for every issuer: the
	// signers rely on it (see issuer.Signer), and an ACME order is only
	// claimed for a CSR that passed.
	if err := pki.CheckCSR(csr, c.spec); err != nil {
		return csr, err, nil
	}
	return csr, nil, nil
}

// sign finds the certificate's issuer and signs.
func (s *Issuance) sign(ctx context.Context, c *certEntry, csr *x509.CertificateRequest, now time.Time) (*agentproto.Issued, error) {
	signer, err := s.signers.Signer(c.spec.IssuerRef)
	if err != nil {
		return nil, err
	}
	if signer == nil {
		return nil, errors.New("issuer " + strconv.Quote(c.spec.IssuerRef) + " is not available")
	}
	return signer.Sign(ctx, c.spec, csr, now)
}

// orderer is the certificate's issuer when it orders asynchronously
// (ACME); an unavailable issuer is left to sign to report.
func (s *Issuance) orderer(name string) (issuer.Orderer, bool) {
	signer, err := s.signers.Signer(name)
	if err != nil {
		return nil, false
	}
	o, ok := signer.(issuer.Orderer)
	return o, ok
}

// refuse records a rejected CSR or a failed signing and returns the
// answer: Rejected (csr_mismatch, or name_not_permitted when the issuer's
// CA may not sign the spec's names), or Unavailable (issuer_unavailable)
// with the backoff as Retry-After.
func (s *Issuance) refuse(ctx context.Context, c *certEntry, name, agent string, now time.Time, result string, cause error) error {
	d, err := s.ledger.refused(ctx, c, name, agent, now, result, cause)
	if err != nil {
		return unavailable(s.log, "record issue failure", err)
	}
	if result == resultRejected {
		code := agentproto.CodeCSRMismatch
		if failure.CodeOf(cause) == agentproto.CodeNameNotPermitted {
			code = agentproto.CodeNameNotPermitted // the CSR matched; the CA may not sign its names
		}
		return failure.WithCode(failure.New(failure.Rejected, d.LastError), code)
	}
	return failure.WithRetryAfter(failure.WithCode(
		failure.New(failure.Unavailable, "issuance failed; retry later"), agentproto.CodeIssuerUnavailable), d.NotBefore.Sub(now))
}

// currentFor is d's current version when it was issued for specHash, else nil.
func currentFor(d *state.Deployment, specHash string) *state.CertificateVersion {
	if d == nil || d.Current == nil || d.Current.SpecHash != specHash {
		return nil
	}
	return d.Current
}

// waiting is the answer to an issue request the server holds back without
// a failure (the CA's rate limit): 429 waiting, with why and Retry-After.
func waiting(why string, wait time.Duration) error {
	return failure.WithRetryAfter(failure.WithCode(failure.New(failure.RateLimited, why), agentproto.CodeWaiting), wait)
}
