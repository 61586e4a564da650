package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/textlimit"
)

// reload runs argv (no shell) with ReloadTimeout. The command runs in its
// own process group, killed as a whole on timeout.
func (a *Agent) reload(ctx context.Context, argv []string) error {
	if len(argv) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ReloadTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	inOwnProcessGroup(cmd)
	cmd.WaitDelay = time.Second // bound the wait for pipes held by leftover children
	out := &tailBuffer{max: 2048}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("reload %q timed out after %s (its process group was killed)%s", argv, a.cfg.ReloadTimeout, out.suffix())
	case errors.Is(err, exec.ErrWaitDelay):
		// The command exited 0 but left a child holding its output open.
	case err != nil:
		return fmt.Errorf("reload %q: %w%s", argv, err, out.suffix())
	}
	a.log.Debug("reloaded", "argv", argv, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if extra := t.buf.Len() - t.max; extra > 0 {
		t.buf.Next(extra)
	}
	return len(p), nil
}

// suffix is the output kept, made printable (valid UTF-8, no NUL or
// control characters but newlines and tabs), for an error message.
func (t *tailBuffer) suffix() string {
	s := strings.TrimSpace(textlimit.Clean(t.buf.String(), true))
	if s == "" {
		return ""
	}
	return "; output: " + s
}

// verify dials as.Verify.Address with SNI and compares the SHA-256 of the
// served leaf with want. It checks identity, not trust: the handshake does
// not verify the chain. The service may need a moment after its reload, so
// it retries for about three seconds.
func (a *Agent) verify(ctx context.Context, as agentproto.Assignment, want string) error {
	v := as.Verify
	sni := verifySNI(as)
	deadline := time.Now().Add(a.verifyWindow)
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		got, err := a.servedFingerprint(ctx, v.Address, sni)
		if err == nil && got == want {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("served certificate sha256 %s, installed %s", got, want)
		}
		if ctx.Err() != nil || time.Now().Add(delay).After(deadline) {
			return fmt.Errorf("verify %s (SNI %q) after %d attempts: %w", v.Address, sni, attempt, err)
		}
		sleep(ctx, delay)
		delay = min(2*delay, time.Second)
	}
}

// verifySNI is the server name of as's verification and served checks:
// Verify.ServerName, else the first DNS name, else the common name.
func verifySNI(as agentproto.Assignment) string {
	switch {
	case as.Verify != nil && as.Verify.ServerName != "":
		return as.Verify.ServerName
	case len(as.DNSNames) > 0:
		return as.DNSNames[0]
	}
	return as.CommonName
}

func (a *Agent) servedFingerprint(ctx context.Context, addr, sni string) (string, error) {
	leaf, err := a.servedLeaf(ctx, addr, sni)
	if err != nil {
		return "", err
	}
	return pki.Fingerprint(leaf.Raw), nil
}

// servedLeaf does a TLS handshake with addr (SNI sni) within VerifyTimeout
// and returns the leaf served. The chain is not verified: the verify step
// and the served checks look at what is served, not whether it is trusted.
func (a *Agent) servedLeaf(ctx context.Context, addr, sni string) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.VerifyTimeout)
	defer cancel()
	d := tls.Dialer{
		NetDialer: &net.Dialer{},
		Config: &tls.Config{
			ServerName:         sni,
			InsecureSkipVerify: true, // identity check by the caller, not trust
		},
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("no certificate served")
	}
	return certs[0], nil
}
