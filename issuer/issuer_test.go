package issuer

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/testkit"
)

// ---- helpers ----

// writeCA creates a CA named cn and writes ca.crt and ca.key into dir.
func writeCA(t *testing.T, dir, cn string) spec.LocalCAIssuer {
	t.Helper()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{CommonName: cn})
	if err != nil {
		t.Fatal(err)
	}
	files := spec.LocalCAIssuer{CertFile: filepath.Join(dir, "ca.crt"), KeyFile: filepath.Join(dir, "ca.key")}
	writeFile(t, files.CertFile, certPEM)
	writeFile(t, files.KeyFile, keyPEM)
	return files
}

// writeFile replaces path with data and moves its mtime forward, so a
// rewrite within the same clock tick still counts as a change.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	var mtime time.Time
	if fi, err := os.Stat(path); err == nil {
		mtime = fi.ModTime().Add(time.Second)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func localCAObject(name string, files spec.LocalCAIssuer) *spec.Object {
	return &spec.Object{Kind: spec.KindIssuer, Name: name, Spec: &spec.IssuerSpec{LocalCA: &files}}
}

func acmeObject(name string) *spec.Object {
	return &spec.Object{Kind: spec.KindIssuer, Name: name, Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{
		DirectoryURL: "https://acme.example.com/directory", AccountKeyFile: "/etc/certops/acme.key",
		Challenge: spec.ACMEChallenge{HTTP01: &spec.HTTP01Challenge{Webroot: "/var/www"}},
	}}}
}

func shopSpec() *spec.CertificateSpec {
	return &spec.CertificateSpec{
		IssuerRef:  "internal-ca",
		CommonName: "shop.example.com",
		DNSNames:   []string{"shop.example.com", "www.shop.example.com"},
		PrivateKey: spec.PrivateKey{Algorithm: spec.AlgorithmECDSA, Size: 256},
		Duration:   "24h",
	}
}

// csrFor makes a key and a CSR as an agent would for c.
func csrFor(t *testing.T, c *spec.CertificateSpec) *x509.CertificateRequest {
	t.Helper()
	a := agentproto.Assignment{CommonName: c.CommonName, DNSNames: c.DNSNames,
		Key: agentproto.KeySpec{Algorithm: c.PrivateKey.Algorithm, Size: c.PrivateKey.Size}}
	key, err := pki.GenerateKey(a.Key)
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.NewCSR(key, a)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func shopCSR(t *testing.T) *x509.CertificateRequest {
	t.Helper()
	return csrFor(t, shopSpec())
}

func newTestRegistry(t *testing.T) (*Registry, *testkit.Clock, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	r := NewRegistry(slog.New(slog.NewTextHandler(&logs, nil)))
	clock := testkit.NewClock(time.Now())
	r.now = clock.Now
	return r, clock, &logs
}

// issuedBy signs the shop CSR with the named issuer at now and returns the
// common name of the CA that signed it.
func issuedBy(t *testing.T, r *Registry, name string, now time.Time) string {
	t.Helper()
	s, err := r.Signer(name)
	if err != nil {
		t.Fatalf("Signer(%q): %v", name, err)
	}
	issued, err := s.Sign(context.Background(), shopSpec(), shopCSR(t), now)
	if err != nil {
		t.Fatalf("Sign with %q: %v", name, err)
	}
	block, _ := pem.Decode([]byte(issued.CertPEM))
	if block == nil {
		t.Fatalf("CertPEM is not PEM: %q", issued.CertPEM)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Issuer.CommonName
}

func wantKind(t *testing.T, err error, kind failure.Kind, substr string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), substr) {
		t.Fatalf("got error %v, want one containing %q", err, substr)
	}
	if got := failure.KindOf(err); got != kind {
		t.Errorf("kind of %v is %v, want %v", err, got, kind)
	}
}

// ---- tests ----

