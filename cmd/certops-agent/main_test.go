package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/agent"
	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/testkit"
)

// runCmd runs the command with args and env; it returns the exit code and
// the output.
func runCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, append([]string{"certops-agent"}, args...), func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, nil, "version")
	if code != 0 || out != "certops-agent dev\n" {
		t.Errorf("version: code %d, output %q", code, out)
	}
}

func TestMissingFlags(t *testing.T) {
	code, _, errOut := runCmd(t, nil)
	if code != 2 {
		t.Errorf("code = %d, want 2", code)
	}
	for _, want := range []string{
		"--server (or CERTOPS_AGENT_SERVER) is required",
		"--name (or CERTOPS_AGENT_NAME) is required",
		"--token-file (or CERTOPS_AGENT_TOKEN_FILE) is required",
		"--state-dir (or CERTOPS_AGENT_STATE_DIR) is required",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr = %q, want %q", errOut, want)
		}
	}
}

func TestBadEnvAndLogFlags(t *testing.T) {
	base := []string{"--server", "http://127.0.0.1:1", "--name", "n", "--token-file", "t", "--state-dir", t.TempDir()}
	if code, _, errOut := runCmd(t, map[string]string{"CERTOPS_AGENT_INTERVAL": "soon"}, base...); code != 2 || !strings.Contains(errOut, "CERTOPS_AGENT_INTERVAL") {
		t.Errorf("bad interval env: code %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, map[string]string{"CERTOPS_AGENT_SERVED_CHECK_INTERVAL": "hourly"}, base...); code != 2 ||
		!strings.Contains(errOut, "CERTOPS_AGENT_SERVED_CHECK_INTERVAL") {
		t.Errorf("bad served check interval env: code %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, nil, append(base, "--log-format", "xml")...); code != 2 || !strings.Contains(errOut, "--log-format") {
		t.Errorf("bad log format: code %d, stderr %q", code, errOut)
	}
}

// Bad usage exits 2, as in certops; -h exits 0.
func TestBadUsageExitsTwo(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--name", "n", "--token-file", token, "--state-dir", t.TempDir()}
	for _, args := range [][]string{
		append([]string{"--server", "http://127.0.0.1:1", "--no-such-flag"}, base...),
		append([]string{"--server", "http://127.0.0.1:1", "extra"}, base...),
		append([]string{"--server", "http://127.0.0.1:1", "--interval", "often"}, base...),
		append([]string{"--server", "ftp://certops.example.com"}, base...),
		append([]string{"--server", "http://127.0.0.1:1", "--allow-dirs", "relative/dir"}, base...),
		append([]string{"--server", "http://127.0.0.1:1", "--served-check-interval", "-1m"}, base...),
	} {
		if code, _, errOut := runCmd(t, nil, args...); code != 2 || errOut == "" {
			t.Errorf("certops-agent %s: code %d, stderr %q; want 2 and a message", strings.Join(args, " "), code, errOut)
		}
	}
	if code, _, _ := runCmd(t, nil, "-h"); code != 0 {
		t.Errorf("-h: code %d, want 0", code)
	}
}

func TestOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == agentproto.PathAssignments {
			json.NewEncoder(w).Encode(agentproto.Assignments{Agent: "web-01"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	dir, env := agentEnv(t, "web-01", srv.URL)
	env["CERTOPS_AGENT_LOG_FORMAT"] = "json"
	if code, _, errOut := runCmd(t, env, "--once"); code != 0 {
		t.Errorf("--once against a healthy server: code %d, stderr %s", code, errOut)
	}

	down := "http://" + testkit.ClosedAddr(t)
	if code, _, errOut := runCmd(t, env, "--once", "--server", down); code != 1 || !strings.Contains(errOut, "sync failed") {
		t.Errorf("--once with the server down: code %d, stderr %s", code, errOut)
	}

	env["CERTOPS_AGENT_TOKEN_FILE"] = filepath.Join(dir, "absent")
	if code, _, errOut := runCmd(t, env, "--once"); code != 1 || !strings.Contains(errOut, "token file") {
		t.Errorf("absent token file: code %d, stderr %s", code, errOut)
	}
}

// With another agent's token (the server answers for web-01) and --name
// db-01, the agent exits 1 with a clear message, in --once and in the loop.
func TestAnotherAgentsTokenExitsNonZero(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != agentproto.PathAssignments {
			t.Errorf("%s %s after the server named another agent", r.Method, r.URL.Path)
		}
		json.NewEncoder(w).Encode(agentproto.Assignments{Agent: "web-01"})
	}))
	defer srv.Close()
	_, env := agentEnv(t, "db-01", srv.URL)
	for _, args := range [][]string{{"--once"}, {}} {
		code, _, errOut := runCmd(t, env, args...)
		if code != 1 || !strings.Contains(errOut, "the server knows it as agent") || !strings.Contains(errOut, "web-01") {
			t.Errorf("certops-agent %v with another agent's token: code %d, stderr %s", args, code, errOut)
		}
	}
}

// tokenDir is a temporary directory holding the token file "tok".
func tokenDir(t *testing.T) (dir, token string) {
	t.Helper()
	dir = t.TempDir()
	token = filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, token
}

// agentEnv is the environment of an agent named name with the token "tok"
// and its state under dir (a new temporary directory); server, when set,
// is CERTOPS_AGENT_SERVER.
func agentEnv(t *testing.T, name, server string) (dir string, env map[string]string) {
	t.Helper()
	dir, token := tokenDir(t)
	env = map[string]string{
		"CERTOPS_AGENT_NAME":       name,
		"CERTOPS_AGENT_TOKEN_FILE": token,
		"CERTOPS_AGENT_STATE_DIR":  filepath.Join(dir, "state"),
	}
	if server != "" {
		env["CERTOPS_AGENT_SERVER"] = server
	}
	return dir, env
}

// Plain HTTP off loopback is refused before anything is dialled: the name
// below does not resolve, so a dial would fail with exit 1, not 2.
func TestPlaintextOffLoopbackRefused(t *testing.T) {
	_, env := agentEnv(t, "web-01", "")
	code, _, errOut := runCmd(t, env, "--once", "--server", "http://certops.example.test:8080")
	if code != 2 || !strings.Contains(errOut, "--insecure-plaintext") || strings.Contains(errOut, "sync failed") {
		t.Errorf("http:// off loopback: code %d, stderr %s; want 2 naming --insecure-plaintext", code, errOut)
	}
	code, _, errOut = runCmd(t, env, "--once", "--insecure-plaintext", "--server", "http://certops.example.test:8080")
	if code != 1 || !strings.Contains(errOut, "sync failed") {
		t.Errorf("with --insecure-plaintext: code %d, stderr %s; want the sync tried and failed (1)", code, errOut)
	}
}

// A password in --server never reaches the output: neither the refusal
// of plain HTTP nor a failed sync prints it.
func TestServerURLPasswordIsNotPrinted(t *testing.T) {
	_, env := agentEnv(t, "web-01", "")
	for _, args := range [][]string{
		{"--once", "--server", "http://bob:S3CRETPW@certops.example.test:8080"},
		{"--once", "--insecure-plaintext", "--server", "http://bob:S3CRETPW@certops.example.test:8080"},
		{"--once", "--server", "ftp://bob:S3CRETPW@certops.example.test"},
	} {
		code, out, errOut := runCmd(t, env, args...)
		if code == 0 || strings.Contains(out+errOut, "S3CRETPW") || !strings.Contains(errOut, "certops.example.test") {
			t.Errorf("%v: code %d, output %s%s; want a failure naming the host without the password", args, code, out, errOut)
		}
	}
}

// --ca-file is what the agent trusts the server's certificate with.
func TestCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == agentproto.PathAssignments {
			json.NewEncoder(w).Encode(agentproto.Assignments{Agent: "web-01"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	dir, env := agentEnv(t, "web-01", srv.URL)
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(t, env, "--once"); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("without --ca-file: code %d, stderr %s; want 1, the certificate not trusted", code, errOut)
	}
	env["CERTOPS_AGENT_CA_FILE"] = caFile
	if code, _, errOut := runCmd(t, env, "--once"); code != 0 {
		t.Errorf("with --ca-file: code %d, stderr %s", code, errOut)
	}
}

// --policy-file (or CERTOPS_AGENT_POLICY_FILE) is strictly decoded: an
// unknown field or a bad value exits 2 naming the file; a good one loads,
// its allowedDirs joined by --allow-dirs.
func TestPolicyFile(t *testing.T) {
	dir, token := tokenDir(t)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := []string{"--server", "http://127.0.0.1:1", "--name", "n", "--token-file", token, "--state-dir", filepath.Join(dir, "state")}
	for _, c := range []struct{ body, want string }{
		{"allowedDirs: [/etc/ssl]\nallowedReload: [[true]]\n", "field allowedReload not found"},
		{"allowedDirs: [etc/ssl]\n", "not a clean absolute path"},
		{"maxFileMode: rw\n", "maxFileMode"},
	} {
		p := write("bad.yaml", c.body)
		code, _, errOut := runCmd(t, nil, append(base, "--policy-file", p)...)
		if code != 2 || !strings.Contains(errOut, "--policy-file") || !strings.Contains(errOut, p) || !strings.Contains(errOut, c.want) {
			t.Errorf("policy %q: code %d, stderr %q; want 2 and %q", c.body, code, errOut, c.want)
		}
	}
	if code, _, errOut := runCmd(t, nil, append(base, "--policy-file", filepath.Join(dir, "absent.yaml"))...); code != 2 || !strings.Contains(errOut, "absent.yaml") {
		t.Errorf("absent policy file: code %d, stderr %q", code, errOut)
	}
	good := write("good.yaml", "allowedDirs: [/etc/ssl/shop]\nallowedReloads:\n  - [systemctl, reload, nginx]\nmaxFileMode: \"0644\"\n")
	c, err := parseFlags(append(base, "--allow-dirs", "/var/www/acme"), func(k string) string {
		return map[string]string{"CERTOPS_AGENT_POLICY_FILE": good}[k]
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy == nil || len(c.Policy.AllowedReloads) != 1 || c.Policy.AllowedDirs[0] != "/etc/ssl/shop" || c.AllowedDirs[0] != "/var/www/acme" {
		t.Errorf("config = %+v, policy %+v", c.Config, c.Policy)
	}
}

// --served-check-interval defaults to ten minutes; 0 turns the checks off
// (a negative agent.Config value).
func TestServedCheckIntervalFlag(t *testing.T) {
	base := []string{"--server", "http://127.0.0.1:1", "--name", "n", "--token-file", "t", "--state-dir", "s"}
	for _, tc := range []struct {
		args []string
		env  string
		want time.Duration
	}{
		{base, "", agent.DefaultServedCheckInterval},
		{append(base, "--served-check-interval", "0"), "", -1},
		{base, "5m", 5 * time.Minute},
	} {
		getenv := func(k string) string {
			if k == "CERTOPS_AGENT_SERVED_CHECK_INTERVAL" {
				return tc.env
			}
			return ""
		}
		c, err := parseFlags(tc.args, getenv, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.ServedCheckInterval != tc.want {
			t.Errorf("%v env %q: ServedCheckInterval = %s, want %s", tc.args, tc.env, c.ServedCheckInterval, tc.want)
		}
	}
}
