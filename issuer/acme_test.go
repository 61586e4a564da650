package issuer

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/issuer/acmetest"
	"github.com/certops/certops/spec"
)

// The test binary doubles as the dns-01 scripts: run with
// CERTOPS_ACMETEST_HELPER set, it writes TXT records into challtestsrv.
func TestMain(m *testing.M) {
	if mode := os.Getenv("CERTOPS_ACMETEST_HELPER"); mode != "" {
		os.Exit(dnsHelper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// dnsHelper is a present/cleanup script: `set FQDN VALUE` or `clear FQDN
// VALUE` (the script interface), `exec present|cleanup FQDN VALUE` (lego's
// exec provider) or `fail` (exits 1 with a message on stderr).
func dnsHelper(mode string, args []string) int {
	if mode == "exec" && len(args) == 3 {
		mode, args = map[string]string{"present": "set", "cleanup": "clear"}[args[0]], args[1:]
	}
	url := os.Getenv("CERTOPS_ACMETEST_CHALLSRV")
	var path string
	switch mode {
	case "set":
		path = "/set-txt"
	case "clear":
		path = "/clear-txt"
	default:
		fmt.Fprintln(os.Stderr, "zone example.test is locked by another change")
		return 1
	}
	if len(args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: FQDN VALUE, got %q\n", args)
		return 2
	}
	body, _ := json.Marshal(map[string]string{"host": args[0], "value": args[1]})
	resp, err := http.Post(url+path, "application/json", bytes.NewReader(body))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "challtestsrv:", resp.Status)
		return 1
	}
	return 0
}

// helperScript writes a script running the test binary as dnsHelper.
func helperScript(t *testing.T, pebble *acmetest.Server, mode string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), mode+".sh")
	script := fmt.Sprintf("#!/bin/sh\nCERTOPS_ACMETEST_HELPER=%s CERTOPS_ACMETEST_CHALLSRV=%s exec %q \"$@\"\n",
		mode, pebble.ChallSrvURL(), exe)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// acmeEnv is a Registry whose acme issuers count requests in reg.
type acmeEnv struct {
	pebble *acmetest.Server
	reg    *prometheus.Registry
	r      *Registry
	logs   *bytes.Buffer
	dir    string
}

func newACMEEnv(t *testing.T, opts acmetest.Options) *acmeEnv {
	t.Helper()
	// lego follows CNAMEs of _acme-challenge names through the system
	// resolver; the test names exist only in challtestsrv.
	t.Setenv("LEGO_DISABLE_CNAME_SUPPORT", "true")
	e := &acmeEnv{pebble: acmetest.Start(t, opts), reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}, dir: t.TempDir()}
	e.r = NewRegistry(slog.New(slog.NewTextHandler(e.logs, nil)), WithACME(ACMEOptions{
		Metrics: NewACMEMetrics(e.reg), ScriptTimeout: 20 * time.Second}))
	return e
}

// issuerObject is an acme Issuer of the test server with challenge ch.
func (e *acmeEnv) issuerObject(name string, ch spec.ACMEChallenge, profile string) *spec.Object {
	a := &spec.ACMEIssuer{DirectoryURL: e.pebble.DirectoryURL, Email: "ops@certops.test",
		AccountKeyFile: filepath.Join(e.dir, name+".account.key"), CABundleFile: e.pebble.CABundleFile,
		Profile: profile, Challenge: ch}
	if e.pebble.EABKeyID != "" {
		a.EAB = &spec.ACMEEAB{KeyID: e.pebble.EABKeyID, HMACFile: e.pebble.EABHMACFile}
	}
	return &spec.Object{Kind: spec.KindIssuer, Name: name, Spec: &spec.IssuerSpec{ACME: a}}
}

func (e *acmeEnv) orderer(t *testing.T, name string) Orderer {
	t.Helper()
	s, err := e.r.Signer(name)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := s.(Orderer)
	if !ok {
		t.Fatalf("issuer %q (%T) is not an Orderer", name, s)
	}
	return o
}