func TestLocalCASigns(t *testing.T) {
	r, clock, _ := newTestRegistry(t)
	files := writeCA(t, t.TempDir(), "CA one")
	r.Sync([]*spec.Object{localCAObject("internal-ca", files)})

	s, err := r.Signer("internal-ca")
	if err != nil {
		t.Fatalf("Signer: %v", err)
	}
	if got, want := s.Type(), TypeLocalCA; got != want {
		t.Errorf("Type() = %q, want %q", got, want)
	}
	issued, err := s.Sign(context.Background(), shopSpec(), shopCSR(t), clock.Now())
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	ca, err := pki.LoadCA(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	block, _ := pem.Decode([]byte(issued.CertPEM))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "www.shop.example.com", Roots: roots, CurrentTime: clock.Now()}); err != nil {
		t.Errorf("leaf does not verify against the CA file: %v", err)
	}
	if diff := cmp.Diff(r.Status(), map[string]string{"internal-ca": ""}); diff != "" {
		t.Errorf("Status (-got +want):\n%s", diff)
	}
}

func TestLocalCASignCanceled(t *testing.T) {
	r, clock, _ := newTestRegistry(t)
	r.Sync([]*spec.Object{localCAObject("internal-ca", writeCA(t, t.TempDir(), "CA"))})
	s, err := r.Signer("internal-ca")
	if err != nil {
		t.Fatalf("Signer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Sign(ctx, shopSpec(), shopCSR(t), clock.Now()); err != context.Canceled {
		t.Errorf("Sign with a canceled context: got %v, want %v", err, context.Canceled)
	}
}

func TestSignerUnknown(t *testing.T) {
	r, _, _ := newTestRegistry(t)
	_, err := r.Signer("nope")
	wantKind(t, err, failure.NotFound, `issuer "nope" is not defined`)
}

// A broken issuer is unavailable with its error; the others keep working.
func TestLoadErrorIsolated(t *testing.T) {
	r, clock, logs := newTestRegistry(t)
	dir := t.TempDir()
	good := writeCA(t, dir, "good CA")
	missing := spec.LocalCAIssuer{CertFile: filepath.Join(dir, "missing.crt"), KeyFile: filepath.Join(dir, "missing.key")}
	letsencrypt := acmeObject("letsencrypt")
	letsencrypt.Issuer().ACME.Challenge = spec.ACMEChallenge{DNS01: &spec.DNS01Challenge{Provider: "nope"}}
	r.Sync([]*spec.Object{localCAObject("good", good), localCAObject("broken", missing), letsencrypt})

	if got, want := issuedBy(t, r, "good", clock.Now()), "good CA"; got != want {
		t.Errorf("issued by %q, want %q", got, want)
	}
	_, err := r.Signer("broken")
	wantKind(t, err, failure.Unavailable, "missing.crt")
	_, err = r.Signer("letsencrypt")
	wantKind(t, err, failure.Unavailable, `unknown DNS provider "nope"`)

	status := r.Status()
	if len(status) != 3 || status["good"] != "" ||
		!strings.Contains(status["broken"], "missing.crt") ||
		!strings.Contains(status["letsencrypt"], `unknown DNS provider "nope"`) {
		t.Errorf("Status() = %q, want good healthy, broken naming missing.crt, letsencrypt naming its unknown provider", status)
	}
	if !strings.Contains(logs.String(), "loading the CA failed") {
		t.Errorf("logs do not report the load failure:\n%s", logs)
	}
}

func TestSyncReloadsChangedSpecOnly(t *testing.T) {
	r, clock, _ := newTestRegistry(t)
	one := writeCA(t, t.TempDir(), "CA one")
	two := writeCA(t, t.TempDir(), "CA two")

	r.Sync([]*spec.Object{localCAObject("internal-ca", one)})
	before, err := r.Signer("internal-ca")
	if err != nil {
		t.Fatalf("Signer: %v", err)
	}
	r.Sync([]*spec.Object{localCAObject("internal-ca", one)}) // same spec: kept
	after, err := r.Signer("internal-ca")
	if err != nil {
		t.Fatalf("Signer: %v", err)
	}
	if before != after {
		t.Error("Sync with an unchanged spec rebuilt the signer")
	}

	r.Sync([]*spec.Object{localCAObject("internal-ca", two)}) // changed spec: reloaded at once
	if got, want := issuedBy(t, r, "internal-ca", clock.Now()), "CA two"; got != want {
		t.Errorf("issued by %q, want %q", got, want)
	}
}

func TestSyncDropsRemovedIssuers(t *testing.T) {
	r, _, _ := newTestRegistry(t)
	files := writeCA(t, t.TempDir(), "CA")
	r.Sync([]*spec.Object{localCAObject("a", files), localCAObject("b", files)})
	r.Sync([]*spec.Object{localCAObject("a", files)})
	if _, err := r.Signer("a"); err != nil {
		t.Errorf("Signer(a): %v", err)
	}
	_, err := r.Signer("b")
	wantKind(t, err, failure.NotFound, `issuer "b" is not defined`)
	if diff := cmp.Diff(r.Status(), map[string]string{"a": ""}); diff != "" {
		t.Errorf("Status (-got +want):\n%s", diff)
	}
}

// Rotated files are picked up, but the files are looked at no more often
// than every ReloadCheckInterval.
func TestLocalCAReloadsRotatedFiles(t *testing.T) {
	r, clock, _ := newTestRegistry(t)
	dir := t.TempDir()
	files := writeCA(t, dir, "CA one")
	r.Sync([]*spec.Object{localCAObject("internal-ca", files)})
	t0 := clock.Now()
	if got, want := issuedBy(t, r, "internal-ca", t0), "CA one"; got != want {
		t.Errorf("issued by %q, want %q", got, want)
	}

	writeCA(t, dir, "CA two")
	if got, want := issuedBy(t, r, "internal-ca", t0.Add(ReloadCheckInterval/2)), "CA one"; got != want {
		t.Errorf("before the check interval: issued by %q, want %q", got, want)
	}
	if got, want := issuedBy(t, r, "internal-ca", t0.Add(ReloadCheckInterval)), "CA two"; got != want {
		t.Errorf("after the check interval: issued by %q, want %q", got, want)
	}
}

// A reload that fails keeps the CA loaded before and says so in Status.
func TestLocalCAKeepsCAWhenReloadFails(t *testing.T) {
	r, clock, _ := newTestRegistry(t)
	dir := t.TempDir()
	files := writeCA(t, dir, "CA one")
	r.Sync([]*spec.Object{localCAObject("internal-ca", files)})

	// Half a rotation: a new certificate, the old key.
	certPEM, _, err := pki.NewCA(pki.CAOptions{CommonName: "CA two"})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, files.CertFile, certPEM)
	clock.Advance(ReloadCheckInterval)
	if got, want := issuedBy(t, r, "internal-ca", clock.Now()), "CA one"; got != want {
		t.Errorf("issued by %q, want %q", got, want)
	}
	if got, want := r.Status()["internal-ca"], "CA key does not match"; !strings.Contains(got, want) {
		t.Errorf("Status = %q, want it to contain %q", got, want)
	}

	writeCA(t, dir, "CA three") // the rotation completes
	clock.Advance(ReloadCheckInterval)
	if got, want := issuedBy(t, r, "internal-ca", clock.Now()), "CA three"; got != want {
		t.Errorf("issued by %q, want %q", got, want)
	}
	if got := r.Status()["internal-ca"]; got != "" {
		t.Errorf("Status = %q, want healthy", got)
	}
}

