// Package acmetest runs a real ACME server for tests: Pebble and
// pebble-challtestsrv, the module's pinned tools (`go tool pebble`), on
// loopback with random ports. Pebble validates challenges for real: its DNS
// is challtestsrv (names the test adds resolve to 127.0.0.1, TXT records the
// test sets answer dns-01) and it fetches http-01 tokens from
// 127.0.0.1:HTTPPort, where the test serves its webroot.
package acmetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/testkit"
)

// Options configure the server; the zero value is a plain Pebble.
type Options struct {
	// EAB makes Pebble require External Account Binding, with one key:
	// Server.EABKeyID and the HMAC in Server.EABHMACFile.
	EAB bool
	// NonceReject is the percentage of good nonces Pebble rejects as
	// badNonce; 0 keeps Pebble's default (5 %).
	NonceReject int
}

// Server is a running Pebble with its challenge test server, which is
// Pebble's DNS (the embedded DNS).
type Server struct {
	DirectoryURL string // https://127.0.0.1:PORT/dir
	CABundleFile string // the CA of Pebble's HTTPS listeners
	HTTPPort     int    // where Pebble fetches http-01 tokens (on 127.0.0.1)
	// HTTPListener listens on HTTPPort from the start, so no other
	// process can take the port: the test serves its webroot on it.
	HTTPListener net.Listener
	EABKeyID     string
	EABHMACFile  string
	*DNS         // the DNS Pebble resolves names with

	mgmtURL string // Pebble management (HTTPS)
	client  *http.Client
}

// DNS is a running pebble-challtestsrv DNS server whose records the test
// sets through its management API; names without records resolve to
// 127.0.0.1.
type DNS struct {
	Addr string // 127.0.0.1:PORT, UDP and TCP

	mgmtURL string // challtestsrv management (HTTP)
	client  *http.Client
}

const startTimeout = 60 * time.Second

// StartDNS runs a challtestsrv DNS server until the test ends: Start runs
// one as Pebble's; a second one gives the reconciler another view of DNS
// than the CA's.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	ports := freePorts(t, 2)
	d := &DNS{Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), mgmtURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		client: &http.Client{Timeout: 10 * time.Second}}
	run(t, "pebble-challtestsrv", nil,
		"-dnsserver", d.Addr, "-management", strings.TrimPrefix(d.mgmtURL, "http://"),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	waitFor(t, "challtestsrv", func() error { return d.ClearTXT("ready.test.") })
	return d
}

// Start runs Pebble and challtestsrv until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := writeTLSCert(t, dir)
	ports := freePorts(t, 2)
	web := testkit.Listen(t)
	s := &Server{
		DirectoryURL: fmt.Sprintf("https://127.0.0.1:%d/dir", ports[0]),
		CABundleFile: certFile,
		HTTPPort:     web.Addr().(*net.TCPAddr).Port,
		HTTPListener: web,
		mgmtURL:      fmt.Sprintf("https://127.0.0.1:%d", ports[1]),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool}}},
		DNS: StartDNS(t),
	}

	cfg := map[string]any{
		"listenAddress":           strings.TrimSuffix(strings.TrimPrefix(s.DirectoryURL, "https://"), "/dir"),
		"managementListenAddress": strings.TrimPrefix(s.mgmtURL, "https://"),
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                s.HTTPPort,
		"tlsPort":                 freePorts(t, 1)[0],
		"ocspResponderURL":        "",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":            "ecdsa",
		"profiles": map[string]any{ // the profiles Issuers may name
			"default":    map[string]any{"description": "90 days", "validityPeriod": 7776000},
			"shortlived": map[string]any{"description": "6 days", "validityPeriod": 518400},
		},
	}
	if opts.EAB {
		s.EABKeyID = "certops-test"
		hmac := make([]byte, 32)
		_, _ = rand.Read(hmac)
		encoded := base64.RawURLEncoding.EncodeToString(hmac)
		s.EABHMACFile = filepath.Join(dir, "eab.hmac")
		writeFile(t, s.EABHMACFile, []byte(encoded+"\n"), 0o600)
		cfg["externalAccountBindingRequired"] = true
		cfg["externalAccountMACKeys"] = map[string]string{s.EABKeyID: encoded}
	}
	b, err := json.Marshal(map[string]any{"pebble": cfg})
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "pebble.json")
	writeFile(t, cfgFile, b, 0o644)
	env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_AUTHZREUSE=0"}
	if opts.NonceReject > 0 {
		env = append(env, "PEBBLE_WFE_NONCEREJECT="+strconv.Itoa(opts.NonceReject))
	}
	run(t, "pebble", env, "-config", cfgFile, "-dnsserver", s.DNS.Addr)
	waitFor(t, "pebble", func() error {
		resp, err := s.client.Get(s.DirectoryURL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("directory: %s", resp.Status)
		}
		return nil
	})
	return s
}

