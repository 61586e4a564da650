package agent

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/redact"
	"github.com/certops/certops/textlimit"
)

// DefaultServedCheckInterval is how often Run checks what the services
// serve when Config.ServedCheckInterval is 0.
const DefaultServedCheckInterval = 10 * time.Minute

// servedParallel bounds the handshakes of one round of served checks.
const servedParallel = 8

// servedDue reports whether a round of served checks is due at now.
func (a *Agent) servedDue(now time.Time) bool {
	return a.cfg.ServedCheckInterval > 0 && a.identified && !now.Before(a.nextServed)
}

// CheckServed runs one round of served checks: for every assignment (of
// the last poll) with a Verify address, a TLS handshake with that address
// and SNI, as the verify step does (the chain is not verified), recording
// the served leaf's serial and validity or the error, and reports them on
// agentproto.PathServed. Each handshake is bounded by VerifyTimeout, at
// most eight run at once, and one address failing does not stop the
// others. It returns the error of delivering the report: a round that
// cannot be delivered is dropped (the next one reports afresh).
func (a *Agent) CheckServed(ctx context.Context) error {
	var todo []agentproto.Assignment
	for _, as := range a.assignments {
		if as.Verify != nil && as.Verify.Address != "" && certName.MatchString(as.Name) {
			todo = append(todo, as)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	checks := make([]agentproto.ServedCheck, len(todo))
	sem := make(chan struct{}, servedParallel)
	var wg sync.WaitGroup
	for i, as := range todo {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			checks[i] = a.checkServed(ctx, as)
		})
	}
	wg.Wait()
	mismatched := 0
	for _, c := range checks {
		st := a.state.get(c.Certificate)
		switch {
		case c.Error != "":
			a.log.Warn("served check failed", "certificate", c.Certificate, "address", c.Address, "err", c.Error)
		case st != nil && st.Serial != "" && st.Serial != c.Serial:
			mismatched++
			a.log.Warn("the service serves another certificate than the one installed", "certificate", c.Certificate,
				"address", c.Address, "served_serial", c.Serial, "installed_serial", st.Serial)
		}
	}
	a.log.Debug("served checks done", "checks", len(checks), "mismatched", mismatched)
	for len(checks) > 0 {
		n := min(len(checks), agentproto.MaxServedChecks)
		if err := a.client.served(ctx, agentproto.ServedReport{Checks: checks[:n]}); err != nil {
			return a.serverTrouble(err)
		}
		checks = checks[n:]
	}
	return nil
}

// checkServed checks one assignment's Verify address.
func (a *Agent) checkServed(ctx context.Context, as agentproto.Assignment) agentproto.ServedCheck {
	c := agentproto.ServedCheck{Certificate: as.Name, Address: as.Verify.Address}
	leaf, err := a.servedLeaf(ctx, as.Verify.Address, verifySNI(as))
	c.CheckedAt = a.now().UTC()
	if err != nil {
		// The error crosses to the server: printable, bounded, no credentials.
		c.Error = textlimit.Bound(redact.Text(err.Error()), agentproto.MaxServedError)
		return c
	}
	c.Serial, c.NotBefore, c.NotAfter = leaf.SerialNumber.Text(16), leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	return c
}

// checkServedIfDue runs a round of served checks when one is due and
// schedules the next one ServedCheckInterval (±10 %) later.
func (a *Agent) checkServedIfDue(ctx context.Context) {
	if !a.servedDue(a.now()) {
		return
	}
	a.nextServed = a.now().Add(spread(a.cfg.ServedCheckInterval, 0.1))
	if err := a.CheckServed(ctx); err != nil && ctx.Err() == nil {
		a.log.Warn("served checks not delivered; the next round reports afresh", "err", err)
	}
}

// spread is d moved by up to ±f·d at random, so agents started together
// do not check together.
func spread(d time.Duration, f float64) time.Duration {
	return d + time.Duration((rand.Float64()*2-1)*f*float64(d))
}
