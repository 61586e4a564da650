package issuer

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/redact"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/textlimit"
)

// TypeExternal is the type of an issuer that runs a command (spec.external).
const TypeExternal = "external"

// Limits of an external issuer's command.
const (
	// MaxExternalOutput bounds the certificate chain a command prints;
	// more is a failed issuance.
	MaxExternalOutput = 1 << 20
	// maxExternalStderr is how much of a command's standard error (the
	// end of it) a failure message keeps.
	maxExternalStderr = 2048
	// externalClockSkew is how far in the future a returned certificate's
	// notBefore may be: the CA's clock is not certops'.
	externalClockSkew = time.Minute
)

// The environment variables an external issuer's command gets the request in.
const (
	EnvRequest     = "CERTOPS_REQUEST"
	EnvRequestFile = "CERTOPS_REQUEST_FILE"
)

// Request says whom an issuance is for beyond the certificate spec Sign
// gets: the certificate's name and the agent. The agent API puts it in the
// context of Sign with WithRequest; an external issuer hands it to its
// command.
type Request struct {
	Certificate string
	Agent       string
}

type requestKey struct{}

// WithRequest returns ctx carrying r for Signer.Sign.
func WithRequest(ctx context.Context, r Request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// requestFrom is the Request of ctx, or the zero Request.
func requestFrom(ctx context.Context) Request {
	r, _ := ctx.Value(requestKey{}).(Request)
	return r
}

// ExternalRequest is the JSON description of a request an external
// issuer's command gets in CERTOPS_REQUEST and in the file
// CERTOPS_REQUEST_FILE names. The CSR itself is on its standard input.
type ExternalRequest struct {
	Issuer      string `json:"issuer"`
	Certificate string `json:"certificate"`
	Agent       string `json:"agent"`
	CommonName  string `json:"commonName,omitempty"`
	// DNSNames, IPAddresses, URIs and EmailAddresses are the names the
	// certificate must carry, no more and no fewer.
	DNSNames       []string `json:"dnsNames,omitempty"`
	IPAddresses    []string `json:"ipAddresses,omitempty"`
	URIs           []string `json:"uris,omitempty"`
	EmailAddresses []string `json:"emailAddresses,omitempty"`
	// DurationSeconds is the lifetime the spec asks for (Duration in Go
	// syntax); the CA may shorten it.
	DurationSeconds int64  `json:"durationSeconds"`
	Duration        string `json:"duration"`
	// Usages are the key usages in cert-manager's canonical form ("server
	// auth"); without usages in the spec, what the local CA gives:
	// "digital signature" ("key encipherment" too for RSA keys) and
	// "server auth".
	Usages []string `json:"usages"`
}

// external runs an operator's command to sign (see spec.ExternalIssuer).
// It runs one command at a time: CA tools such as `openssl ca` keep a
// database that concurrent runs corrupt.
type external struct {
	name    string
	spec    spec.ExternalIssuer
	logger  *slog.Logger
	turn    chan struct{} // holds a token while a command runs
	anchors *caBundleFile // spec.CABundleFile, for trust bundles
}

func newExternal(name string, s spec.ExternalIssuer, logger *slog.Logger) *external {
	return &external{name: name, spec: s, logger: logger, turn: make(chan struct{}, 1), anchors: newCABundleFile(s.CABundleFile)}
}

// caCertificates are the CA certificates of spec.external.caBundleFile.
func (e *external) caCertificates(now time.Time) []*x509.Certificate {
	return e.anchors.certificates(now)
}

func (e *external) Type() string { return TypeExternal }

// usable checks what can be checked without running the command: its
// executable and the CA bundle exist.
func (e *external) usable(time.Time) error {
	if len(e.spec.Command) == 0 {
		return errors.New("spec.external.command is empty")
	}
	fi, err := os.Stat(e.spec.Command[0])
	switch {
	case err != nil:
		return fmt.Errorf("command: %w", err)
	case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("command %s is not an executable file", e.spec.Command[0])
	}
	if _, err := os.Stat(e.spec.CABundleFile); err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	return nil
}

func (e *external) status(now time.Time) string {
	if err := e.usable(now); err != nil {
		return err.Error()
	}
	return ""
}

// Sign runs the command for csr, which the caller has checked against the
// certificate spec (see Signer), and checks what it returns. A command
// that fails (non-zero exit, timeout, no certificate on its output) is a
// failure.Unavailable error with its standard error; so is a certificate
// that is not for the CSR's key or the spec's names, not valid at now, or
// does not chain to spec.external.caBundleFile: the CSR was right (the
// caller checked it), the CA was not, and the agent is to wait rather than
// be told its CSR does not match (as for Vault).
func (e *external) Sign(ctx context.Context, cert *spec.CertificateSpec, csr *x509.CertificateRequest, now time.Time) (*agentproto.Issued, error) {
	roots, err := pki.LoadCertPool(e.spec.CABundleFile)
	if err != nil {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: %w", e.name, err))
	}
	req := e.request(requestFrom(ctx), cert, csr)
	if err := e.wait(ctx); err != nil {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: %w", e.name, err))
	}
	defer func() { <-e.turn }()
	start := time.Now()
	out, err := e.run(ctx, req, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw}))
	took := time.Since(start)
	if err != nil {
		e.logger.Warn("external issuer command failed", "certificate", req.Certificate, "agent", req.Agent, "err", err)
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: %w", e.name, err))
	}
	issued, err := checkReturned(out, cert, csr, roots, now.Add(took))
	if err != nil {
		e.logger.Warn("external issuer returned a certificate certops refuses", "certificate", req.Certificate, "agent", req.Agent, "err", err)
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: certificate refused: %w", e.name, err))
	}
	e.logger.Info("external issuer signed", "certificate", req.Certificate, "agent", req.Agent,
		"serial", issued.Serial, "took", took.Round(time.Millisecond))
	return issued, nil
}

