package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// rateOrder is an order of shop for agent from issuer le, limited to limit
// certificates per name set per week, starting at now.
func rateOrder(agent string, now time.Time, limit int) store.ACMEOrder {
	return store.ACMEOrder{Certificate: "shop", Agent: agent, SpecHash: "h1", Holder: "replica-a",
		StartedAt: now, ExpiresAt: now.Add(10 * time.Minute), Issuer: "le", NameSet: "shop.example.com", Limit: limit}
}

// recordRateIssued records a certificate of shop for agent issued at at,
// in the ledger, and releases its order.
func recordRateIssued(t *testing.T, st *store.Store, agent string, at time.Time, ari bool) {
	t.Helper()
	ctx := context.Background()
	v := state.CertificateVersion{Certificate: "shop", Agent: agent, SpecHash: "h1", Serial: "0a" + agent, SHA256: "ff",
		NotBefore: at, NotAfter: at.Add(90 * 24 * time.Hour), CertPEM: "cert", Issuer: "le", IssuedAt: at}
	if _, err := st.RecordIssuance(ctx, store.Issuance{Version: v, RenewAt: at.Add(60 * 24 * time.Hour),
		ACME: &store.ACMEIssuance{NameSet: "shop.example.com", ARIRenewal: ari}}); err != nil {
		t.Fatal(err)
	}
	if err := st.ReleaseACMEOrder(ctx, "shop", agent, "replica-a"); err != nil {
		t.Fatal(err)
	}
}

// Two replicas claiming orders for ten agents at once, with a limit of
// five certificates per name set per week: exactly five orders are
// claimed, the other five deployments wait (briefly: orders are in
// progress), saying why.
func TestClaimACMEOrderKeepsConcurrentClaimsWithinTheLimit(t *testing.T) {
	url := pgtest.DB(t)
	replicas := []*store.Store{openStore(t, url), openStore(t, url)}
	now := time.Now().UTC().Truncate(time.Second)
	var mu sync.Mutex
	var claimed, waiting []string
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			agent := fmt.Sprintf("web-%02d", i)
			c, err := replicas[i%2].ClaimACMEOrder(context.Background(), rateOrder(agent, now, 5))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("claim for %s: %v", agent, err)
			case c.Claimed:
				claimed = append(claimed, agent)
			case c.Wait != nil:
				waiting = append(waiting, agent)
				if !c.Wait.NotBefore.Equal(now.Add(time.Minute)) || !strings.Contains(c.Wait.Waiting, "0 issued and 5 being ordered") {
					t.Errorf("%s waits until %s: %q; want a minute, for the orders in progress", agent, c.Wait.NotBefore, c.Wait.Waiting)
				}
			default:
				t.Errorf("claim for %s: neither claimed nor waiting", agent)
			}
		})
	}
	wg.Wait()
	if len(claimed) != 5 || len(waiting) != 5 {
		t.Fatalf("claimed %v, waiting %v; want 5 and 5", claimed, waiting)
	}
}

