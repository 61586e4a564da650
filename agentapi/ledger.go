package agentapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/alert"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/textlimit"
)

// LedgerStore is where the Ledger records outcomes; *store.Store
// implements it. Every method is one transaction.
type LedgerStore interface {
	RecordIssuance(ctx context.Context, in store.Issuance) (state.Deployment, error)
	RecordIssueFailure(ctx context.Context, f store.IssueFailure) (state.Deployment, error)
	RecordReport(ctx context.Context, r store.DeploymentReport) (state.Deployment, error)
	RecordServed(ctx context.Context, agent string, checks []store.ServedCheck) (int, error)
}

// Ledger records what happened to a deployment — a certificate issued, an
// issue refused or failed (with its backoff), an agent's report — in
// Postgres, applies the row to the snapshot at once, counts it and
// announces failures.
type Ledger struct {
	store    LedgerStore
	snapshot *Snapshot
	events   *Announcer
	metrics  *Metrics
	now      func() time.Time
	log      *slog.Logger

	backoffBase, backoffCap time.Duration
}

// NewLedger returns a Ledger; cfg.BackoffBase, cfg.BackoffCap and cfg.Now
// are used.
func NewLedger(st LedgerStore, snapshot *Snapshot, events *Announcer, metrics *Metrics, cfg Config, logger *slog.Logger) *Ledger {
	cfg = cfg.withDefaults()
	return &Ledger{store: st, snapshot: snapshot, events: events, metrics: metrics, now: cfg.Now, log: orDiscard(logger),
		backoffBase: cfg.BackoffBase, backoffCap: cfg.BackoffCap}
}

// Issuance results, the result label of certops_issuance_total.
const (
	resultSuccess  = "success"  // signed and stored
	resultRejected = "rejected" // the CSR does not match the spec (422)
	resultFailure  = "failure"  // the issuer failed (503, backoff)
	resultError    = "error"    // signed but not stored (503, no backoff)
)

// acmeIssued is what an ACME order adds to the record of its certificate.
type acmeIssued struct {
	window *state.RenewalWindow // the CA's suggested renewal window, if any
	ledger store.ACMEIssuance   // the entry in the issuer's rate-limit ledger
}

// issued records a certificate issued for agent (with acme's additions
// when an ACME order obtained it) and counts it (success, or error when it
// could not be stored).
func (l *Ledger) issued(ctx context.Context, c *certEntry, name, agent string, issued *agentproto.Issued, renewAt, now time.Time, acme *acmeIssued) (state.Deployment, error) {
	iss := c.spec.IssuerRef
	in := store.Issuance{
		Version: state.CertificateVersion{
			Certificate: name, Agent: agent, SpecHash: c.specHash, Serial: issued.Serial, SHA256: issued.SHA256,
			NotBefore: issued.NotBefore, NotAfter: issued.NotAfter, CertPEM: issued.CertPEM, ChainPEM: issued.ChainPEM,
			Issuer: iss, IssuedAt: now,
		},
		RenewAt: renewAt,
	}
	if acme != nil {
		in.Version.RenewalWindow, in.ACME = acme.window, &acme.ledger
	}
	d, err := l.store.RecordIssuance(ctx, in)
	if err != nil {
		l.metrics.issuance.WithLabelValues(iss, resultError).Inc()
		return d, err
	}
	l.snapshot.applyDeployments([]state.Deployment{d})
	l.metrics.issuance.WithLabelValues(iss, resultSuccess).Inc()
	return d, nil
}

// refused records a refused or failed issuance on the deployment (its
// last error, one more failure, the backoff), counts it and announces the
// first failure since the last success or spec change.
func (l *Ledger) refused(ctx context.Context, c *certEntry, name, agent string, now time.Time, result string, cause error) (state.Deployment, error) {
	iss := c.spec.IssuerRef
	l.metrics.issuance.WithLabelValues(iss, result).Inc()
	msg := cause.Error()
	if result == resultFailure && !strings.Contains(msg, strconv.Quote(iss)) {
		msg = "issuer " + strconv.Quote(iss) + ": " + msg
	}
	msg = textlimit.Message(msg) // a CSR with thousands of names makes a long one
	l.log.Warn("issuance refused", "certificate", name, "agent", agent, "issuer", iss, "result", result, "err", cause)
	d, err := l.store.RecordIssueFailure(ctx, store.IssueFailure{
		Certificate: name, Agent: agent, SpecHash: c.specHash, Error: msg, At: now,
		Base: l.backoffBase, Cap: l.backoffCap,
	})
	if err != nil {
		return d, err
	}
	l.snapshot.applyDeployments([]state.Deployment{d})
	if d.Failures == 1 {
		l.events.Announce(alert.Alert{Name: alert.IssuanceFailed, Severity: alert.Warning, Subject: name + "@" + agent,
			Summary:     fmt.Sprintf("Issuance of %s for %s failed (%s)", name, agent, result),
			Description: msg, Labels: map[string]string{"certificate": name, "agent": agent, "issuer": iss}, Since: now})
	}
	return d, nil
}