// wait takes the issuer's turn to run a command. It waits at most one
// timeout (the one run ahead ends by then, unless others were queued
// first): a failure then lets the agent back off instead of piling up
// requests.
func (e *external) wait(ctx context.Context) error {
	timeout := e.spec.TimeoutDuration()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case e.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("the commands of other issuances kept it busy for %s; retry later", timeout)
	}
}

// request describes the issuance for the command.
func (e *external) request(r Request, cert *spec.CertificateSpec, csr *x509.CertificateRequest) ExternalRequest {
	d := cert.DurationValue()
	return ExternalRequest{
		Issuer: e.name, Certificate: r.Certificate, Agent: r.Agent,
		CommonName: cert.CommonName, DNSNames: cert.DNSNames, IPAddresses: cert.IPAddresses,
		URIs: cert.URIs, EmailAddresses: cert.EmailAddresses,
		DurationSeconds: int64(d / time.Second), Duration: d.String(),
		Usages: requestUsages(cert.Usages, csr),
	}
}

// requestUsages are the spec's usages in canonical form, or the default
// ones for csr's key.
func requestUsages(usages []string, csr *x509.CertificateRequest) []string {
	if len(usages) == 0 {
		if _, isRSA := csr.PublicKey.(*rsa.PublicKey); isRSA {
			return []string{"digital signature", "key encipherment", "server auth"}
		}
		return []string{"digital signature", "server auth"}
	}
	out := make([]string, len(usages))
	for i, u := range usages {
		out[i] = strings.ReplaceAll(strings.ToLower(u), "-", " ")
	}
	return out
}

