package issuer

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/redact"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/testkit"
	"github.com/certops/certops/testkit/opensslca"
)

func externalObject(name string, e spec.ExternalIssuer) *spec.Object {
	return &spec.Object{Kind: spec.KindIssuer, Name: name, Spec: &spec.IssuerSpec{External: &e}}
}

// signExternal syncs a registry with one external issuer and signs the
// shop CSR with it for certificate "shop" and agent "web-01".
func signExternal(t *testing.T, e spec.ExternalIssuer) (*x509.CertificateRequest, string, error) {
	t.Helper()
	r, _, _ := newTestRegistry(t)
	r.Sync([]*spec.Object{externalObject("corporate", e)})
	s, err := r.Signer("corporate")
	if err != nil {
		t.Fatalf("Signer: %v", err)
	}
	if s.Type() != TypeExternal {
		t.Errorf("Type = %q, want %q", s.Type(), TypeExternal)
	}
	csr := shopCSR(t)
	ctx := WithRequest(context.Background(), Request{Certificate: "shop", Agent: "web-01"})
	issued, err := s.Sign(ctx, shopSpec(), csr, time.Now())
	if err != nil {
		return csr, "", err
	}
	return csr, issued.CertPEM + issued.ChainPEM, nil
}

func parseChain(t *testing.T, chain string) []*x509.Certificate {
	t.Helper()
	certs, err := pki.ParseCertificatesPEM([]byte(chain))
	if err != nil || len(certs) == 0 {
		t.Fatalf("chain %q: %v", chain, err)
	}
	return certs
}

func TestExternalSignsThroughOpenSSLCA(t *testing.T) {
	ca := opensslca.New(t, "OpenSSL Test CA")
	out := t.TempDir()
	// The script records what it was given, then signs with openssl ca.
	script := opensslca.Script(t, `printf '%s' "$CERTOPS_REQUEST" > '`+out+`/env.json'
cp "$CERTOPS_REQUEST_FILE" '`+out+`/file.json'
env > '`+out+`/environ'
exec '`+ca.SignScript(t)+`'
`)
	t.Setenv("CERTOPS_TEST_SECRET", "not-for-the-command")
	csr, chain, err := signExternal(t, spec.ExternalIssuer{
		Command: []string{script}, Env: map[string]string{"SIGN_PROFILE": "tls-server"}, CABundleFile: ca.CertFile,
	})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	certs := parseChain(t, chain)
	leaf := certs[0]
	if leaf.Issuer.CommonName != "OpenSSL Test CA" || len(certs) != 2 {
		t.Errorf("issued by %q with %d certificates, want OpenSSL Test CA and its certificate", leaf.Issuer.CommonName, len(certs))
	}
	if !pki.SamePublicKey(leaf.PublicKey, csr.PublicKey) {
		t.Error("the leaf is not for the CSR's key")
	}
	if diff := cmp.Diff(leaf.DNSNames, shopSpec().DNSNames); diff != "" {
		t.Errorf("DNS names (-got +want):\n%s", diff)
	}

	want := ExternalRequest{
		Issuer: "corporate", Certificate: "shop", Agent: "web-01", CommonName: "shop.example.com",
		DNSNames: []string{"shop.example.com", "www.shop.example.com"}, DurationSeconds: 86400, Duration: "24h0m0s",
		Usages: []string{"digital signature", "server auth"},
	}
	for _, f := range []string{"env.json", "file.json"} {
		var got ExternalRequest
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v: %s", f, err, b)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("%s (-got +want):\n%s", f, diff)
		}
	}
	environ, err := os.ReadFile(filepath.Join(out, "environ"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(environ), "SIGN_PROFILE=tls-server\n") || strings.Contains(string(environ), "not-for-the-command") {
		t.Errorf("the command's environment has not the spec's env alone from certops':\n%s", environ)
	}
	if _, err := os.Stat(strings.TrimSpace(grepEnv(string(environ), EnvRequestFile))); !os.IsNotExist(err) {
		t.Errorf("the request file is left behind: %v", err)
	}
}

