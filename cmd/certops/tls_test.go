package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/testkit"
)

// testCA is a CA written to dir/ca.crt, able to issue serving and client
// certificates.
type testCA struct {
	ca       *pki.CA
	certFile string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{CommonName: name})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, name+".crt")
	if err := os.WriteFile(f, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return &testCA{ca: ca, certFile: f}
}

// issue writes a fresh pair for names to certFile and keyFile (each
// replaced by a rename, as a rotated Secret's files are) and returns the
// leaf.
func (c *testCA) issue(t *testing.T, certFile, keyFile string, client bool, names ...string) *x509.Certificate {
	t.Helper()
	chain, key, err := c.ca.IssueServing(names, time.Hour, client, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, keyFile, key)
	replaceFile(t, certFile, chain)
	certs, err := pki.ParseCertificatesPEM(chain)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (c *testCA) pool(t *testing.T) *x509.CertPool {
	t.Helper()
	p, err := pki.LoadCertPool(c.certFile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// handshake dials addr and returns the leaf the server presented, or the
// handshake's error.
func handshake(addr string, cfg *tls.Config) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func TestServeTLS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	writeFiles(t, repo, map[string]string{"base.yaml": issuerDoc})
	ca := newTestCA(t, dir, "server-ca")
	clientCA := newTestCA(t, dir, "client-ca")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := ca.issue(t, certFile, keyFile, false, "localhost", "127.0.0.1")

	srv := startServe(t, ctx, map[string]string{
		"CERTOPS_DATABASE_URL": pgtest.EmptyDB(t), "CERTOPS_REPO": repo,
		"CERTOPS_TLS_CERT_FILE": certFile, "CERTOPS_TLS_KEY_FILE": keyFile,
		"CERTOPS_TLS_CLIENT_CA_FILE": clientCA.certFile})
	if !strings.HasPrefix(srv.url, "https://") {
		t.Fatalf("serving URL %q, want https://", srv.url)
	}
	addr := strings.TrimPrefix(srv.url, "https://")
	_, port, _ := net.SplitHostPort(addr)
	trusting := &tls.Config{RootCAs: ca.pool(t)}

	t.Run("go client checks chain and names", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: trusting}, Timeout: 10 * time.Second}
		for _, u := range []string{srv.url, "https://localhost:" + port} {
			resp, err := hc.Get(u + "/healthz")
			if err != nil {
				t.Fatalf("GET %s/healthz: %v", u, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s/healthz: %d", u, resp.StatusCode)
			}
		}
		if _, err := handshake(addr, &tls.Config{RootCAs: ca.pool(t), ServerName: "other.example"}); err == nil {
			t.Fatal("handshake for a name the certificate does not carry succeeded")
		}
		if _, err := handshake(addr, &tls.Config{RootCAs: clientCA.pool(t)}); err == nil {
			t.Fatal("handshake trusting another CA succeeded")
		}
		if _, err := handshake(addr, &tls.Config{RootCAs: ca.pool(t), MaxVersion: tls.VersionTLS11}); err == nil {
			t.Fatal("TLS 1.1 handshake succeeded")
		}
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatal("plain HTTP answered 200 on the TLS port")
			}
		}
	})

	t.Run("openssl and curl verify the chain", func(t *testing.T) {
		for _, tool := range []string{"openssl", "curl"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Fatalf("%s not installed: %v", tool, err)
			}
		}
		cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-CAfile", ca.certFile,
			"-verify_return_error", "-verify_ip", "127.0.0.1", "-brief")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verification: OK") {
			t.Fatalf("openssl s_client: %v\n%s", err, out)
		}
		out, err = exec.CommandContext(ctx, "curl", "-sS", "--fail", "--cacert", ca.certFile,
			"https://localhost:"+port+"/healthz").CombinedOutput()
		if err != nil {
			t.Fatalf("curl --cacert: %v\n%s", err, out)
		}
		out, err = exec.CommandContext(ctx, "curl", "-sS", "--fail", "https://localhost:"+port+"/healthz").CombinedOutput()
		if err == nil {
			t.Fatalf("curl without the CA trusted the server:\n%s", out)
		}
	})

	t.Run("agent routes need a client certificate", func(t *testing.T) {
		get := func(cfg *tls.Config) (int, string, error) {
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
			resp, err := hc.Get(srv.url + "/agent/v1/assignments")
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var e struct {
				Error struct{ Code, Message string }
			}
			_ = json.Unmarshal(body, &e)
			return resp.StatusCode, e.Error.Message, nil
		}
		code, msg, err := get(trusting)
		if err != nil || code != http.StatusUnauthorized || !strings.Contains(msg, "client certificate") {
			t.Fatalf("without a client certificate: %d %q %v, want 401 asking for a client certificate", code, msg, err)
		}
		clientCert := func(c *testCA) tls.Certificate {
			cf, kf := filepath.Join(t.TempDir(), "c.crt"), filepath.Join(t.TempDir(), "c.key")
			c.issue(t, cf, kf, true, "web-01.example")
			pair, err := tls.LoadX509KeyPair(cf, kf)
			if err != nil {
				t.Fatal(err)
			}
			return pair
		}
		with := &tls.Config{RootCAs: ca.pool(t), Certificates: []tls.Certificate{clientCert(clientCA)}}
		code, msg, err = get(with)
		if err != nil || strings.Contains(msg, "client certificate") {
			t.Fatalf("with a client certificate: %d %q %v, want past the client check", code, msg, err)
		}
		// A certificate from another CA, sent anyway, fails the handshake.
		other := clientCert(ca)
		wrong := &tls.Config{RootCAs: ca.pool(t), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &other, nil
		}}
		if code, _, err := get(wrong); err == nil {
			t.Fatalf("client certificate of another CA: answered %d", code)
		}
		// The status API needs none.
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: trusting}, Timeout: 10 * time.Second}
		resp, err := hc.Get(srv.url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	})

	t.Run("rotation", func(t *testing.T) {
		second := ca.issue(t, certFile, keyFile, false, "localhost", "127.0.0.1")
		if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
			t.Fatal("same serial")
		}
		presents := func(want *x509.Certificate) func() bool {
			return func() bool {
				leaf, err := handshake(addr, trusting)
				return err == nil && leaf.SerialNumber.Cmp(want.SerialNumber) == 0
			}
		}
		testkit.WaitFor(t, 20*time.Second, "the next handshake to present the rotated certificate", presents(second))
		// A broken pair keeps the current one in service.
		replaceFile(t, certFile, []byte("not a certificate\n"))
		// The files are checked on handshakes: keep shaking hands.
		testkit.WaitFor(t, 20*time.Second, "serve to log the broken pair", func() bool {
			_, _ = handshake(addr, trusting)
			return strings.Contains(srv.logs.String(), "does not load")
		})
		if !presents(second)() {
			t.Fatal("after a broken rotation the server no longer presents the last good certificate")
		}
		third := ca.issue(t, certFile, keyFile, false, "localhost", "127.0.0.1")
		testkit.WaitFor(t, 20*time.Second, "the repaired pair to be served", presents(third))
	})
}

func TestServeTLSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.issue(t, certFile, keyFile, false, "localhost")
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"cert without key", map[string]string{"CERTOPS_TLS_CERT_FILE": certFile}},
		{"client CA without a pair", map[string]string{"CERTOPS_TLS_CLIENT_CA_FILE": ca.certFile}},
		{"missing key file", map[string]string{"CERTOPS_TLS_CERT_FILE": certFile, "CERTOPS_TLS_KEY_FILE": keyFile + ".missing"}},
		{"key of another pair", map[string]string{"CERTOPS_TLS_CERT_FILE": certFile, "CERTOPS_TLS_KEY_FILE": ca.certFile}},
		{"self issuer without names", map[string]string{"CERTOPS_TLS_SELF_ISSUER": "internal-ca"}},
		{"names without self issuer", map[string]string{"CERTOPS_TLS_DNS_NAMES": "localhost"}},
		{"self issuer and files", map[string]string{"CERTOPS_TLS_SELF_ISSUER": "internal-ca", "CERTOPS_TLS_DNS_NAMES": "localhost",
			"CERTOPS_TLS_CERT_FILE": certFile, "CERTOPS_TLS_KEY_FILE": keyFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"CERTOPS_DATABASE_URL": "postgres://127.0.0.1:1/none", "CERTOPS_REPO": dir}
			for k, v := range tc.env {
				env[k] = v
			}
			var out, errOut testkit.Buffer
			code := run(context.Background(), []string{"certops", "serve", "--listen", "127.0.0.1:0"},
				func(k string) string { return env[k] }, &out, &errOut)
			if code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", code, errOut.String())
			}
		})
	}
}

// --tls-self-issuer: serve gets its serving certificate from the localCA
// Issuer of its config, serving a temporary self-signed one until then.
func TestServeTLSSelfIssuer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{CommonName: "self ca"})
	if err != nil {
		t.Fatal(err)
	}
	caCert, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	replaceFile(t, caCert, certPEM)
	replaceFile(t, caKey, keyPEM)
	repo := filepath.Join(dir, "repo")
	writeFiles(t, repo, map[string]string{"base.yaml": strings.NewReplacer(
		"/etc/certops/ca/tls.crt", caCert, "/etc/certops/ca/tls.key", caKey).Replace(issuerDoc)})
	srv := startServe(t, ctx, map[string]string{
		"CERTOPS_DATABASE_URL": pgtest.EmptyDB(t), "CERTOPS_REPO": repo,
		"CERTOPS_TLS_SELF_ISSUER": "internal-ca", "CERTOPS_TLS_DNS_NAMES": "localhost,127.0.0.1"})
	addr := strings.TrimPrefix(srv.url, "https://")
	pool, err := pki.LoadCertPool(caCert)
	if err != nil {
		t.Fatal(err)
	}
	var leaf *x509.Certificate
	testkit.WaitFor(t, waitTimeout, "serve to present a certificate of its issuer", func() bool {
		leaf, err = handshake(addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
		return err == nil
	})
	if _, err := handshake(addr, &tls.Config{RootCAs: pool}); err != nil {
		t.Fatalf("for 127.0.0.1: %v", err)
	}
	if leaf.Issuer.CommonName != "self ca" {
		t.Errorf("issuer %q", leaf.Issuer.CommonName)
	}
	_, port, _ := net.SplitHostPort(addr)
	if out, err := exec.CommandContext(ctx, "curl", "-sS", "--fail", "--cacert", caCert, "https://localhost:"+port+"/healthz").CombinedOutput(); err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
}