// An issuer whose files appear after Sync (a Secret mounted late) becomes
// available at the next check.
func TestLocalCAFilesAppearLater(t *testing.T) {
	r, clock, _ := newTestRegistry(t)
	dir := t.TempDir()
	files := spec.LocalCAIssuer{CertFile: filepath.Join(dir, "ca.crt"), KeyFile: filepath.Join(dir, "ca.key")}
	r.Sync([]*spec.Object{localCAObject("internal-ca", files)})
	_, err := r.Signer("internal-ca")
	wantKind(t, err, failure.Unavailable, "no such file")

	writeCA(t, dir, "late CA")
	clock.Advance(ReloadCheckInterval)
	if got, want := issuedBy(t, r, "internal-ca", clock.Now()), "late CA"; got != want {
		t.Errorf("issued by %q, want %q", got, want)
	}
}

func TestRegistryConcurrentUse(t *testing.T) {
	r, clock, _ := newTestRegistry(t)
	one := writeCA(t, t.TempDir(), "CA one")
	two := writeCA(t, t.TempDir(), "CA two")
	r.Sync([]*spec.Object{localCAObject("internal-ca", one)})
	csr := shopCSR(t)

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 20 {
				s, err := r.Signer("internal-ca")
				if err != nil {
					t.Errorf("Signer: %v", err)
					return
				}
				if _, err := s.Sign(context.Background(), shopSpec(), csr, clock.Now()); err != nil {
					t.Errorf("Sign: %v", err)
					return
				}
				_ = r.Status()
			}
		})
		files := one
		if i%2 == 0 {
			files = two
		}
		wg.Go(func() { r.Sync([]*spec.Object{localCAObject("internal-ca", files)}) })
	}
	wg.Wait()
}

