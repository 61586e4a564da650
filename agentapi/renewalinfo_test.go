package agentapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/renewalinfo"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/testkit"
)

// A certificate the CA revoked is renewed at once through ARI: a real
// agent installs an http-01 certificate from Pebble, the certificate is
// revoked at Pebble (which then suggests a window in the past), one check
// of the leader's renewal-information checker moves the deployment's
// renew_at to now, the agent API's snapshot (through the change feed)
// shows the new renewAt in the agent's assignment, and the agent renews:
// a new certificate from Pebble is installed.
func TestACMERevokedAtCARenewsThroughARI(t *testing.T) {
	f := newACMEFleet(t)
	f.apply(f.issuer("pebble", f.webroot), agentObj("web-01", nil), f.cert(t, "shop", "pebble", "web-01"))
	f.refresh()
	f.runAgent(t, "web-01")
	ds := f.waitDeployments(t, "shop", "installed", func(ds []state.Deployment) bool {
		return len(ds) == 1 && ds[0].State == state.DeploymentInstalled
	})
	before := ds[0]
	if before.Current.RenewalWindow == nil || !before.RenewAt.After(f.clock.Now().Add(24*time.Hour)) {
		t.Fatalf("installed deployment: renew_at %s, window %+v; want Pebble's window, weeks ahead", before.RenewAt, before.Current.RenewalWindow)
	}
	if a := f.assignment("web-01", "shop"); !a.RenewAt.Equal(before.RenewAt) {
		t.Fatalf("assignment renewAt %s, deployment %s", a.RenewAt, before.RenewAt)
	}

	rv, err := f.issuers.Revoker("pebble")
	if err != nil {
		t.Fatal(err)
	}
	if err := rv.Revoke(t.Context(), before.Current.CertPEM, spec.RevocationReasons["keyCompromise"]); err != nil {
		t.Fatal(err)
	}
	// The version is due a check: MaxAge (a day in serve) is a second here.
	checker := renewalinfo.New(f.st, f.issuers, renewalinfo.Options{MaxAge: time.Second, Now: f.clock.Now},
		renewalinfo.NewMetrics(prometheus.NewRegistry()), testLogger(t))
	now := f.clock.Advance(time.Second)
	r, err := checker.CheckOnce(context.Background())
	if err != nil || r.Checked[renewalinfo.ResultMoved] != 1 {
		t.Fatalf("CheckOnce: %+v, %v; want one moved window", r, err)
	}
	ds, err = f.st.CertificateDeployments(context.Background(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	if d := ds[0]; !d.RenewAt.Equal(now) || d.ChangeSeq <= before.ChangeSeq || d.Current.Serial != before.Current.Serial {
		t.Fatalf("after the check: renew_at %s, change_seq %d (was %d); want now %s and a new change_seq", d.RenewAt, d.ChangeSeq, before.ChangeSeq, now)
	}
	testkit.WaitFor(t, 10*time.Second, "the new renewAt in web-01's assignment", func() bool {
		return f.assignment("web-01", "shop").RenewAt.Equal(now)
	})

	ds = f.waitDeployments(t, "shop", "a renewed certificate installed", func(ds []state.Deployment) bool {
		return len(ds) == 1 && ds[0].Current.Serial != before.Current.Serial && ds[0].InstalledSerial == ds[0].Current.Serial
	})
	if st := f.pebble.CertStatus(t, ds[0].Current.Serial); st.Status != "Valid" {
		t.Errorf("renewed certificate at Pebble: %+v; want Valid", st)
	}
	if d := ds[0]; !d.RenewAt.After(now) || d.Current.RenewalWindow == nil {
		t.Errorf("renewed deployment: renew_at %s, window %+v; want a new window ahead", d.RenewAt, d.Current.RenewalWindow)
	}
	if st := f.pebble.CertStatus(t, before.Current.Serial); !strings.EqualFold(st.Status, "Revoked") {
		t.Errorf("replaced certificate at Pebble: %+v; want Revoked", st)
	}
}