func grepEnv(environ, name string) string {
	for _, line := range strings.Split(environ, "\n") {
		if v, ok := strings.CutPrefix(line, name+"="); ok {
			return v
		}
	}
	return ""
}

func TestExternalRefusesAnotherKey(t *testing.T) {
	ca := opensslca.New(t, "OpenSSL Test CA")
	// It ignores the CSR given and signs one for a key of its own, with the same names.
	script := opensslca.Script(t, `cat >/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key -subj /CN=shop.example.com \
	-addext subjectAltName=DNS:shop.example.com,DNS:www.shop.example.com -out other.csr 2>/dev/null
exec '`+ca.SignScript(t)+`' < other.csr
`)
	_, _, err := signExternal(t, spec.ExternalIssuer{Command: []string{script}, CABundleFile: ca.CertFile})
	wantKind(t, err, failure.Unavailable, "a certificate for another key than the CSR's")
}

func TestExternalRefusesOtherNames(t *testing.T) {
	ca := opensslca.New(t, "OpenSSL Test CA")
	script := opensslca.Script(t, `cat > request.csr
openssl ca -batch -config '`+ca.Config+`' -in request.csr -out issued.crt -subj /CN=evil.example.com 2>/dev/null
cat issued.crt
`)
	_, _, err := signExternal(t, spec.ExternalIssuer{Command: []string{script}, CABundleFile: ca.CertFile})
	wantKind(t, err, failure.Unavailable, `common name is "evil.example.com", want "shop.example.com"`)
}

func TestExternalRefusesChainToAnotherCA(t *testing.T) {
	ca := opensslca.New(t, "OpenSSL Test CA")
	other := opensslca.New(t, "Another CA")
	_, _, err := signExternal(t, spec.ExternalIssuer{Command: []string{ca.SignScript(t)}, CABundleFile: other.CertFile})
	wantKind(t, err, failure.Unavailable, "does not chain to caBundleFile")
}

func TestExternalCommandFails(t *testing.T) {
	script := opensslca.Script(t, `head -c 6000 /dev/zero | tr '\0' x >&2
echo >&2
echo "denied by policy, see https://admin:hunter2@ca.example.com/log" >&2
exit 3
`)
	_, _, err := signExternal(t, spec.ExternalIssuer{Command: []string{script}, CABundleFile: opensslca.New(t, "CA").CertFile})
	wantKind(t, err, failure.Unavailable, "exit status 3; stderr: …xxx")
	msg := err.Error()
	if !strings.HasSuffix(msg, "xxx\ndenied by policy, see https://"+redact.Mask+"@ca.example.com/log") {
		t.Errorf("the end of stderr is missing: %s", msg)
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("the password in stderr was not masked: %s", msg)
	}
	if len(msg) > 2300 {
		t.Errorf("the message is %d bytes long; stderr is not bounded", len(msg))
	}
}

func TestExternalTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	script := opensslca.Script(t, `sleep 60 &
echo $! > '`+pidFile+`'
echo "waiting for the CA" >&2
wait
`)
	start := time.Now()
	_, _, err := signExternal(t, spec.ExternalIssuer{Command: []string{script}, Timeout: "1s",
		CABundleFile: opensslca.New(t, "CA").CertFile})
	wantKind(t, err, failure.Unavailable, "timed out after 1s (its process group was killed); stderr: waiting for the CA")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Sign took %s after a 1s timeout", took)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The background sleep was in the group: it is gone or a zombie.
	testkit.WaitFor(t, 5*time.Second, "the command's child to die", func() bool {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return err != nil || strings.Contains(string(stat), ") Z ")
	})
}

func TestExternalBadOutput(t *testing.T) {
	ca := opensslca.New(t, "CA")
	for _, tt := range []struct{ name, body, want string }{
		{"nothing", "cat >/dev/null\n", "printed no PEM certificate"},
		{"a key", "cat >/dev/null\necho '-----BEGIN PRIVATE KEY-----'; echo 'AAAA'; echo '-----END PRIVATE KEY-----'\n", `PEM block "PRIVATE KEY"`},
		{"too much", "cat >/dev/null\nhead -c 1100000 /dev/zero\n", "printed more than 1048576 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			script := opensslca.Script(t, tt.body)
			_, _, err := signExternal(t, spec.ExternalIssuer{Command: []string{script}, CABundleFile: ca.CertFile})
			wantKind(t, err, failure.Unavailable, tt.want)
		})
	}
}