// TestCheckNames: the registry tells, before any CSR, which names a local
// CA's name constraints refuse; issuers it cannot judge pass.
func TestCheckNames(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{CommonName: "constrained", PermittedDNSDomains: []string{"example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	files := spec.LocalCAIssuer{CertFile: filepath.Join(dir, "ca.crt"), KeyFile: filepath.Join(dir, "ca.key")}
	writeFile(t, files.CertFile, certPEM)
	writeFile(t, files.KeyFile, keyPEM)
	r := NewRegistry(nil)
	r.Sync([]*spec.Object{localCAObject("ca", files)})
	inside := &spec.CertificateSpec{IssuerRef: "ca", CommonName: "shop.example.com", DNSNames: []string{"shop.example.com"}}
	if err := r.CheckNames("ca", inside); err != nil {
		t.Errorf("names inside the constraints: %v", err)
	}
	outside := &spec.CertificateSpec{IssuerRef: "ca", CommonName: "shop.example.com",
		DNSNames: []string{"shop.example.com", "shop.example.org"}, IPAddresses: []string{"10.0.0.1"}}
	err = r.CheckNames("ca", outside)
	if err == nil || !strings.Contains(err.Error(), `issuer "ca" cannot sign`) || !strings.Contains(err.Error(), "shop.example.org") ||
		!strings.Contains(err.Error(), "10.0.0.1") {
		t.Errorf("names outside the constraints: got %v, want an error naming shop.example.org and 10.0.0.1", err)
	}
	if err := r.CheckNames("undefined", outside); err != nil {
		t.Errorf("an undefined issuer: %v, want nil (its own status says why)", err)
	}
}

// CAExpirations lists the loaded local CAs' ends, and nothing for a CA
// that did not load or an ACME issuer.
func TestCAExpirations(t *testing.T) {
	r, _, _ := newTestRegistry(t)
	dir := t.TempDir()
	good := writeCA(t, dir, "good CA")
	missing := spec.LocalCAIssuer{CertFile: filepath.Join(dir, "missing.crt"), KeyFile: filepath.Join(dir, "missing.key")}
	r.Sync([]*spec.Object{localCAObject("good", good), localCAObject("broken", missing), acmeObject("letsencrypt")})
	ca, err := pki.LoadCA(good.CertFile, good.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	got := r.CAExpirations()
	if len(got) != 1 || !got["good"].Equal(ca.Certificate().NotAfter) {
		t.Errorf("CAExpirations() = %v, want only good at %s", got, ca.Certificate().NotAfter)
	}
}
