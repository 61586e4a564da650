package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/testkit"
)

// nginx is a real nginx serving TLS on a loopback port, configured and
// controlled through its own prefix directory.
type nginx struct {
	t      *testing.T
	bin    string
	prefix string
	conf   string
	addr   string
}

// startNginx starts nginx serving certFile/keyFile for serverName on a
// loopback port. nginx needs certificate files to start, so a throwaway
// self-signed pair is written first, standing in for whatever a host had
// before certops. Without nginx installed the test is skipped, except in CI
// where it fails: .ci/run installs it.
func startNginx(t *testing.T, serverName, certFile, keyFile string) *nginx {
	t.Helper()
	bin := testkit.Program(t, "nginx", "nginx-light")
	writeSelfSigned(t, certFile, keyFile, serverName)
	prefix := t.TempDir()
	if err := os.Chmod(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n := &nginx{t: t, bin: bin, prefix: prefix, conf: filepath.Join(prefix, "nginx.conf")}
	// nginx binds the address its configuration names and cannot be handed
	// a listener: give it a port that was free, and another one should
	// something take it first.
	for attempt := 1; ; attempt++ {
		n.addr = testkit.FreeAddr(t)
		n.writeConf(serverName, certFile, keyFile)
		out, err := n.exec()
		if err == nil {
			break
		}
		log, _ := os.ReadFile(filepath.Join(n.prefix, "logs", "error.log"))
		if attempt < 3 && strings.Contains(string(out)+string(log), "Address already in use") {
			continue
		}
		t.Fatalf("nginx start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() { n.exec("-s", "quit") })
	testkit.WaitFor(t, waitTimeout, "nginx to listen", func() bool { _, err := n.servedCert(); return err == nil })
	return n
}

// writeConf writes the configuration serving certFile/keyFile for
// serverName on n.addr.
func (n *nginx) writeConf(serverName, certFile, keyFile string) {
	n.t.Helper()
	conf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  server {
    listen %[2]s ssl;
    server_name %[3]s;
    ssl_certificate %[4]s;
    ssl_certificate_key %[5]s;
    location / { return 200 "ok\n"; }
  }
}
`, n.prefix, n.addr, serverName, certFile, keyFile)
	if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

// argv is the command line of this nginx (its prefix, error log and
// configuration) followed by extra.
func (n *nginx) argv(extra ...string) []string {
	return append([]string{n.bin, "-p", n.prefix, "-e", filepath.Join(n.prefix, "logs", "error.log"), "-c", n.conf}, extra...)
}

// reloadArgv is the argv an agent runs to reload this nginx.
func (n *nginx) reloadArgv() []string { return n.argv("-s", "reload") }

// exec runs this nginx with extra arguments (none: start it) and returns
// its output.
func (n *nginx) exec(extra ...string) ([]byte, error) {
	argv := n.argv(extra...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

// servedCert dials nginx without SNI checks and returns the leaf it serves.
func (n *nginx) servedCert() (*x509.Certificate, error) {
	return n.leaf(&tls.Config{InsecureSkipVerify: true})
}

// verifyWithCA dials nginx as a real client would: SNI serverName, chain
// verified against the CA in caFile.
func (n *nginx) verifyWithCA(caFile, serverName string) (*x509.Certificate, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no CA in %s", caFile)
	}
	return n.leaf(&tls.Config{RootCAs: pool, ServerName: serverName})
}

// leaf completes a TLS handshake with nginx under cfg and returns the leaf
// certificate it served.
func (n *nginx) leaf(cfg *tls.Config) (*x509.Certificate, error) {
	d := &tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", n.addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

func writeSelfSigned(t *testing.T, certFile, keyFile, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bootstrap " + name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// yamlList renders argv as a YAML flow sequence.
func yamlList(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = fmt.Sprintf("%q", a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
