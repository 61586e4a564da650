package agentapi_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certops/certops/agent"
	"github.com/certops/certops/agentapi"
	"github.com/certops/certops/issuer/acmetest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/testkit"
)

// acmeFleet is an agent API over Postgres with an http-01 ACME issuer of a
// real Pebble, and real agents writing the webroot Pebble validates from.
type acmeFleet struct {
	*env
	pebble  *acmetest.Server
	webroot string // served on Pebble's http-01 port
	dir     string
}

func newACMEFleet(t *testing.T) *acmeFleet {
	t.Helper()
	f := &acmeFleet{pebble: acmetest.Start(t, acmetest.Options{}), webroot: t.TempDir(), dir: t.TempDir()}
	f.env = newEnv(t, envOptions{cfg: agentapi.Config{BackoffBase: 10 * time.Second, ChallengeTimeout: 30 * time.Second,
		ChallengePoll: 50 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.api.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// The web server of the fleet: it serves the webroot where Pebble
	// fetches http-01 tokens.
	l := f.pebble.HTTPListener
	web := &http.Server{Handler: http.FileServer(http.Dir(f.webroot)), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = web.Serve(l) }()
	t.Cleanup(func() { _ = web.Close() })
	return f
}

// issuer is an http-01 ACME Issuer answering from webroot on the agents.
func (f *acmeFleet) issuer(name, webroot string) *spec.Object {
	return &spec.Object{Kind: spec.KindIssuer, Name: name, Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{
		DirectoryURL: f.pebble.DirectoryURL, Email: "ops@certops.test", CABundleFile: f.pebble.CABundleFile,
		Profile:        "default", // 90 days: Pebble picks a random profile otherwise
		AccountKeyFile: filepath.Join(f.dir, name+".account.key"),
		Challenge:      spec.ACMEChallenge{HTTP01: &spec.HTTP01Challenge{Webroot: webroot}},
	}}}
}

// cert is a certificate of issuer deployed by agents. The agents share
// this host, so the only file is the chain, the same for all of them (what
// agents install is tested elsewhere).
func (f *acmeFleet) cert(t *testing.T, name, iss string, agents ...string) *spec.Object {
	host := name + ".certops.test"
	f.pebble.AddA(t, host)
	f.pebble.AddA(t, "www."+host)
	return &spec.Object{Kind: spec.KindCertificate, Name: name, Spec: &spec.CertificateSpec{
		IssuerRef: iss, CommonName: host, DNSNames: []string{host, "www." + host},
		PrivateKey:  spec.PrivateKey{Algorithm: "ECDSA", Size: 256, RotationPolicy: "Always"},
		RenewBefore: "24h", // far from Pebble's ARI window (a third of the lifetime before expiry)
		Deploy: &spec.Deployment{Agents: agents,
			Files: spec.DeployFiles{Chain: filepath.Join(f.dir, name, "chain.pem")}},
	}}
}

// runAgent runs the agent runtime until the test ends.
func (f *acmeFleet) runAgent(t *testing.T, name string) {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(tokenOf(name)), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Server: f.http.URL, Name: name, TokenFile: tokenFile,
		StateDir: filepath.Join(t.TempDir(), "state"), PollInterval: 200 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// waitDeployments polls the deployments of cert until ok accepts them.
func (f *acmeFleet) waitDeployments(t *testing.T, cert string, what string, ok func([]state.Deployment) bool) []state.Deployment {
	t.Helper()
	var ds []state.Deployment
	done := false
	defer func() {
		if !done {
			t.Logf("deployments of %s: %+v", cert, ds)
		}
	}()
	testkit.WaitFor(t, 90*time.Second, "deployments of "+cert+": "+what, func() bool {
		var err error
		if ds, err = f.st.CertificateDeployments(context.Background(), cert); err != nil {
			t.Fatal(err)
		}
		return ok(ds)
	})
	done = true
	return ds
}

// http-01 end to end: two agents deploy the same names; each gets its own
// certificate (its own key), the challenges of both orders are written by
// both agents into the webroot Pebble validates from, the files are gone
// afterwards, the certificates chain to Pebble's root, and renewal follows
// Pebble's ARI window rather than renewBefore.
func TestACMEHTTP01EndToEnd(t *testing.T) {
	f := newACMEFleet(t)
	// Both agents run on this host: the same webroot for both, as a fleet
	// of web servers behind one name would each have theirs.
	agents := []string{"web-01", "web-02"}
	shop := f.cert(t, "shop", "pebble", agents...)
	f.apply(f.issuer("pebble", f.webroot), agentObj("web-01", nil), agentObj("web-02", nil), shop)
	f.refresh()
	f.runAgent(t, "web-01")
	f.runAgent(t, "web-02")

	ds := f.waitDeployments(t, "shop", "both installed", func(ds []state.Deployment) bool {
		return len(ds) == 2 && ds[0].State == state.DeploymentInstalled && ds[1].State == state.DeploymentInstalled
	})
	roots := f.pebble.Roots(t)
	for _, d := range ds {
		leaf := parseLeaf(t, d.Current.CertPEM)
		inter := x509.NewCertPool()
		inter.AppendCertsFromPEM([]byte(d.Current.ChainPEM))
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "www.shop.certops.test"}); err != nil {
			t.Errorf("%s: certificate does not chain to Pebble's root: %v", d.Agent, err)
		}
		// Pebble's window: a third of the lifetime before expiry, ± a day.
		ideal := leaf.NotAfter.Add(-leaf.NotAfter.Sub(leaf.NotBefore) / 3)
		if d.RenewAt.Before(ideal.Add(-25*time.Hour)) || d.RenewAt.After(ideal.Add(25*time.Hour)) {
			t.Errorf("%s: renewAt %s is outside Pebble's ARI window around %s (certificate %s–%s)",
				d.Agent, d.RenewAt, ideal, leaf.NotBefore, leaf.NotAfter)
		}
		if d.InstalledSerial != d.Current.Serial {
			t.Errorf("%s: installed %s, current %s", d.Agent, d.InstalledSerial, d.Current.Serial)
		}
	}
	if ds[0].Current.Serial == ds[1].Current.Serial {
		t.Errorf("both agents got certificate %s; each should have its own key", ds[0].Current.Serial)
	}
	waitEmpty(t, filepath.Join(f.webroot, ".well-known", "acme-challenge"))
	if v, _ := f.metric("certops_issuance_total", map[string]string{"issuer": "pebble", "result": "success"}); v != 2 {
		t.Errorf("certops_issuance_total{success} = %v, want 2", v)
	}
}

// A challenge the CA cannot fetch (the agents write a webroot nobody
// serves) fails the order with the CA's problem document in the
// deployment's last_error; the agent retries once the backoff is over.
func TestACMEHTTP01FailureBacksOff(t *testing.T) {
	f := newACMEFleet(t)
	unserved := t.TempDir()
	f.apply(f.issuer("pebble", unserved), agentObj("web-01", nil), f.cert(t, "lost", "pebble", "web-01"))
	f.refresh()
	f.runAgent(t, "web-01")

	ds := f.waitDeployments(t, "lost", "a failed order", func(ds []state.Deployment) bool {
		return len(ds) == 1 && ds[0].Failures >= 1 && ds[0].LastError != ""
	})
	d := ds[0]
	if !strings.Contains(d.LastError, "urn:ietf:params:acme:error:unauthorized") ||
		!strings.Contains(d.LastError, "lost.certops.test") {
		t.Errorf("last_error = %q, want the CA's unauthorized problem for lost.certops.test", d.LastError)
	}
	if !d.NotBefore.After(f.clock.Now()) {
		t.Errorf("not_before %s: want a backoff after %s", d.NotBefore, f.clock.Now())
	}
	first := d.NotBefore

	// Still backing off: no second order. An order starts only from an
	// issue request: once the agents are told of the backoff, ask as
	// web-01, which the backoff must refuse.
	testkit.WaitFor(t, 10*time.Second, "the backoff in web-01's assignments", func() bool {
		return f.assignment("web-01", "lost").NotBefore.Equal(first)
	})
	if r := f.issue("web-01", "lost"); r.status != http.StatusTooManyRequests {
		t.Fatalf("issue request during the backoff: got %d %s, want 429", r.status, r.body)
	}
	if ds, _ := f.st.CertificateDeployments(context.Background(), "lost"); ds[0].Failures != 1 {
		t.Fatalf("failures = %d during the backoff, want 1", ds[0].Failures)
	}
	// Then the backoff ends.
	f.clock.Advance(11 * time.Second)
	ds = f.waitDeployments(t, "lost", "a second failed order", func(ds []state.Deployment) bool {
		return ds[0].Failures >= 2
	})
	if got := ds[0].NotBefore.Sub(f.clock.Now()); got < 15*time.Second || !ds[0].NotBefore.After(first) {
		t.Errorf("second backoff ends %s after now, want about 2 × the base (10s)", got)
	}
	waitEmpty(t, filepath.Join(unserved, ".well-known", "acme-challenge"))
}

func parseLeaf(t testing.TB, certPEM string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		t.Fatalf("no PEM in %q", certPEM)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitEmpty waits until dir holds no file (the agents removed the
// challenge files).
func waitEmpty(t *testing.T, dir string) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, dir+" to be empty", func() bool {
		entries, err := os.ReadDir(dir)
		return errors.Is(err, os.ErrNotExist) || (err == nil && len(entries) == 0)
	})
}
