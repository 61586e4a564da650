package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/testkit"
)

// TestServeRedactsRepoCredentials runs serve against an unreachable
// repository whose URL carries a password and a token, waits for the
// failed fetch to reach the status, and expects neither secret in any log
// line or in the status.
func TestServeRedactsRepoCredentials(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := startServe(t, ctx, map[string]string{"CERTOPS_DATABASE_URL": pgtest.DB(t),
		"CERTOPS_REPO": "https://user:SECRETPASS@127.0.0.1:1/x.git?token=SECRETTOK&access_token=SECRETTOK2"})
	var body string
	testkit.WaitFor(t, waitTimeout, "the failed fetch in the status", func() bool {
		resp, err := http.Get(srv.url + "/api/v1/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return strings.Contains(body, "FetchFailed")
	})
	cancel()
	<-srv.done
	logs := srv.logs.String()
	for _, secret := range []string{"SECRETPASS", "SECRETTOK", "user:"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q:\n%s", secret, logs)
		}
		if strings.Contains(body, secret) {
			t.Errorf("status contains %q:\n%s", secret, body)
		}
	}
	if !strings.Contains(logs, "127.0.0.1:1") || !strings.Contains(body, "127.0.0.1:1") {
		t.Errorf("the redacted URL is missing (host kept):\nlog:\n%s\nstatus:\n%s", logs, body)
	}
	t.Logf("status: %s", body)
}