func acmeSpec(names ...string) *spec.CertificateSpec {
	return &spec.CertificateSpec{IssuerRef: "pebble", CommonName: names[0], DNSNames: names,
		PrivateKey: spec.PrivateKey{Algorithm: spec.AlgorithmECDSA, Size: 256}}
}

// verifyIssued checks the leaf chains to Pebble's root for every name.
func verifyIssued(t *testing.T, pebble *acmetest.Server, iss *agentproto.Issued, names ...string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(iss.CertPEM))
	if block == nil {
		t.Fatalf("no PEM leaf in %q", iss.CertPEM)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	if !inter.AppendCertsFromPEM([]byte(iss.ChainPEM)) {
		t.Fatalf("no chain in %q", iss.ChainPEM)
	}
	roots := pebble.Roots(t)
	for _, n := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: n}); err != nil {
			t.Errorf("leaf for %s does not verify against Pebble's root: %v", n, err)
		}
	}
	if iss.Serial != leaf.SerialNumber.Text(16) || !iss.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("Issued = serial %s notAfter %s, leaf has %s %s", iss.Serial, iss.NotAfter, leaf.SerialNumber.Text(16), leaf.NotAfter)
	}
	return leaf
}

func scriptsChallenge(present, cleanup string) spec.ACMEChallenge {
	return spec.ACMEChallenge{DNS01: &spec.DNS01Challenge{PresentScript: present, CleanupScript: cleanup, PropagationWait: "100ms"}}
}

// dns-01 through scripts, against a Pebble that requires EAB and rejects
// 30 % of the nonces: the account is created (key file 0600) and bound,
// badNonce answers are retried, the profile is honoured, the leaf chains to
// Pebble's root, ARI gives a window, a renewal names the certificate it
// replaces, and the account is found again by its key.
func TestACMEDNS01Scripts(t *testing.T) {
	// 30 %: of the about 30 POSTs at least one is refused (all pass with
	// probability 0.7^30 ≈ 2e-5), while lego's retry of one request, bounded
	// to 20 s, does not run out under the race detector (at 50 % a finalize
	// in CI saw its retries end in badNonce).
	e := newACMEEnv(t, acmetest.Options{EAB: true, NonceReject: 30})
	obj := e.issuerObject("pebble", scriptsChallenge(helperScript(t, e.pebble, "set"), helperScript(t, e.pebble, "clear")), "shortlived")
	e.r.Sync([]*spec.Object{obj})
	o := e.orderer(t, "pebble")
	c := acmeSpec("shop.certops.test", "www.shop.certops.test")
	ctx := t.Context()

	res, err := o.Order(ctx, Order{Certificate: "shop", Agent: "web-01", Spec: c, CSR: csrFor(t, c)})
	if err != nil {
		t.Fatalf("Order: %v\nlogs:\n%s", err, e.logs)
	}
	leaf := verifyIssued(t, e.pebble, res.Issued, c.DNSNames...)
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got > 6*24*time.Hour+time.Minute || got < 5*24*time.Hour {
		t.Errorf("lifetime %s, want the shortlived profile's 6 days", got)
	}
	if w := res.RenewalWindow; w == nil || !w.Valid() || w.Start.Before(leaf.NotBefore) || w.End.After(leaf.NotAfter) {
		t.Errorf("renewal window %+v, want one inside %v–%v", w, leaf.NotBefore, leaf.NotAfter)
	}
	fi, err := os.Stat(obj.Issuer().ACME.AccountKeyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("account key file: %v, mode %v; want 0600", err, fi.Mode())
	}

	// Renewal, naming the certificate it replaces.
	res2, err := o.Order(ctx, Order{Certificate: "shop", Agent: "web-01", Spec: c, CSR: csrFor(t, c), Replaces: leaf})
	if err != nil {
		t.Fatalf("renewal Order: %v", err)
	}
	verifyIssued(t, e.pebble, res2.Issued, c.DNSNames...)

	requests := func(action, status string) float64 {
		return testutil.ToFloat64(e.opts().Metrics.requests.WithLabelValues(action, status))
	}
	if requests("newOrder", "201") != 2 || requests("finalize", "200") != 2 || requests("newAccount", "201") != 1 {
		t.Errorf("requests: newOrder 201 = %v, finalize 200 = %v, newAccount 201 = %v; want 2, 2, 1\n%s",
			requests("newOrder", "201"), requests("finalize", "200"), requests("newAccount", "201"), dumpMetrics(t, e.reg))
	}
	if n := testutil.CollectAndCount(e.reg, "certops_acme_requests_total"); n == 0 || !strings.Contains(dumpMetrics(t, e.reg), `status="400"`) {
		t.Errorf("no badNonce (400) answer counted; Pebble rejects 30%% of the nonces:\n%s", dumpMetrics(t, e.reg))
	}

	// A new process with the same key file finds the account (no EAB needed).
	again := NewRegistry(nil)
	again.Sync([]*spec.Object{e.issuerObject("pebble", obj.Issuer().ACME.Challenge, "")})
	s, _ := again.Signer("pebble")
	if _, err := s.Sign(ctx, c, csrFor(t, c), time.Now()); err != nil {
		t.Fatalf("Sign with the existing account: %v", err)
	}
}

