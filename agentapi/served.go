package agentapi

import (
	"context"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/store"
	"github.com/certops/certops/textlimit"
)

// maxServedSerialDigits bounds a served serial: RFC 5280 serials are at
// most 20 octets; allow twice as much from odd CAs.
const maxServedSerialDigits = 80

// Served records an agent's served checks (agentproto.ServedReport) on its
// deployments. The report is checked whole before anything is written: at
// least one and at most agentproto.MaxServedChecks checks; each for a
// certificate assigned to the agent (NotFound otherwise, as for reports),
// once, at the address of its deploy.verify; either an error or a hex serial
// with notBefore ≤ notAfter; checkedAt under the time rule of reports.
// Anything else is Invalid, naming the check, and nothing changes. A
// storage failure asks the agent to retry (Unavailable).
func (l *Ledger) Served(ctx context.Context, agent string, rep agentproto.ServedReport) error {
	switch n := len(rep.Checks); {
	case n == 0:
		return failure.New(failure.Invalid, "checks is empty")
	case n > agentproto.MaxServedChecks:
		return failure.New(failure.Invalid, fmt.Sprintf("%d checks in one report; at most %d", n, agentproto.MaxServedChecks))
	}
	now := l.now()
	checks := make([]store.ServedCheck, 0, len(rep.Checks))
	seen := make(map[string]bool, len(rep.Checks))
	for i, c := range rep.Checks {
		sc, err := l.servedCheck(agent, c, now)
		if err == nil && seen[c.Certificate] {
			err = failure.New(failure.Invalid, "certificate "+strconv.Quote(c.Certificate)+" is checked twice")
		}
		if err != nil {
			return failure.Wrap(failure.KindOf(err), fmt.Errorf("checks[%d]: %w", i, err))
		}
		seen[c.Certificate] = true
		checks = append(checks, sc)
	}
	if _, err := l.store.RecordServed(ctx, agent, checks); err != nil {
		return unavailable(l.log, "record served checks", err)
	}
	return nil
}

// servedCheck checks one served check of agent and returns it as stored.
func (l *Ledger) servedCheck(agent string, c agentproto.ServedCheck, now time.Time) (store.ServedCheck, error) {
	if c.Certificate == "" {
		return store.ServedCheck{}, failure.New(failure.Invalid, "certificate is required")
	}
	ce := l.snapshot.assigned(c.Certificate, agent)
	if ce == nil {
		return store.ServedCheck{}, notAssigned(c.Certificate)
	}
	if d := ce.spec.Deploy; d == nil || d.Verify == nil || d.Verify.Address == "" {
		return store.ServedCheck{}, failure.New(failure.Invalid, "certificate "+strconv.Quote(c.Certificate)+" has no deploy.verify address to check")
	} else if c.Address != d.Verify.Address {
		return store.ServedCheck{}, failure.New(failure.Invalid, fmt.Sprintf("address %q is not the deploy.verify address of certificate %q (%q)",
			c.Address, c.Certificate, d.Verify.Address))
	}
	at, err := reportTime("checkedAt", c.CheckedAt, now)
	if err != nil {
		return store.ServedCheck{}, err
	}
	sc := store.ServedCheck{Certificate: c.Certificate, CheckedAt: at}
	switch {
	case c.Error != "" && (c.Serial != "" || !c.NotAfter.IsZero() || !c.NotBefore.IsZero()):
		return sc, failure.New(failure.Invalid, "a check has either an error or a serial with its validity, not both")
	case c.Error != "":
		sc.Error = textlimit.Message(textlimit.Truncate(c.Error, agentproto.MaxServedError))
		return sc, nil
	case c.Serial == "":
		return sc, failure.New(failure.Invalid, "a check needs the served serial or the error")
	case c.NotAfter.IsZero() || c.NotBefore.IsZero():
		return sc, failure.New(failure.Invalid, "a served serial needs notBefore and notAfter")
	case c.NotBefore.After(c.NotAfter):
		return sc, failure.New(failure.Invalid, "notBefore "+c.NotBefore.Format(time.RFC3339)+" is after notAfter "+c.NotAfter.Format(time.RFC3339))
	}
	serial, ok := new(big.Int).SetString(c.Serial, 16)
	if !ok || serial.Sign() < 0 || len(c.Serial) > maxServedSerialDigits {
		return sc, failure.New(failure.Invalid, fmt.Sprintf("serial %q is not a hexadecimal serial number of at most %d digits", c.Serial, maxServedSerialDigits))
	}
	// As the issued serials are written (pki.NewIssued): lowercase, no
	// leading zeros, so that equal serials compare equal.
	sc.Serial, sc.NotBefore, sc.NotAfter = serial.Text(16), c.NotBefore, c.NotAfter
	return sc, nil
}
