package agentapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/alert"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// Issuance results, the result label of certops_issuance_total.
const (
	resultSuccess  = "success"  // signed and stored
	resultRejected = "rejected" // the CSR does not match the spec (422)
	resultFailure  = "failure"  // the issuer failed (503, backoff)
	resultError    = "error"    // signed but not stored (503, no backoff)
)

// issue serves POST certificates/{name}/issue. The checks run cheapest
// first; the ones that say "no" to a well-formed request for an assigned
// certificate (CSR mismatch, issuer failure) are recorded on the
// deployment and back the agent off.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, agent string) {
	name := r.PathValue("name")
	var req agentproto.IssueRequest
	if !decode(w, r, &req) {
		return
	}
	c, ok := s.objs.Load().assigned(name, agent)
	if !ok {
		// Same answer whether the certificate exists or not.
		failure.WriteHTTP(w, failure.New(failure.NotFound, "certificate "+strconv.Quote(name)+" is not assigned to this agent"))
		return
	}
	if req.SpecHash != c.specHash {
		failure.WriteHTTP(w, failure.New(failure.Conflict, "the certificate's spec changed; poll the assignments again"))
		return
	}
	now := s.now()
	if d := s.deployment(name, agent); d != nil && d.SpecHash == c.specHash && d.NotBefore.After(now) {
		failure.WriteHTTP(w, failure.WithRetryAfter(failure.New(failure.RateLimited,
			"backing off after "+strconv.Itoa(d.Failures)+" failed attempt(s): "+d.LastError), d.NotBefore.Sub(now)))
		return
	}
	csr, err := pki.ParseCSR([]byte(req.CSRPEM))
	if err != nil {
		failure.WriteHTTP(w, failure.New(failure.Invalid, "csrPEM: "+err.Error()))
		return
	}
	iss := c.spec.IssuerRef
	// The one check of the CSR against the spec, for every issuer: the
	// signers rely on it (see issuer.Signer), and an ACME order is only
	// claimed for a CSR that passed.
	if err := pki.CheckCSR(csr, c.spec); err != nil {
		s.refuse(r.Context(), w, c, name, agent, now, resultRejected, err)
		return
	}
	if o, ok := s.orderer(iss); ok {
		s.issueACME(w, r, c, name, agent, o, csr, now)
		return
	}
	start := time.Now()
	issued, err := s.sign(r.Context(), c, csr, now)
	s.metrics.issuanceDuration.WithLabelValues(iss).Observe(time.Since(start).Seconds())
	if err != nil {
		result := resultFailure
		if failure.KindOf(err) == failure.Rejected {
			result = resultRejected // e.g. a name outside the CA's name constraints
		}
		s.refuse(r.Context(), w, c, name, agent, now, result, err)
		return
	}
	d, err := s.store.RecordIssuance(r.Context(), store.Issuance{
		Version: state.CertificateVersion{
			Certificate: name, Agent: agent, SpecHash: c.specHash, Serial: issued.Serial, SHA256: issued.SHA256,
			NotBefore: issued.NotBefore, NotAfter: issued.NotAfter, CertPEM: issued.CertPEM, ChainPEM: issued.ChainPEM,
			Issuer: iss, IssuedAt: now,
		},
		RenewAt: assign.RenewalTime(c.spec, name, agent, issued.NotBefore, issued.NotAfter, s.cfg.RenewalJitter),
	})
	if err != nil {
		s.metrics.issuance.WithLabelValues(iss, resultError).Inc()
		s.unavailable(w, "record issuance", err)
		return
	}
	s.applyDeployments([]state.Deployment{d})
	s.metrics.issuance.WithLabelValues(iss, resultSuccess).Inc()
	s.log.Info("certificate issued", "certificate", name, "agent", agent, "issuer", iss,
		"serial", issued.Serial, "notAfter", issued.NotAfter)
	writeJSON(w, http.StatusOK, issued)
}

// sign finds the certificate's issuer and signs.
func (s *Server) sign(ctx context.Context, c *certEntry, csr *x509.CertificateRequest, now time.Time) (*agentproto.Issued, error) {
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
func (s *Server) orderer(name string) (issuer.Orderer, bool) {
	signer, err := s.signers.Signer(name)
	if err != nil {
		return nil, false
	}
	o, ok := signer.(issuer.Orderer)
	return o, ok
}

// refuse records a rejected CSR or a failed signing on the deployment —
// its last error, one more failure and the backoff — and answers 422 or
// 503 with Retry-After.
func (s *Server) refuse(ctx context.Context, w http.ResponseWriter, c *certEntry, name, agent string, now time.Time, result string, cause error) {
	d, err := s.recordRefusal(ctx, c, name, agent, now, result, cause)
	if err != nil {
		s.unavailable(w, "record issue failure", err)
		return
	}
	if result == resultRejected {
		failure.WriteHTTP(w, failure.WithCode(failure.New(failure.Rejected, d.LastError), agentproto.CodeCSRMismatch))
		return
	}
	failure.WriteHTTP(w, failure.WithRetryAfter(failure.WithCode(
		failure.New(failure.Unavailable, "issuance failed; retry later"), agentproto.CodeIssuerUnavailable), d.NotBefore.Sub(now)))
}

// recordRefusal records a refused or failed issuance on the deployment
// (its last error, one more failure, the backoff) and counts it.
func (s *Server) recordRefusal(ctx context.Context, c *certEntry, name, agent string, now time.Time, result string, cause error) (state.Deployment, error) {
	iss := c.spec.IssuerRef
	s.metrics.issuance.WithLabelValues(iss, result).Inc()
	msg := cause.Error()
	if result == resultFailure && !strings.Contains(msg, strconv.Quote(iss)) {
		msg = "issuer " + strconv.Quote(iss) + ": " + msg
	}
	s.log.Warn("issuance refused", "certificate", name, "agent", agent, "issuer", iss, "result", result, "err", cause)
	d, err := s.store.RecordIssueFailure(ctx, store.IssueFailure{
		Certificate: name, Agent: agent, SpecHash: c.specHash, Error: msg, At: now,
		Base: s.cfg.BackoffBase, Cap: s.cfg.BackoffCap,
	})
	if err != nil {
		return d, err
	}
	s.applyDeployments([]state.Deployment{d})
	if d.Failures == 1 { // the first failure since the last success or spec change
		s.announce(alert.Alert{Name: alert.IssuanceFailed, Severity: alert.Warning, Subject: name + "@" + agent,
			Summary:     fmt.Sprintf("Issuance of %s for %s failed (%s)", name, agent, result),
			Description: msg, Labels: map[string]string{"certificate": name, "agent": agent, "issuer": iss}, Since: now})
	}
	return d, nil
}