// run runs the command (no shell, in its own process group, killed as a
// whole on timeout) with csrPEM on its standard input and req in its
// environment, and returns its standard output.
func (e *external) run(ctx context.Context, req ExternalRequest, csrPEM []byte) ([]byte, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "certops-external-")
	if err != nil {
		return nil, fmt.Errorf("request file: %w", err)
	}
	defer os.RemoveAll(dir)
	reqFile := dir + "/request.json"
	if err := os.WriteFile(reqFile, body, 0o600); err != nil {
		return nil, fmt.Errorf("request file: %w", err)
	}

	timeout := e.spec.TimeoutDuration()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv := e.spec.Command
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	inOwnProcessGroup(cmd)
	cmd.WaitDelay = time.Second // bound the wait for pipes held by leftover children
	cmd.Env = e.environ(body, reqFile)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(csrPEM)
	stdout := &capBuffer{max: MaxExternalOutput}
	stderr := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("command %s timed out after %s (its process group was killed)%s", argv[0], timeout, stderrSuffix(stderr))
	case ctx.Err() != nil:
		return nil, fmt.Errorf("command %s: %w", argv[0], ctx.Err())
	case errors.Is(err, exec.ErrWaitDelay):
		// It exited 0 but left a child holding its output open.
	case err != nil:
		return nil, fmt.Errorf("command %s: %w%s", argv[0], err, stderrSuffix(stderr))
	}
	if stdout.overflow {
		return nil, fmt.Errorf("command %s printed more than %d bytes", argv[0], MaxExternalOutput)
	}
	return stdout.buf.Bytes(), nil
}

// environ is the command's environment: PATH from certops' own (nothing
// else of it: it holds the database URL, for one), the spec's env, and the
// request.
func (e *external) environ(request []byte, requestFile string) []string {
	env := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range e.spec.Env {
		env = append(env, k+"="+v)
	}
	return append(env, EnvRequest+"="+string(request), EnvRequestFile+"="+requestFile)
}

// checkReturned parses the chain a command printed (leaf first) and checks
// it: the leaf is for csr's key and cert's names, valid at now, and chains
// to roots through the other certificates printed.
func checkReturned(out []byte, cert *spec.CertificateSpec, csr *x509.CertificateRequest, roots *x509.CertPool, now time.Time) (*agentproto.Issued, error) {
	certs, err := pki.ParseCertificatesPEM(out)
	if err != nil {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("the command printed an unusable chain: %w", err))
	}
	if len(certs) == 0 {
		return nil, failure.Wrap(failure.Unavailable, errors.New("the command printed no PEM certificate"))
	}
	leaf := certs[0]
	if !pki.SamePublicKey(leaf.PublicKey, csr.PublicKey) {
		return nil, failure.Wrap(failure.Rejected, errors.New("the command returned a certificate for another key than the CSR's"))
	}
	if err := pki.CheckCertificateNames(leaf, cert); err != nil {
		return nil, err
	}
	if now.Add(externalClockSkew).Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
		return nil, failure.Wrap(failure.Rejected, fmt.Errorf("the command returned a certificate valid from %s to %s, not now (%s)",
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	}
	intermediates := x509.NewCertPool()
	var chain bytes.Buffer
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	verifyAt := now
	if verifyAt.Before(leaf.NotBefore) {
		verifyAt = leaf.NotBefore // within the skew allowed above
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: intermediates, CurrentTime: verifyAt,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, failure.Wrap(failure.Rejected, fmt.Errorf("the command returned a certificate that does not chain to caBundleFile: %w", err))
	}
	return pki.NewIssued(leaf, chain.String()), nil
}

// capBuffer keeps the first max bytes written to it and notes whether
// there were more.
type capBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); len(p) > room {
		c.buf.Write(p[:max(room, 0)])
		c.overflow = true
		return len(p), nil
	}
	c.buf.Write(p)
	return len(p), nil
}

// stderrSuffix is the end of a command's standard error as kept, with
// URLs' credentials masked, made printable and bounded, for an error
// message.
func stderrSuffix(t *tailBuffer) string {
	s := redact.Text(t.String())
	if len(s) > maxExternalStderr {
		s = "…" + s[len(s)-maxExternalStderr:] // the end says why; Bound repairs a cut rune
	}
	s = strings.TrimSpace(textlimit.Bound(s, maxExternalStderr+len("…")))
	if s == "" {
		return ""
	}
	return "; stderr: " + s
}
