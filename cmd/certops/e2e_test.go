package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/certops/certops/agent"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/testkit"
)

// certStatus is the part of GET /api/v1/certificates/{name} this test reads.
type certStatus struct {
	Status struct {
		Ready       bool
		Reason      string
		Deployments []struct {
			Agent, State, Serial, LastError string
		}
	}
}

// TestAgentDeploysIntoNginx is the whole path of issue 3 with real parts: a
// CA from `certops ca init`, `certops serve` on a real database watching a
// config directory, the agent runtime, and a real nginx that the agent
// reloads. It checks what a TLS client sees, then a spec change (reissue),
// then a failing reload (rollback to the files nginx was serving).
func TestAgentDeploysIntoNginx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(base, "ca")
	if code, out, errOut := cli(ctx, nil, "ca", "init", "--out", caDir, "--common-name", "e2e CA"); code != 0 {
		t.Fatalf("ca init: exit %d\n%s%s", code, out, errOut)
	}
	token := "e2e-agent-token"
	tokenFile := filepath.Join(base, "agent.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(token))

	ssl := filepath.Join(base, "ssl", "shop")
	certFile, fullchainFile, keyFile := filepath.Join(ssl, "cert.pem"), filepath.Join(ssl, "fullchain.pem"), filepath.Join(ssl, "key.pem")
	ng := startNginx(t, "shop.example.com", fullchainFile, keyFile)

	config := filepath.Join(base, "config")
	certificate := func(dnsNames []string, reload []string) string {
		return fmt.Sprintf(`apiVersion: certops/v1
kind: Certificate
metadata: {name: shop}
spec:
  issuerRef: e2e-ca
  commonName: shop.example.com
  dnsNames: %s
  privateKey: {algorithm: ECDSA, size: 256}
  duration: 720h
  deploy:
    agents: [web-01]
    files: {cert: %s, fullchain: %s, key: %s, mode: "0600"}
    reload: %s
    verify: {address: "%s", serverName: shop.example.com}
`, yamlList(dnsNames), certFile, fullchainFile, keyFile, yamlList(reload), ng.addr)
	}
	writeFiles(t, config, map[string]string{
		"base.yaml": fmt.Sprintf(`apiVersion: certops/v1
kind: Issuer
metadata: {name: e2e-ca}
spec:
  localCA: {certFile: %s, keyFile: %s}
---
apiVersion: certops/v1
kind: Agent
metadata: {name: web-01}
spec:
  tokenSHA256: %s
`, filepath.Join(caDir, "ca.crt"), filepath.Join(caDir, "ca.key"), hex.EncodeToString(sum[:])),
		"shop.yaml": certificate([]string{"shop.example.com"}, ng.reloadArgv()),
	})
	srv := startServe(t, ctx, map[string]string{
		"CERTOPS_DATABASE_URL": pgtest.DB(t), "CERTOPS_REPO": config, "CERTOPS_INTERVAL": "1h"})
	url := srv.url
	waitStatus(t, url, "the config to be applied", appliedPrefix("dir@sha1:"))

	ag, err := agent.New(agent.Config{Server: url, Name: "web-01", TokenFile: tokenFile,
		StateDir: filepath.Join(base, "agent-state"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sync := func(what string) {
		t.Helper()
		// The agent API refreshes its snapshot every second; a sync right
		// after an apply may still see the previous spec, so retry briefly.
		testkit.WaitFor(t, waitTimeout, what, func() bool { return ag.SyncOnce(ctx) == nil })
	}

	// First issuance: a client trusting only our CA gets the issued leaf.
	sync("the first deployment")
	// nginx reloads asynchronously: its old workers may answer a moment longer.
	var leaf *x509.Certificate
	testkit.WaitFor(t, waitTimeout, "nginx to serve the issued leaf", func() bool {
		leaf, err = ng.verifyWithCA(filepath.Join(caDir, "ca.crt"), "shop.example.com")
		return err == nil
	})
	if leaf.Issuer.CommonName != "e2e CA" || !slices.Equal(leaf.DNSNames, []string{"shop.example.com"}) {
		t.Fatalf("served leaf: issuer %q names %v", leaf.Issuer.CommonName, leaf.DNSNames)
	}
	firstSerial := leaf.SerialNumber.Text(16)
	var cs certStatus
	testkit.WaitFor(t, waitTimeout, "the certificate to be reported ready", func() bool {
		getJSON(t, url+"/api/v1/certificates/shop", &cs)
		return cs.Status.Ready
	})
	if d := cs.Status.Deployments; len(d) != 1 || d[0].Agent != "web-01" || d[0].State != "installed" ||
		!strings.EqualFold(strings.TrimLeft(d[0].Serial, "0"), strings.TrimLeft(firstSerial, "0")) {
		t.Errorf("deployments: got %+v, want web-01 installed with serial %s", d, firstSerial)
	}
	if info, err := os.Stat(keyFile); err != nil {
		t.Errorf("key file: %v", err)
	} else if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v; want 0600", info.Mode().Perm())
	}

	// The scrape passes the same lint as `promtool check metrics` and carries
	// the certificate's series.
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposition, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.New(bytes.NewReader(exposition)).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %+v", err, problems)
	}
	for _, want := range []string{
		`certops_certificate_expiration_timestamp_seconds{certificate="shop"}`,
		`certops_certificate_ready{certificate="shop"} 1`,
		`certops_issuance_total{issuer="e2e-ca",result="success"} 1`,
		`certops_deployments_total{result="installed"} 1`,
	} {
		if !strings.Contains(string(exposition), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A spec change (one more name) is reissued and served.
	writeFiles(t, config, map[string]string{"shop.yaml": certificate([]string{"shop.example.com", "www.shop.example.com"}, ng.reloadArgv())})
	testkit.WaitFor(t, waitTimeout, "the new names to be served", func() bool {
		_ = ag.SyncOnce(ctx)
		leaf, err = ng.verifyWithCA(filepath.Join(caDir, "ca.crt"), "www.shop.example.com")
		return err == nil
	})
	secondSerial := leaf.SerialNumber.Text(16)
	if secondSerial == firstSerial {
		t.Fatal("the spec change did not reissue")
	}

	// A Revocation of the served serial in Git: the agent gets a new
	// certificate at once, and the CRL fetched from the live public route
	// (no token) makes openssl refuse the revoked leaf.
	revokedPEM := filepath.Join(base, "revoked.pem")
	if err := os.WriteFile(revokedPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, config, map[string]string{"revocations.yaml": fmt.Sprintf(`apiVersion: certops/v1
kind: Revocation
metadata: {name: shop-leak}
spec: {certificate: shop, serials: [%q], reason: keyCompromise}
`, secondSerial)})
	testkit.WaitFor(t, waitTimeout, "a new certificate to replace the revoked one", func() bool {
		_ = ag.SyncOnce(ctx)
		leaf, err = ng.verifyWithCA(filepath.Join(caDir, "ca.crt"), "www.shop.example.com")
		return err == nil && leaf.SerialNumber.Text(16) != secondSerial
	})
	crlResp, err := http.Get(url + "/pki/v1/e2e-ca/crl")
	if err != nil {
		t.Fatal(err)
	}
	crlDER, _ := io.ReadAll(crlResp.Body)
	crlResp.Body.Close()
	crlPEM := filepath.Join(base, "crl.pem")
	if err := os.WriteFile(crlPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "verify", "-crl_check", "-CAfile", filepath.Join(caDir, "ca.crt"), "-CRLfile", crlPEM, revokedPEM).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate revoked") {
		t.Errorf("openssl verify -crl_check of the revoked leaf (CRL answer %d): %v\n%s", crlResp.StatusCode, err, out)
	}
	secondSerial = leaf.SerialNumber.Text(16) // what is served now

	// A reload that fails rolls back: nginx keeps serving the second leaf and
	// the files are that leaf's again.
	before, err := os.ReadFile(fullchainFile)
	if err != nil {
		t.Fatal(err)
	}
	failing := filepath.Join(base, "failing-reload")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho reload broken >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, config, map[string]string{"shop.yaml": certificate([]string{"shop.example.com", "www.shop.example.com"}, []string{failing})})
	testkit.WaitFor(t, waitTimeout, "the failed reload to be reported", func() bool {
		_ = ag.SyncOnce(ctx)
		getJSON(t, url+"/api/v1/certificates/shop", &cs)
		d := cs.Status.Deployments
		return len(d) == 1 && d[0].State == "rolled-back"
	})
	if !strings.Contains(cs.Status.Deployments[0].LastError, "reload") {
		t.Errorf("rolled-back deployment error: %q, want the reload failure", cs.Status.Deployments[0].LastError)
	}
	after, err := os.ReadFile(fullchainFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Error("after the rollback the fullchain file is not the previous one")
	}
	if out, err := ng.exec("-s", "reload"); err != nil { // whatever is on disk is what nginx serves
		t.Fatalf("nginx -s reload: %v\n%s", err, out)
	}
	testkit.WaitFor(t, waitTimeout, "nginx to serve the files on disk after its reload", func() bool {
		leaf, err = ng.verifyWithCA(filepath.Join(caDir, "ca.crt"), "www.shop.example.com")
		return err == nil && leaf.SerialNumber.Text(16) == secondSerial
	})
	if leaf.SerialNumber.Text(16) != secondSerial {
		t.Errorf("after the rollback nginx serves serial %s, want %s", leaf.SerialNumber.Text(16), secondSerial)
	}

	cancel()
	<-srv.done
}