// Without a limit no advisory lock serializes claims: ten replicas
// claiming the same order at once still give it to exactly one.
func TestClaimACMEOrderClaimsAnOrderOnce(t *testing.T) {
	url := pgtest.DB(t)
	now := time.Now().UTC().Truncate(time.Second)
	var replicas []*store.Store
	for range 10 {
		replicas = append(replicas, openStore(t, url))
	}
	var claimed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, st := range replicas {
		wg.Go(func() {
			<-start
			o := rateOrder("web-01", now, 0)
			o.Holder = fmt.Sprintf("replica-%d", i)
			c, err := st.ClaimACMEOrder(context.Background(), o)
			switch {
			case err != nil:
				t.Errorf("claim by replica %d: %v", i, err)
			case c.Wait != nil:
				t.Errorf("claim by replica %d waits without a limit: %+v", i, c.Wait)
			case c.Claimed:
				claimed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := claimed.Load(); n != 1 {
		t.Fatalf("%d replicas claimed the order, want 1", n)
	}
}

// The ledger over a week: certificates leave the 7-day window oldest
// first; an ARI renewal goes ahead over the limit and counts; a claim for
// an order already in progress is neither claimed nor held back; no limit
// means no ledger check.
func TestClaimACMEOrderSchedulesByTheLedger(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Second).Add(-6 * 24 * time.Hour)
	// Two certificates six and five days ago, within a limit of two.
	for i, agent := range []string{"web-01", "web-02"} {
		at := t0.Add(time.Duration(i) * 24 * time.Hour)
		if c, err := st.ClaimACMEOrder(ctx, rateOrder(agent, at, 2)); err != nil || !c.Claimed {
			t.Fatalf("claim %s: %+v, %v", agent, c, err)
		}
		recordRateIssued(t, st, agent, at, false)
	}
	now := t0.Add(6 * 24 * time.Hour)
	c, err := st.ClaimACMEOrder(ctx, rateOrder("web-03", now, 2))
	if err != nil || c.Wait == nil {
		t.Fatalf("third claim: %+v, %v; want a wait", c, err)
	}
	until := t0.Add(7 * 24 * time.Hour)
	want := "waiting for the CA's rate limit until " + until.Format(time.RFC3339) +
		" (issuer le allows 2 certificates for these names in 7 days: 2 issued)"
	if !c.Wait.NotBefore.Equal(until) || c.Wait.Waiting != want || c.Wait.SpecHash != "h1" {
		t.Errorf("wait: not_before %s, waiting %q, spec %q; want %s, %q, h1", c.Wait.NotBefore, c.Wait.Waiting, c.Wait.SpecHash, until, want)
	}
	// An ARI renewal of web-01 is not held back, and counts.
	ari := rateOrder("web-01", now, 2)
	ari.ARIRenewal = true
	if c, err := st.ClaimACMEOrder(ctx, ari); err != nil || !c.Claimed {
		t.Fatalf("ARI renewal claim: %+v, %v; want claimed", c, err)
	}
	// Claiming it again while it runs: in progress, neither claimed nor waiting.
	if c, err := st.ClaimACMEOrder(ctx, ari); err != nil || c.Claimed || c.Wait != nil {
		t.Fatalf("second claim of a running order: %+v, %v", c, err)
	}
	recordRateIssued(t, st, "web-01", now, true)
	// Once the first certificate left the window, two remain in it (the
	// second and the ARI renewal, which counts): web-03 waits for the
	// second to leave.
	c, err = st.ClaimACMEOrder(ctx, rateOrder("web-03", until.Add(time.Second), 2))
	if err != nil || c.Wait == nil || !c.Wait.NotBefore.Equal(t0.Add(8*24*time.Hour)) {
		t.Fatalf("claim after the first left: %+v, %v; want a wait until %s", c, err, t0.Add(8*24*time.Hour))
	}
	c, err = st.ClaimACMEOrder(ctx, rateOrder("web-03", t0.Add(8*24*time.Hour).Add(time.Second), 2))
	if err != nil || !c.Claimed {
		t.Fatalf("claim after the second left: %+v, %v; want claimed", c, err)
	}
	recordRateIssued(t, st, "web-03", t0.Add(8*24*time.Hour).Add(time.Second), false)
	ds, err := st.CertificateDeployments(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Waiting != "" {
			t.Errorf("%s still waiting after its certificate: %q", d.Agent, d.Waiting)
		}
	}
	// Without a limit nothing waits.
	if c, err := st.ClaimACMEOrder(ctx, rateOrder("web-04", t0.Add(8*24*time.Hour), 0)); err != nil || !c.Claimed {
		t.Fatalf("claim without a limit: %+v, %v", c, err)
	}
}

// A deployment waiting for the rate limit keeps its waiting state through
// an older agent's failed issue report (it reads "waiting" as "backoff"),
// counts as pending in the certificate's summary, and its failure count is
// untouched.
func TestRateLimitWaitIsNoFailure(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	recordRateIssued(t, st, "web-01", now, false)
	c, err := st.ClaimACMEOrder(ctx, rateOrder("web-02", now, 1))
	if err != nil || c.Wait == nil {
		t.Fatalf("claim: %+v, %v; want a wait", c, err)
	}
	d, err := st.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: "web-02", SpecHash: "h1",
		Result: state.DeploymentFailed, Stage: "issue", Error: "issue: 429 backoff: waiting for the CA's rate limit", At: now})
	if err != nil {
		t.Fatal(err)
	}
	if d.State != "" || d.LastError != "" || d.Waiting == "" || d.Failures != 0 {
		t.Errorf("after a failed issue report: state %q, last error %q, waiting %q, failures %d; want the wait kept",
			d.State, d.LastError, d.Waiting, d.Failures)
	}
	sums, err := st.DeploymentSummaries(ctx, []string{"shop"})
	if err != nil {
		t.Fatal(err)
	}
	if got := sums["shop"].States; got["pending"] != 1 || got["issued"] != 1 || len(got) != 2 {
		t.Errorf("summary states %v, want 1 pending (waiting) and 1 issued", got)
	}
}
