package agent

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/testkit"
)

// TestServedChecksReportWhatIsServed is the outage the served checks are
// for: a renewed certificate is installed, but the service still serves
// the old one. The check reports the old serial (the server sees it differ
// from the installed one); once the service serves the new files, the new
// serial. A second assignment whose address refuses connections is
// reported with its error, without stopping the first.
func TestServedChecksReportWhatIsServed(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	e.sync(a)
	first := e.srv.find("shop").Current
	oldDir := t.TempDir()
	oldChain, oldKey := filepath.Join(oldDir, "fullchain.pem"), filepath.Join(oldDir, "key.pem")
	set := e.fileSet()
	writeFile(t, oldChain, set["fullchain.pem"], 0o600)
	writeFile(t, oldKey, set["key.pem"], 0o600)

	// Renew: the new certificate is installed, reloaded and verified.
	var renewAt time.Time
	e.srv.edit("shop", func(as *agentproto.Assignment) { renewAt = as.RenewAt })
	e.clock.Set(renewAt)
	e.sync(a)
	second := e.srv.find("shop").Current
	if second.Serial == first.Serial || a.state.get("shop").Serial != second.Serial {
		t.Fatalf("renewal did not install a new certificate: first %s, second %s, state %+v", first.Serial, second.Serial, a.state.get("shop"))
	}

	// The service restarts with its old configuration: the old pair.
	e.tls.Freeze(t, oldChain, oldKey)
	closed := testkit.ClosedAddr(t)
	a.assignments = append(a.assignments, agentproto.Assignment{Name: "api", CommonName: "api.example.com",
		Verify: &agentproto.Verify{Address: closed}})
	if err := a.CheckServed(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := e.srv.lastServed(t).Checks
	if len(got) != 2 {
		t.Fatalf("served checks = %+v, want shop and api", got)
	}
	shop, api := got[0], got[1]
	if shop.Certificate != "shop" || shop.Address != e.tls.Addr || shop.Serial != first.Serial || shop.Error != "" {
		t.Errorf("shop check = %+v, want the old serial %s served at %s (installed: %s)", shop, first.Serial, e.tls.Addr, second.Serial)
	}
	if !shop.NotAfter.Equal(first.NotAfter) || !shop.NotBefore.Equal(first.NotBefore) || !shop.CheckedAt.Equal(e.clock.Now().UTC()) {
		t.Errorf("shop check validity/time = %s..%s at %s, want %s..%s at %s", shop.NotBefore, shop.NotAfter, shop.CheckedAt,
			first.NotBefore, first.NotAfter, e.clock.Now())
	}
	if api.Certificate != "api" || api.Address != closed || api.Serial != "" || !strings.Contains(api.Error, "refused") {
		t.Errorf("api check = %+v, want connection refused", api)
	}

	// The service is reloaded: the new certificate is served.
	e.tls.Thaw()
	if err := a.CheckServed(t.Context()); err != nil {
		t.Fatal(err)
	}
	if shop := e.srv.lastServed(t).Checks[0]; shop.Serial != second.Serial || shop.Error != "" || !shop.NotAfter.Equal(second.NotAfter) {
		t.Errorf("shop check after the reload = %+v, want serial %s", shop, second.Serial)
	}
}

// TestServedCheckIgnoresTrust: the check, like the verify step, reads the
// leaf of a chain the agent does not trust (the test CA is in no pool).
func TestServedCheckIgnoresTrust(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	e.sync(a)
	leafPEM, _ := pem.Decode([]byte(e.fileSet()["cert.pem"]))
	leaf, err := x509.ParseCertificate(leafPEM.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{}); err == nil {
		t.Fatal("the test leaf is trusted by the system; the test proves nothing")
	}
	if err := a.CheckServed(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c := e.srv.lastServed(t).Checks[0]; c.Serial != leaf.SerialNumber.Text(16) || c.Error != "" {
		t.Errorf("check = %+v, want serial %s", c, leaf.SerialNumber.Text(16))
	}
}

// TestRunChecksServedPeriodically: Run checks after its first pass and
// again one interval (±10 %) later, not at every poll.
func TestRunChecksServedPeriodically(t *testing.T) {
	e := newEnv(t)
	e.cfg.PollInterval = 20 * time.Millisecond
	e.cfg.ServedCheckInterval = time.Hour
	e.cfg.Now = nil // real time: Run waits on real timers
	a := e.newAgent()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	testkit.WaitFor(t, 10*time.Second, "ten polls", func() bool {
		return len(e.srv.arrivalsOf("GET", agentproto.PathAssignments)) >= 10
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.arrivalsOf("POST", agentproto.PathServed)); n != 1 {
		t.Errorf("served reports over ten polls = %d, want 1 (the next is due in about an hour)", n)
	}
	if left := time.Until(a.nextServed); left < 53*time.Minute || left > 67*time.Minute {
		t.Errorf("next served check in %s, want an hour ±10 %%", left)
	}
}