func (e *acmeEnv) opts() ACMEOptions { return e.r.acme }

func dumpMetrics(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			fmt.Fprintf(&b, "%s{", mf.GetName())
			for _, l := range m.GetLabel() {
				fmt.Fprintf(&b, "%s=%q,", l.GetName(), l.GetValue())
			}
			fmt.Fprintf(&b, "} %v\n", m.GetCounter().GetValue())
		}
	}
	return b.String()
}

// A present script that exits 1 fails the order with its stderr; so does
// the CA's problem document when the record is missing.
func TestACMEDNS01ScriptFails(t *testing.T) {
	e := newACMEEnv(t, acmetest.Options{})
	c := acmeSpec("fail.certops.test")

	e.r.Sync([]*spec.Object{e.issuerObject("pebble", scriptsChallenge(helperScript(t, e.pebble, "fail"), ""), "")})
	_, err := e.orderer(t, "pebble").Order(t.Context(), Order{Spec: c, CSR: csrFor(t, c)})
	var oe *OrderError
	if !errors.As(err, &oe) || !strings.Contains(err.Error(), "zone example.test is locked by another change") {
		t.Fatalf("Order with a failing script: %v; want an OrderError with the script's stderr", err)
	}

	// The script "succeeds" without writing the record: the CA says why.
	noop := filepath.Join(t.TempDir(), "noop.sh")
	if err := os.WriteFile(noop, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.r.Sync([]*spec.Object{e.issuerObject("pebble", scriptsChallenge(noop, ""), "")})
	_, err = e.orderer(t, "pebble").Order(t.Context(), Order{Spec: c, CSR: csrFor(t, c)})
	if err == nil || !strings.Contains(err.Error(), "urn:ietf:params:acme:error:unauthorized") {
		t.Fatalf("Order without the record: %v; want the CA's unauthorized problem", err)
	}
}

// dns-01 through lego's exec provider configured by an env file.
func TestACMEDNS01Provider(t *testing.T) {
	e := newACMEEnv(t, acmetest.Options{})
	envFile := filepath.Join(t.TempDir(), "dns.env")
	env := fmt.Sprintf("# lego exec provider\nexport EXEC_PATH=%q\nCERTOPS_PROPAGATION_WAIT=100ms\n", helperScript(t, e.pebble, "exec"))
	if err := os.WriteFile(envFile, []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	e.r.Sync([]*spec.Object{e.issuerObject("pebble",
		spec.ACMEChallenge{DNS01: &spec.DNS01Challenge{Provider: "exec", EnvFile: envFile}}, "")})
	c := acmeSpec("api.certops.test")
	res, err := e.orderer(t, "pebble").Order(t.Context(), Order{Spec: c, CSR: csrFor(t, c)})
	if err != nil {
		t.Fatalf("Order: %v", err)
	}
	verifyIssued(t, e.pebble, res.Issued, c.DNSNames...)
}

// Configuration errors need no ACME server.
func TestACMEConfigErrors(t *testing.T) {
	r := NewRegistry(nil)
	dir := t.TempDir()
	obj := func(name string, ch spec.ACMEChallenge) *spec.Object {
		return &spec.Object{Kind: spec.KindIssuer, Name: name, Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{
			DirectoryURL: "https://127.0.0.1:1/dir", AccountKeyFile: filepath.Join(dir, "account.key"), Challenge: ch}}}
	}
	badEnv := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(badEnv, []byte("PDNS_API_KEY=x\nnot a pair\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.Sync([]*spec.Object{
		obj("unknown", spec.ACMEChallenge{DNS01: &spec.DNS01Challenge{Provider: "route53"}}),
		obj("badenv", spec.ACMEChallenge{DNS01: &spec.DNS01Challenge{Provider: "pdns", EnvFile: badEnv}}),
		obj("nourl", spec.ACMEChallenge{DNS01: &spec.DNS01Challenge{Provider: "pdns"}}),
		obj("web", spec.ACMEChallenge{HTTP01: &spec.HTTP01Challenge{Webroot: "/var/www"}}),
	})
	status := r.Status()
	for name, want := range map[string]string{
		"unknown": `unknown DNS provider "route53" (supported: acmedns, cloudflare, exec, httpreq, pdns)`,
		"badenv":  "bad.env:2: want KEY=VALUE",
		"nourl":   "PDNS_API_KEY is required in the env file",
	} {
		if !strings.Contains(status[name], want) {
			t.Errorf("Status()[%q] = %q, want it to contain %q", name, status[name], want)
		}
		_, err := r.Signer(name)
		wantKind(t, err, failure.Unavailable, want)
	}
	// http-01 needs the agents: Sign alone refuses before any network call.
	s, err := r.Signer("web")
	if err != nil {
		t.Fatal(err)
	}
	c := acmeSpec("shop.certops.test")
	_, err = s.Sign(context.Background(), c, csrFor(t, c), time.Now())
	wantKind(t, err, failure.Invalid, "order through the agent API")
}

// An unreachable directory is remembered as the issuer's status.
func TestACMESetupFailure(t *testing.T) {
	r := NewRegistry(nil, WithACME(ACMEOptions{RequestTimeout: 2 * time.Second}))
	r.Sync([]*spec.Object{{Kind: spec.KindIssuer, Name: "down", Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{
		DirectoryURL: "https://127.0.0.1:1/dir", AccountKeyFile: filepath.Join(t.TempDir(), "account.key"),
		Challenge: scriptsChallenge("/bin/true", "")}}}})
	s, err := r.Signer("down")
	if err != nil {
		t.Fatal(err)
	}
	c := acmeSpec("shop.certops.test")
	_, err = s.Sign(context.Background(), c, csrFor(t, c), time.Now())
	wantKind(t, err, failure.Unavailable, "ACME directory https://127.0.0.1:1/dir")
	if st := r.Status()["down"]; !strings.Contains(st, "ACME directory") {
		t.Errorf("Status() = %q, want the setup failure", st)
	}
	if _, err := r.Signer("down"); failure.KindOf(err) != failure.Unavailable {
		t.Errorf("Signer right after a failed setup: %v, want unavailable", err)
	}
}

// TestDNSProvidersMatchSpec checks that validation accepts exactly the DNS
// providers compiled in: every name spec lists has a constructor, and
// every constructor is listed.
func TestDNSProvidersMatchSpec(t *testing.T) {
	var got []string
	for name := range dnsProviders {
		got = append(got, name)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(spec.DNSProviders))
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("constructors (-got) vs spec.DNSProviders (+want):\n%s", diff)
	}
}