// AddA makes host resolve to 127.0.0.1.
func (d *DNS) AddA(t testing.TB, host string) {
	t.Helper()
	if err := post(d.client, d.mgmtURL+"/add-a", map[string]any{"host": host, "addresses": []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
}

// SetTXT adds a TXT record (host is a FQDN with the trailing dot).
func (d *DNS) SetTXT(host, value string) error {
	return post(d.client, d.mgmtURL+"/set-txt", map[string]string{"host": host, "value": value})
}

// ClearTXT removes the TXT records of host.
func (d *DNS) ClearTXT(host string) error {
	return post(d.client, d.mgmtURL+"/clear-txt", map[string]string{"host": host})
}

// ChallSrvURL is challtestsrv's management URL (for scripts using curl).
func (d *DNS) ChallSrvURL() string { return d.mgmtURL }

// Roots returns Pebble's root CA as a pool; Pebble makes a new one at
// every start.
func (s *Server) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := s.client.Get(s.mgmtURL + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("Pebble root: %s %v", resp.Status, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("Pebble root: no PEM certificate in %q", b)
	}
	return pool
}

// SetRenewalInfo makes Pebble answer ARI for certPEM with this window
// (and explanation URL, unless "").
func (s *Server) SetRenewalInfo(t testing.TB, certPEM string, start, end time.Time, explanationURL string) {
	t.Helper()
	info := map[string]any{"suggestedWindow": map[string]time.Time{"start": start, "end": end}}
	if explanationURL != "" {
		info["explanationURL"] = explanationURL
	}
	ari, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	if err := post(s.client, s.mgmtURL+"/set-renewal-info/", map[string]string{
		"certificate": certPEM, "ariResponse": string(ari)}); err != nil {
		t.Fatal(err)
	}
}

// post sends body as JSON and wants 200 OK.
func post(client *http.Client, url string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := client.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, msg)
	}
	return nil
}

// run starts a pinned tool until the test ends; its output is logged when
// the test failed.
func run(t testing.TB, tool string, env []string, args ...string) {
	t.Helper()
	bin := toolPath(t, tool)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &testkit.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", tool, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", tool, out.String())
		}
	})
}

// toolPath builds (or finds in the build cache) a tool of go.mod's tool
// block and returns the binary, so the test can kill the process itself.
func toolPath(t testing.TB, tool string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "tool", "-n", tool).Output()
	if err != nil {
		t.Fatalf("go tool -n %s: %v", tool, err)
	}
	return strings.TrimSpace(string(out))
}

func waitFor(t testing.TB, what string, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start within %s: %v", what, startTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// writeTLSCert writes a self-signed certificate for 127.0.0.1 and
// localhost, Pebble's HTTPS identity.
func writeTLSCert(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pebble test listener"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func writeFile(t testing.TB, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

// CertStatus is what Pebble says of a certificate it issued (its
// management API's cert-status-by-serial): "Valid" or "Revoked", with
// the revocation reason code.
type CertStatus struct {
	Status string
	Reason *uint `json:",omitempty"`
}

// CertStatus asks Pebble about the certificate with the hex serial.
func (s *Server) CertStatus(t testing.TB, serial string) CertStatus {
	t.Helper()
	resp, err := s.client.Get(s.mgmtURL + "/cert-status-by-serial/" + serial)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st CertStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("cert-status-by-serial/%s: %s: %v", serial, resp.Status, err)
	}
	return st
}
