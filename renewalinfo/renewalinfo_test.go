package renewalinfo_test

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/issuer/acmetest"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/renewalinfo"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
	"github.com/certops/certops/testkit/storekit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is a store on a fresh database, an issuer registry and a checker
// on a fake clock, logging into logs.
type env struct {
	st       *store.Store
	registry *issuer.Registry
	clock    *testkit.Clock
	reg      *prometheus.Registry
	logs     *testkit.Buffer
	checker  *renewalinfo.Checker
}

func newEnv(t *testing.T, opt renewalinfo.Options, issuers ...*spec.Object) *env {
	t.Helper()
	e := &env{st: storekit.Open(t), registry: issuer.NewRegistry(nil), clock: testkit.NewClock(time.Now().UTC().Truncate(time.Second)),
		reg: prometheus.NewRegistry(), logs: &testkit.Buffer{}}
	e.registry.Sync(issuers)
	opt.Now = e.clock.Now
	e.checker = renewalinfo.New(e.st, e.registry, opt, renewalinfo.NewMetrics(e.reg),
		slog.New(slog.NewTextHandler(e.logs, nil)))
	return e
}

// record stores v as issued at the clock's now, renewing at the point of
// its window as the agent API does.
func (e *env) record(t *testing.T, v state.CertificateVersion) state.Deployment {
	t.Helper()
	v.IssuedAt = e.clock.Now()
	renewAt := v.NotAfter.Add(-time.Hour)
	if w := v.RenewalWindow; w != nil {
		renewAt = assign.RenewalInWindow(w.Start, w.End, v.Certificate, v.Agent, v.IssuedAt)
	}
	d, err := e.st.RecordIssuance(context.Background(), store.Issuance{Version: v, RenewAt: renewAt})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (e *env) deployment(t *testing.T, cert, agent string) state.Deployment {
	t.Helper()
	ds, err := e.st.CertificateDeployments(context.Background(), cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Agent == agent {
			return d
		}
	}
	t.Fatalf("no deployment of %s on %s", cert, agent)
	return state.Deployment{}
}

// checkOnce runs one round and returns its counts.
func (e *env) checkOnce(t *testing.T) renewalinfo.Result {
	t.Helper()
	r, err := e.checker.CheckOnce(context.Background())
	if err != nil {
		t.Fatalf("CheckOnce: %v", err)
	}
	return r
}

// checks is certops_acme_renewal_info_checks_total{issuer, result}.
func (e *env) checks(iss, result string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "certops_acme_renewal_info_checks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["issuer"] == iss && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// pebbleCA issues certificates from a real Pebble through an http-01
// issuer whose challenges this test serves on Pebble's http-01 port.
type pebbleCA struct {
	pebble *acmetest.Server
	web    *webroot
}

func startPebble(t *testing.T) *pebbleCA {
	t.Helper()
	p := &pebbleCA{pebble: acmetest.Start(t, acmetest.Options{}), web: &webroot{tokens: map[string]string{}}}
	srv := &http.Server{Handler: p.web, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(p.pebble.HTTPListener) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

func (p *pebbleCA) issuer(t *testing.T, name string) *spec.Object {
	return &spec.Object{Kind: spec.KindIssuer, Name: name, Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{
		DirectoryURL: p.pebble.DirectoryURL, Email: "ops@certops.test", CABundleFile: p.pebble.CABundleFile,
		Profile: "default", AccountKeyFile: filepath.Join(t.TempDir(), name+".account.key"),
		Challenge: spec.ACMEChallenge{HTTP01: &spec.HTTP01Challenge{Webroot: "/var/www/acme"}},
	}}}
}

// order obtains a certificate for cert on agent from the named issuer,
// as the version the agent API would store.
func (p *pebbleCA) order(t *testing.T, r *issuer.Registry, iss, cert, agent string) state.CertificateVersion {
	t.Helper()
	host := cert + ".certops.test"
	p.pebble.AddA(t, host)
	c := &spec.CertificateSpec{IssuerRef: iss, CommonName: host, DNSNames: []string{host},
		PrivateKey: spec.PrivateKey{Algorithm: spec.AlgorithmECDSA, Size: 256}}
	key, err := pki.GenerateKey(agentproto.KeySpec{Algorithm: spec.AlgorithmECDSA, Size: 256})
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, err := pki.NewCSR(key, agentproto.Assignment{CommonName: host, DNSNames: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Signer(iss)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.(issuer.Orderer).Order(t.Context(), issuer.Order{Certificate: cert, Agent: agent, Spec: c, CSR: csr, Webroots: p.web})
	if err != nil {
		t.Fatalf("Order %s: %v", cert, err)
	}
	if res.RenewalWindow == nil {
		t.Fatalf("Pebble gave %s no renewal window", cert)
	}
	i := res.Issued
	return state.CertificateVersion{Certificate: cert, Agent: agent, SpecHash: "h1", Serial: i.Serial, SHA256: i.SHA256,
		NotBefore: i.NotBefore, NotAfter: i.NotAfter, CertPEM: i.CertPEM, ChainPEM: i.ChainPEM, Issuer: iss,
		RenewalWindow: res.RenewalWindow}
}

// The real scenario: three Pebble certificates checked a day after
// issuance. The one Pebble still gives the same window is unchanged (its
// deployment not written); the one whose window the CA moved renews at
// the point of the new window; the one revoked at Pebble, which then
// answers with a window in the past, renews now. Each move is logged
// (with the CA's explanation URL) and counted, and takes a new change_seq
// seen by the change feed. Pebble's Retry-After (6h) sets the next check:
// not after 5h, all three after 6h.
func TestChecksMoveRenewalsAtPebble(t *testing.T) {
	ca := startPebble(t)
	e := newEnv(t, renewalinfo.Options{}, ca.issuer(t, "pebble"))
	ctx := context.Background()
	same := e.record(t, ca.order(t, e.registry, "pebble", "same", "web-01"))
	moved := e.record(t, ca.order(t, e.registry, "pebble", "moved", "web-01"))
	revokedV := ca.order(t, e.registry, "pebble", "revoked", "web-01")
	revoked := e.record(t, revokedV)
	_, mark, err := e.st.DeploymentsSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}

	if r := e.checkOnce(t); len(r.Checked) != 0 {
		t.Fatalf("checked right after issuance: %+v; want nothing due", r)
	}
	now := e.clock.Advance(25 * time.Hour)
	newStart, newEnd := now.Add(10*24*time.Hour).Truncate(time.Second), now.Add(12*24*time.Hour).Truncate(time.Second)
	ca.pebble.SetRenewalInfo(t, moved.Current.CertPEM, newStart, newEnd, "https://ca.example/why")
	rv, err := e.registry.Revoker("pebble")
	if err != nil {
		t.Fatal(err)
	}
	if err := rv.Revoke(ctx, revokedV.CertPEM, spec.RevocationReasons["keyCompromise"]); err != nil {
		t.Fatal(err)
	}

	r := e.checkOnce(t)
	if r.Checked[renewalinfo.ResultUnchanged] != 1 || r.Checked[renewalinfo.ResultMoved] != 2 || len(r.Checked) != 2 {
		t.Fatalf("round: %+v; want 1 unchanged, 2 moved", r)
	}
	if d := e.deployment(t, "same", "web-01"); !d.RenewAt.Equal(same.RenewAt) || d.ChangeSeq != same.ChangeSeq {
		t.Errorf("same window: deployment %+v written; want renew_at %s and change_seq %d kept", d, same.RenewAt, same.ChangeSeq)
	}
	wantMoved := assign.RenewalInWindow(newStart, newEnd, "moved", "web-01", now).Truncate(time.Microsecond) // as stored
	d := e.deployment(t, "moved", "web-01")
	if !d.RenewAt.Equal(wantMoved) || d.RenewAt.Before(newStart) || d.ChangeSeq <= moved.ChangeSeq ||
		d.Current.RenewalWindow == nil || !d.Current.RenewalWindow.Start.Equal(newStart) || !d.Current.RenewalWindow.End.Equal(newEnd) {
		t.Errorf("moved window: deployment renew_at %s window %+v change_seq %d; want %s in %s–%s, a change_seq above %d",
			d.RenewAt, d.Current.RenewalWindow, d.ChangeSeq, wantMoved, newStart, newEnd, moved.ChangeSeq)
	}
	if d := e.deployment(t, "revoked", "web-01"); !d.RenewAt.Equal(now) || d.ChangeSeq <= revoked.ChangeSeq {
		t.Errorf("revoked at the CA: renew_at %s (was %s); want now, %s", d.RenewAt, revoked.RenewAt, now)
	}
	rows, _, err := e.st.DeploymentsSince(ctx, mark)
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{}
	for _, d := range rows {
		written[d.Certificate] = d.ChangeSeq > map[string]int64{"same": same.ChangeSeq, "moved": moved.ChangeSeq, "revoked": revoked.ChangeSeq}[d.Certificate]
	}
	if written["same"] || !written["moved"] || !written["revoked"] {
		t.Errorf("change feed since issuance: %v; want moved and revoked, not same", written)
	}
	logs := e.logs.String()
	if strings.Count(logs, "renewal moved") != 2 || !strings.Contains(logs, "explanation_url=https://ca.example/why") {
		t.Errorf("logs: want two moves, one with the CA's explanation URL:\n%s", logs)
	}
	if e.checks("pebble", "moved") != 2 || e.checks("pebble", "unchanged") != 1 {
		t.Errorf("metric: moved %v, unchanged %v; want 2, 1", e.checks("pebble", "moved"), e.checks("pebble", "unchanged"))
	}

	// Pebble's Retry-After is 6h: nothing is asked again before.
	e.clock.Advance(5 * time.Hour)
	if r := e.checkOnce(t); len(r.Checked) != 0 {
		t.Errorf("5h after a check with Retry-After 6h: %+v; want nothing checked", r)
	}
	e.clock.Advance(time.Hour)
	r = e.checkOnce(t)
	if n := r.Checked[renewalinfo.ResultUnchanged] + r.Checked[renewalinfo.ResultMoved]; n != 3 {
		t.Errorf("6h after: %+v; want the three asked again", r)
	}
	if d := e.deployment(t, "same", "web-01"); d.ChangeSeq != same.ChangeSeq {
		t.Errorf("same window checked again: change_seq %d, want %d", d.ChangeSeq, same.ChangeSeq)
	}
}

// An unreachable CA changes nothing but the next check, an hour later,
// for every version of that issuer in the round (one warning for the
// issuer); the check is retried then. A version of an issuer that is not
// (or no longer) an ACME issuer is unsupported and asked again a day
// later.
func TestUnreachableCAIsRetriedLater(t *testing.T) {
	down := &spec.Object{Kind: spec.KindIssuer, Name: "down", Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{
		DirectoryURL: "https://127.0.0.1:1/dir", AccountKeyFile: filepath.Join(t.TempDir(), "account.key"),
		Challenge: spec.ACMEChallenge{HTTP01: &spec.HTTP01Challenge{Webroot: "/var/www/acme"}}}}}
	e := newEnv(t, renewalinfo.Options{}, down)
	ctx := context.Background()
	now := e.clock.Now()
	certPEM, _, err := pki.NewCA(pki.CAOptions{}) // any certificate: the CA is never reached
	if err != nil {
		t.Fatal(err)
	}
	window := &state.RenewalWindow{Start: now.Add(20 * 24 * time.Hour), End: now.Add(22 * 24 * time.Hour)}
	version := func(cert, iss string) state.CertificateVersion {
		return state.CertificateVersion{Certificate: cert, Agent: "web-01", SpecHash: "h1", Serial: cert, SHA256: "ab",
			NotBefore: now, NotAfter: now.Add(30 * 24 * time.Hour), CertPEM: string(certPEM), Issuer: iss, RenewalWindow: window}
	}
	a, b := e.record(t, version("a", "down")), e.record(t, version("b", "down"))
	gone := e.record(t, version("gone", "removed-issuer"))

	now = e.clock.Advance(25 * time.Hour)
	r := e.checkOnce(t)
	if r.Checked[renewalinfo.ResultError] != 2 || r.Checked[renewalinfo.ResultUnsupported] != 1 {
		t.Fatalf("round: %+v; want 2 errors, 1 unsupported", r)
	}
	for _, before := range []state.Deployment{a, b, gone} {
		d := e.deployment(t, before.Certificate, "web-01")
		if !d.RenewAt.Equal(before.RenewAt) || d.ChangeSeq != before.ChangeSeq ||
			!d.Current.RenewalWindow.Start.Equal(window.Start) || !d.Current.RenewalWindow.End.Equal(window.End) {
			t.Errorf("%s after a failed check: %+v; want the deployment and window unchanged", before.Certificate, d)
		}
	}
	if n := strings.Count(e.logs.String(), "ACME renewal information unavailable"); n != 1 || !strings.Contains(e.logs.String(), "issuer=down") {
		t.Errorf("want one warning for issuer down:\n%s", e.logs)
	}
	due := func(at time.Time) []string {
		ds, err := e.st.DueRenewalInfo(ctx, at, 24*time.Hour, 10)
		if err != nil {
			t.Fatal(err)
		}
		var certs []string
		for _, d := range ds {
			certs = append(certs, d.Certificate)
		}
		return certs
	}
	if got := due(now.Add(59 * time.Minute)); len(got) != 0 {
		t.Errorf("due 59 minutes after the failure: %v; want none", got)
	}
	e.clock.Advance(time.Hour)
	if r := e.checkOnce(t); r.Checked[renewalinfo.ResultError] != 2 || len(r.Checked) != 1 {
		t.Errorf("an hour later: %+v; want the two failed ones retried (and failing)", r)
	}
	if got := due(now.Add(24*time.Hour - time.Minute)); slices.Contains(got, "gone") {
		t.Errorf("due just before a day after the unsupported check: %v; want it not", got)
	}
	if got := due(now.Add(24 * time.Hour)); !slices.Contains(got, "gone") {
		t.Errorf("due a day after the unsupported check: %v; want it", got)
	}
	if e.checks("down", "error") != 4 || e.checks("removed-issuer", "unsupported") != 1 {
		t.Errorf("metric: down/error %v, removed-issuer/unsupported %v; want 4, 1", e.checks("down", "error"), e.checks("removed-issuer", "unsupported"))
	}
}

// A round reads the due versions in batches of BatchSize until none is
// left, each version checked once; the next round finds nothing due.
func TestBoundedBatches(t *testing.T) {
	e := newEnv(t, renewalinfo.Options{BatchSize: 2})
	now := e.clock.Now()
	for _, cert := range []string{"a", "b", "c", "d", "e"} {
		e.record(t, state.CertificateVersion{Certificate: cert, Agent: "web-01", SpecHash: "h1", Serial: cert, SHA256: "ab",
			NotBefore: now, NotAfter: now.Add(30 * 24 * time.Hour), CertPEM: "not read", Issuer: "gone",
			RenewalWindow: &state.RenewalWindow{Start: now.Add(20 * 24 * time.Hour), End: now.Add(21 * 24 * time.Hour)}})
	}
	e.clock.Advance(25 * time.Hour)
	r := e.checkOnce(t)
	if r.Checked[renewalinfo.ResultUnsupported] != 5 || r.Batches != 3 {
		t.Errorf("round: %+v; want 5 checked in 3 batches (2, 2, 1)", r)
	}
	if r := e.checkOnce(t); len(r.Checked) != 0 || r.Batches != 1 {
		t.Errorf("next round: %+v; want nothing due", r)
	}
}

// Negative intervals are refused; 0 disables: Run returns at once.
func TestOptions(t *testing.T) {
	if err := (renewalinfo.Options{Interval: -time.Second}).Check(); err == nil || !strings.Contains(err.Error(), "ari-interval -1s") {
		t.Errorf("Check of a negative interval: %v", err)
	}
	if err := renewalinfo.Defaults().Check(); err != nil {
		t.Errorf("Check of the defaults: %v", err)
	}
	c := renewalinfo.New(nil, nil, renewalinfo.Options{}, nil, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { c.Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run with interval 0 did not return")
	}
}

// webroot answers Pebble's http-01 requests with the challenges presented.
type webroot struct {
	mu     sync.Mutex
	tokens map[string]string
}

func (w *webroot) PresentHTTP01(_ context.Context, ch issuer.HTTP01Challenge) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tokens[ch.Token] = ch.KeyAuth
	return nil
}

func (w *webroot) CleanUpHTTP01(_ context.Context, ch issuer.HTTP01Challenge) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.tokens, ch.Token)
	return nil
}

func (w *webroot) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
	w.mu.Lock()
	keyAuth, found := w.tokens[token]
	w.mu.Unlock()
	if !ok || !found {
		http.NotFound(rw, r)
		return
	}
	_, _ = rw.Write([]byte(keyAuth))
}
