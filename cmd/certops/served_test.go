package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/agent"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/testkit"
)

// servedStatus is the part of GET /api/v1/certificates/{name} this test reads.
type servedStatus struct {
	Status struct {
		Deployments []struct {
			Agent, State, Serial, CurrentSerial, ServedSerial, ServedError string
			ServedNotAfter, ServedCheckedAt, ServedMismatchSince           *time.Time
		}
	}
}

// TestServedMismatchEndToEnd: `certops serve` on a real database, the
// agent runtime and a TLS service. A renewal is installed and verified,
// then the service restarts with the old files: the agent's served check
// reports the old serial, the status API shows desired/installed/served
// and the mismatch, and certops' own evaluation fires
// CertopsServedCertificateMismatch (servedMismatchAfter 1s) in
// /api/v1/status and as a metric series. Serving the installed files
// again clears it.
func TestServedMismatchEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := t.TempDir()
	caDir := filepath.Join(base, "ca")
	if code, out, errOut := cli(ctx, nil, "ca", "init", "--out", caDir); code != 0 {
		t.Fatalf("ca init: exit %d\n%s%s", code, out, errOut)
	}
	token := "served-agent-token"
	tokenFile := filepath.Join(base, "agent.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(token))
	ssl := filepath.Join(base, "ssl")
	fullchain, key := filepath.Join(ssl, "fullchain.pem"), filepath.Join(ssl, "key.pem")
	svc := testkit.StartTLSService(t, fullchain, key)
	reload := filepath.Join(base, "reload")
	if err := os.WriteFile(reload, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	certificate := func(duration string) string {
		return fmt.Sprintf(`apiVersion: certops/v1
kind: Certificate
metadata: {name: shop}
spec:
  issuerRef: ca
  commonName: shop.example.com
  duration: %s
  deploy:
    agents: [web-01]
    files: {fullchain: %s, key: %s}
    reload: [%q]
    verify: {address: %q, serverName: shop.example.com}
`, duration, fullchain, key, reload, svc.Addr)
	}
	config := filepath.Join(base, "config")
	writeFiles(t, config, map[string]string{
		"base.yaml": fmt.Sprintf(`apiVersion: certops/v1
kind: Issuer
metadata: {name: ca}
spec:
  localCA: {certFile: %s, keyFile: %s}
---
apiVersion: certops/v1
kind: Agent
metadata: {name: web-01}
spec: {tokenSHA256: %s}
---
apiVersion: certops/v1
kind: AlertPolicy
metadata: {name: default}
spec: {servedMismatchAfter: 1s}
`, filepath.Join(caDir, "ca.crt"), filepath.Join(caDir, "ca.key"), hex.EncodeToString(sum[:])),
		"shop.yaml": certificate("720h"),
	})
	srv := startServe(t, ctx, map[string]string{"CERTOPS_DATABASE_URL": pgtest.DB(t), "CERTOPS_REPO": config, "CERTOPS_INTERVAL": "1h"})
	waitStatus(t, srv.url, "the config to be applied", appliedPrefix("dir@sha1:"))
	ag, err := agent.New(agent.Config{Server: srv.url, Name: "web-01", TokenFile: tokenFile,
		StateDir: filepath.Join(base, "agent-state"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var st servedStatus
	installed := func(what string, notSerial string) string {
		t.Helper()
		testkit.WaitFor(t, waitTimeout, what, func() bool {
			_ = ag.SyncOnce(ctx)
			st = servedStatus{}
			getJSON(t, srv.url+"/api/v1/certificates/shop", &st)
			d := st.Status.Deployments
			return len(d) == 1 && d[0].State == "installed" && d[0].Serial != notSerial && d[0].Serial == d[0].CurrentSerial
		})
		return st.Status.Deployments[0].Serial
	}
	first := installed("the first deployment", "")
	old, err := tls.LoadX509KeyPair(fullchain, key)
	if err != nil {
		t.Fatal(err)
	}
	// A spec change renews; the new certificate is installed and verified.
	writeFiles(t, config, map[string]string{"shop.yaml": certificate("721h")})
	second := installed("the renewal", first)

	// The service restarts from its old files.
	svc.FreezeOn(old)
	if err := ag.CheckServed(ctx); err != nil {
		t.Fatal(err)
	}
	st = servedStatus{}
	getJSON(t, srv.url+"/api/v1/certificates/shop", &st)
	d := st.Status.Deployments[0]
	if d.CurrentSerial != second || d.Serial != second || d.ServedSerial != first || d.ServedMismatchSince == nil ||
		d.ServedCheckedAt == nil || d.ServedNotAfter == nil || d.ServedError != "" {
		t.Fatalf("deployment after the service restarted with old files = %+v, want installed %s, served %s with a mismatch", d, second, first)
	}
	// The monitor evaluates every 30 s.
	testkit.WaitFor(t, 2*waitTimeout, "CertopsServedCertificateMismatch in /api/v1/status", func() bool {
		var s struct {
			Alerts []struct{ Name, Subject string }
		}
		getJSON(t, srv.url+"/api/v1/status", &s)
		for _, a := range s.Alerts {
			if a.Name == "CertopsServedCertificateMismatch" && a.Subject == "shop" {
				return true
			}
		}
		return false
	})
	exposition := scrape(t, srv.url)
	for _, want := range []string{
		`certops_served_certificate_mismatch_since_timestamp_seconds{certificate="shop"}`,
		`certops_served_certificate_expiration_timestamp_seconds{certificate="shop"}`,
		`certops_alert_threshold_served_mismatch_seconds 1`,
		`certops_issuer_ca_expiration_timestamp_seconds{issuer="ca"}`,
		`certops_issuer_longest_certificate_duration_seconds{issuer="ca"} 2.5956e+06`,
	} {
		if !strings.Contains(exposition, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The service is reloaded: the installed certificate is served again.
	svc.Thaw()
	if err := ag.CheckServed(ctx); err != nil {
		t.Fatal(err)
	}
	st = servedStatus{}
	getJSON(t, srv.url+"/api/v1/certificates/shop", &st)
	if d := st.Status.Deployments[0]; d.ServedSerial != second || d.ServedMismatchSince != nil {
		t.Errorf("deployment after the reload = %+v, want %s served without a mismatch", d, second)
	}
	cancel()
	<-srv.done
}