// earliestReport is the earliest time a report may give: nothing certops
// issued predates it.
var earliestReport = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Report records the outcome of an agent's deployment attempt. A malformed
// report is Invalid, one for a certificate not assigned to the agent
// NotFound; a storage failure asks the agent to retry (Unavailable).
//
// The time rule: a report's at is not before 2000-01-01 and at most
// store.ReportClockSkew ahead of the server's clock (Invalid otherwise);
// a zero at, or one ahead within the skew, is taken as now. A report with
// a serial is only taken for a serial issued to this agent for this
// certificate, and not more than the skew after at (Invalid otherwise,
// nothing changes).
func (l *Ledger) Report(ctx context.Context, agent string, rep agentproto.Report) error {
	if rep.Bundle != "" {
		return l.bundleReport(agent, rep)
	}
	switch {
	case rep.Certificate == "":
		return failure.New(failure.Invalid, "certificate is required")
	case !knownResult(rep.Result):
		return badResult()
	case rep.Result == agentproto.ResultInstalled && rep.Serial == "":
		return failure.New(failure.Invalid, "an installed report needs the serial")
	}
	if l.snapshot.assigned(rep.Certificate, agent) == nil {
		return notAssigned(rep.Certificate)
	}
	at, err := reportTime("at", rep.At, l.now())
	if err != nil {
		return err
	}
	msg := reportMessage(rep)
	d, err := l.store.RecordReport(ctx, store.DeploymentReport{
		Certificate: rep.Certificate, Agent: agent, SpecHash: rep.SpecHash, Serial: rep.Serial,
		Result: state.DeploymentState(rep.Result), Stage: rep.Stage, Error: msg, At: at,
	})
	if errors.Is(err, store.ErrUnknownSerial) {
		return failure.New(failure.Invalid, fmt.Sprintf("serial %q was not issued to this agent for certificate %q (at %s or earlier)",
			rep.Serial, rep.Certificate, at.Add(store.ReportClockSkew).Format(time.RFC3339)))
	}
	if err != nil {
		return unavailable(l.log, "record report", err)
	}
	l.snapshot.applyDeployments([]state.Deployment{d})
	l.metrics.report(rep)
	if rep.Result != agentproto.ResultInstalled {
		l.events.Announce(alert.Alert{Name: alert.DeployFailed, Severity: alert.Warning,
			Subject:     rep.Certificate + "@" + agent,
			Summary:     fmt.Sprintf("Deployment of %s on %s %s", rep.Certificate, agent, rep.Result),
			Description: msg, Labels: map[string]string{"certificate": rep.Certificate, "agent": agent}, Since: at})
	}
	return nil
}

// reportTime applies the time rule of reports to the time field (named
// field) of a message: not before 2000-01-01 and at most
// store.ReportClockSkew ahead of now (Invalid otherwise); zero, or ahead
// within the skew, it is now.
func reportTime(field string, at, now time.Time) (time.Time, error) {
	switch {
	case at.IsZero():
		return now, nil
	case at.Before(earliestReport):
		return at, failure.New(failure.Invalid, field+" "+at.Format(time.RFC3339)+" is before "+earliestReport.Format(time.DateOnly))
	case at.After(now.Add(store.ReportClockSkew)):
		return at, failure.New(failure.Invalid, fmt.Sprintf("%s %s is more than %s ahead of the server's clock (%s)",
			field, at.Format(time.RFC3339), store.ReportClockSkew, now.Format(time.RFC3339)))
	case at.After(now):
		return now, nil
	}
	return at, nil
}

// notAssigned is the answer for a certificate that does not exist or is
// not assigned to the agent: the same for both.
func notAssigned(cert string) error {
	return failure.New(failure.NotFound, "certificate "+strconv.Quote(cert)+" is not assigned to this agent")
}

// unavailable logs a storage failure and returns the error that asks the
// agent to retry.
func unavailable(log *slog.Logger, what string, err error) error {
	log.Error("agent API: "+what, "err", err)
	return failure.WithRetryAfter(failure.New(failure.Unavailable, "temporarily unavailable; retry later"), 5*time.Second)
}

// knownResult tells whether a report's result is one of the protocol's.
func knownResult(result string) bool {
	switch result {
	case agentproto.ResultInstalled, agentproto.ResultFailed, agentproto.ResultRolledBack:
		return true
	}
	return false
}

func badResult() error {
	return failure.New(failure.Invalid, fmt.Sprintf("result must be %q, %q or %q",
		agentproto.ResultInstalled, agentproto.ResultFailed, agentproto.ResultRolledBack))
}

// reportMessage is what a report's failure is recorded as: its stage and
// error, bounded; "" for an installed report.
func reportMessage(rep agentproto.Report) string {
	if rep.Result == agentproto.ResultInstalled {
		return ""
	}
	msg := textlimit.Truncate(rep.Error, agentproto.MaxReportError)
	if rep.Stage != "" {
		msg = strings.TrimSpace(rep.Stage + ": " + msg)
	}
	return textlimit.Message(msg)
}