func TestExternalUnusable(t *testing.T) {
	ca := opensslca.New(t, "CA")
	dir := t.TempDir()
	notExec := filepath.Join(dir, "sign.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		e    spec.ExternalIssuer
		want string
	}{
		{"missing command", spec.ExternalIssuer{Command: []string{filepath.Join(dir, "nope")}, CABundleFile: ca.CertFile}, "no such file"},
		{"not executable", spec.ExternalIssuer{Command: []string{notExec}, CABundleFile: ca.CertFile}, "is not an executable file"},
		{"missing bundle", spec.ExternalIssuer{Command: []string{ca.SignScript(t)}, CABundleFile: filepath.Join(dir, "ca.pem")}, "CA bundle"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _ := newTestRegistry(t)
			r.Sync([]*spec.Object{externalObject("corporate", tt.e)})
			_, err := r.Signer("corporate")
			wantKind(t, err, failure.Unavailable, tt.want)
			if got := r.Status()["corporate"]; !strings.Contains(got, tt.want) {
				t.Errorf("status = %q, want it to say %q", got, tt.want)
			}
		})
	}
}

func TestExternalChainPEMIsTheRest(t *testing.T) {
	ca := opensslca.New(t, "OpenSSL Test CA")
	_, chain, err := signExternal(t, spec.ExternalIssuer{Command: []string{ca.SignScript(t)}, CABundleFile: ca.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(caPEM)
	certs := parseChain(t, chain)
	if len(certs) != 2 || !certs[1].Equal(mustParse(t, block.Bytes)) {
		t.Errorf("ChainPEM does not hold the CA certificate the command printed")
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestExternalRunsOneCommandAtATime: openssl ca's database does not
// survive concurrent runs, so the issuer runs its command once at a time.
func TestExternalRunsOneCommandAtATime(t *testing.T) {
	ca := opensslca.New(t, "OpenSSL Test CA")
	lock := filepath.Join(t.TempDir(), "running")
	script := opensslca.Script(t, `mkdir '`+lock+`' || { echo "another run is in progress" >&2; exit 1; }
sleep 0.2
rmdir '`+lock+`'
exec '`+ca.SignScript(t)+`'
`)
	r, _, _ := newTestRegistry(t)
	r.Sync([]*spec.Object{externalObject("corporate", spec.ExternalIssuer{Command: []string{script}, CABundleFile: ca.CertFile})})
	s, err := r.Signer("corporate")
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := s.Sign(context.Background(), shopSpec(), shopCSR(t), time.Now())
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Sign: %v", err)
		}
	}
}

// TestExternalBusyIssuerFailsAfterTimeout: a request that cannot get its
// turn within the timeout fails (Unavailable) rather than queue on.
func TestExternalBusyIssuerFailsAfterTimeout(t *testing.T) {
	ca := opensslca.New(t, "CA")
	e := newExternal("corporate", spec.ExternalIssuer{Command: []string{ca.SignScript(t)}, Timeout: "50ms", CABundleFile: ca.CertFile},
		slog.New(slog.DiscardHandler))
	e.turn <- struct{}{} // a command is running
	_, err := e.Sign(context.Background(), shopSpec(), shopCSR(t), time.Now())
	wantKind(t, err, failure.Unavailable, "the commands of other issuances kept it busy for 50ms")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Sign(ctx, shopSpec(), shopCSR(t), time.Now()); !errors.Is(err, context.Canceled) {
		t.Errorf("Sign with a canceled context: %v", err)
	}
	<-e.turn               // the command ends
	e.spec.Timeout = "30s" // time enough for openssl
	if _, err := e.Sign(context.Background(), shopSpec(), shopCSR(t), time.Now()); err != nil {
		t.Errorf("Sign once the issuer is free: %v", err)
	}
}
