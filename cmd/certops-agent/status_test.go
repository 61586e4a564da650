package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/certops/certops/agent"
	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/testkit"
)

// fakeServer answers web-01's polls with no assignments and counts them.
func fakeServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == agentproto.PathAssignments {
			polls.Add(1)
			_ = json.NewEncoder(w).Encode(agentproto.Assignments{Agent: "web-01"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, &polls
}

// TestSIGHUPSyncsNow: with an hour between polls, SIGHUP to the process
// brings the next poll at once, and the agent keeps running.
func TestSIGHUPSyncsNow(t *testing.T) {
	srv, polls := fakeServer(t)
	_, env := agentEnv(t, "web-01", srv.URL)
	env["CERTOPS_AGENT_INTERVAL"] = "1h"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"certops-agent"}, func(k string) string { return env[k] }, &strings.Builder{}, &syncWriter{})
	}()
	// The handler is installed before the first poll.
	testkit.WaitFor(t, 10*time.Second, "the first poll", func() bool { return polls.Load() == 1 })
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "a poll after SIGHUP", func() bool { return polls.Load() == 2 })
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d after the agent was stopped", code)
	}
}

// syncWriter is a writer the agent's logger may use from its goroutines.
type syncWriter struct{ n atomic.Int64 }

func (w *syncWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

// TestStatus prints the state directory: after a pass, with an installed
// certificate, as JSON; bad usage exits 2, a missing directory 1.
func TestStatus(t *testing.T) {
	srv, _ := fakeServer(t)
	dir, env := agentEnv(t, "web-01", srv.URL)
	stateDir := filepath.Join(dir, "state")
	if code, _, errOut := runCmd(t, env, "--once"); code != 0 {
		t.Fatalf("--once: %d %s", code, errOut)
	}
	code, out, errOut := runCmd(t, env, "status")
	if code != 0 || !strings.Contains(out, "State dir:    "+stateDir) || !strings.Contains(out, ", ok") ||
		!strings.Contains(out, "Last report:  none") || !strings.Contains(out, "No certificates installed.") {
		t.Errorf("status after a pass: exit %d\n%s%s", code, out, errOut)
	}

	// An installed certificate and a failing one, as the agent writes them.
	notAfter := time.Now().Add(90 * 24 * time.Hour).UTC().Truncate(time.Second)
	state := `{"certificates": {
	  "shop": {"serial": "0a1b2c", "notAfter": "` + notAfter.Format(time.RFC3339) + `", "installedAt": "2026-12-01T10:00:00Z", "specHash": "s1"},
	  "api": {"failure": {"specHash": "s2", "count": 3, "retryAt": "2030-01-01T00:00:00Z", "policy": true}}},
	 "lastSync": {"at": "2026-12-05T10:00:00Z", "error": "certificate api: policy: HostPolicyRefused: /etc is not allowed"},
	 "bundles": {"roots": {"sha256": "5d1f0e9c8b7a69584736251403f2e1d0c9b8a7968574635241302f1e0d9c8b7a", "path": "/etc/ssl/roots.pem", "installedAt": "2026-12-01T10:00:00Z"}},
	 "lastReport": {"at": "2026-12-05T10:00:00Z", "certificate": "api", "result": "failed", "stage": "policy"}}`
	if err := os.WriteFile(filepath.Join(stateDir, "state.json"), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, env, "status", "--state-dir", stateDir)
	if code != 0 {
		t.Errorf("status: exit %d", code)
	}
	for _, want := range []string{"failed: certificate api: policy: HostPolicyRefused", "Last report:  2026-12-05T10:00:00Z", "api failed at stage policy",
		"CERTIFICATE", "shop         0a1b2c", notAfter.Format(time.RFC3339), "3, next try 2030-01-01T00:00:00Z", "(refused by the host policy)",
		"TRUST BUNDLE", "roots         /etc/ssl/roots.pem  5d1f0e9c8b7a…"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCmd(t, env, "status", "-o", "json")
	var st agent.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || len(st.Certificates) != 2 || st.Certificates[1].Serial != "0a1b2c" {
		t.Errorf("status -o json: exit %d, %v, %+v", code, err, st)
	}

	for _, args := range [][]string{{"status", "extra"}, {"status", "-o", "xml"}, {"status", "--no-such-flag"}} {
		if code, _, errOut := runCmd(t, env, args...); code != 2 || errOut == "" {
			t.Errorf("%q: exit %d, %q; want 2", args, code, errOut)
		}
	}
	if code, _, errOut := runCmd(t, nil, "status"); code != 2 || !strings.Contains(errOut, "--state-dir") {
		t.Errorf("status without a state dir: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "status", "--state-dir", filepath.Join(dir, "missing")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("status of a missing state dir: exit %d, %q", code, errOut)
	}
}
