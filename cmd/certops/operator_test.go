package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/httpapi"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
	"github.com/certops/certops/testkit/storekit"
)

// bulkCertificates are the certificates besides shop, so that listing
// them all takes two pages (apiv1.MaxLimit per page).
const bulkCertificates = apiv1.MaxLimit + 20

// apiFixture is the read API (httpapi.NewHandler) on an httptest server
// over a real store: three agents, the certificate shop deployed to two of
// them (installed on web-01, its issuance failed on web-02), and
// bulkCertificates more. listPages counts the certificate list requests.
type apiFixture struct {
	url       string
	listPages atomic.Int64
}

func newAPIFixture(t *testing.T, token string) *apiFixture {
	t.Helper()
	ctx := context.Background()
	st := storekit.Open(t)
	shop := &spec.CertificateSpec{IssuerRef: "internal-ca", CommonName: "shop.example.com",
		DNSNames: []string{"shop.example.com", "www.shop.example.com"},
		Deploy: &spec.Deployment{AgentSelector: &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}},
			Files: spec.DeployFiles{Cert: "/etc/ssl/shop.pem"}}}
	objs := []*spec.Object{
		{Kind: spec.KindAgent, Name: "web-01", Labels: map[string]string{"role": "web"}, Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("a", 64)}},
		{Kind: spec.KindAgent, Name: "web-02", Labels: map[string]string{"role": "web"}, Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("b", 64), Suspend: true}},
		{Kind: spec.KindAgent, Name: "db-01", Labels: map[string]string{"role": "db"}, Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("c", 64)}},
		{Kind: spec.KindCertificate, Name: "shop", Labels: map[string]string{"team": "shop"}, Spec: shop,
			Source: spec.Position{File: "certs/shop.yaml", Line: 3}},
	}
	for i := range bulkCertificates {
		objs = append(objs, &spec.Object{Kind: spec.KindCertificate, Name: fmt.Sprintf("bulk-%04d", i), Labels: map[string]string{"team": "bulk"},
			Spec: &spec.CertificateSpec{IssuerRef: "internal-ca", CommonName: fmt.Sprintf("b%d.example.com", i)}})
	}
	// bulk-0000 is deployed on db-01, which waits for its issuer's rate limit.
	bulk0 := objs[4].Spec.(*spec.CertificateSpec)
	bulk0.Deploy = &spec.Deployment{Agents: []string{"db-01"}, Files: spec.DeployFiles{Cert: "/etc/ssl/b0.pem"}}
	rev := state.Revision{Ref: "main", Commit: strings.Repeat("1", 40), Author: "Alice", Message: "add shop\n\nbody", Time: time.Now()}
	now := time.Now().UTC().Truncate(time.Second)
	status := state.Status{LastAppliedRevision: rev.String(), LastAppliedAt: &now, LastAttemptedRevision: rev.String(), LastAttemptedAt: &now, LastFetchAt: &now}
	status.MarkApplied(rev, now)
	storekit.Apply(t, st, rev, status, storekit.Desired(objs...))
	// A second revision changes shop's labels only (the first revision's
	// first 1000 actions are the agents' and the bulk certificates').
	objs[3] = &spec.Object{Kind: spec.KindCertificate, Name: "shop", Labels: map[string]string{"team": "shop", "tier": "front"},
		Spec: shop, Source: spec.Position{File: "certs/shop.yaml", Line: 3}}
	rev2 := rev
	rev2.Commit, rev2.Message = strings.Repeat("2", 40), "label shop"
	status.MarkApplied(rev2, now)
	storekit.Apply(t, st, rev2, status, storekit.Desired(objs...))

	hash := assign.SpecHash(shop)
	v := state.CertificateVersion{Certificate: "shop", Agent: "web-01", SpecHash: hash, Serial: "0a1b2c", SHA256: "ff",
		NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour), CertPEM: "cert", ChainPEM: "chain", Issuer: "internal-ca", IssuedAt: now}
	if _, err := st.RecordIssuance(ctx, store.Issuance{Version: v, RenewAt: now.Add(60 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: "web-01", SpecHash: hash, Serial: "0a1b2c",
		Result: state.DeploymentInstalled, At: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RecordServed(ctx, "web-01", []store.ServedCheck{{Certificate: "shop", Serial: "0a1b2c", NotBefore: now,
		NotAfter: now.Add(90 * 24 * time.Hour), CheckedAt: now}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RecordIssueFailure(ctx, store.IssueFailure{Certificate: "shop", Agent: "web-02", SpecHash: hash,
		Error: "CSR does not match the certificate spec: unexpected DNS name \"evil.example.com\"", At: now, Base: time.Minute, Cap: time.Hour}); err != nil {
		t.Fatal(err)
	}

	bulkHash := assign.SpecHash(bulk0)
	if _, err := st.RecordIssuance(ctx, store.Issuance{Version: state.CertificateVersion{Certificate: "bulk-0000", Agent: "web-01",
		SpecHash: bulkHash, Serial: "b0", SHA256: "ff", NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour), CertPEM: "cert",
		Issuer: "internal-ca", IssuedAt: now}, RenewAt: now.Add(60 * 24 * time.Hour),
		ACME: &store.ACMEIssuance{NameSet: bulk0.NameSet()}}); err != nil {
		t.Fatal(err)
	}
	if c, err := st.ClaimACMEOrder(ctx, store.ACMEOrder{Certificate: "bulk-0000", Agent: "db-01", SpecHash: bulkHash, Holder: "test",
		StartedAt: now, ExpiresAt: now.Add(10 * time.Minute), Issuer: "internal-ca", NameSet: bulk0.NameSet(), Limit: 1}); err != nil || c.Wait == nil {
		t.Fatalf("ClaimACMEOrder = %+v, %v; want a wait", c, err)
	}

	f := &apiFixture{}
	api := httpapi.NewHandler(st, httpapi.Config{BearerToken: token, Gatherer: prometheus.NewRegistry()}, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/certificates" {
			f.listPages.Add(1)
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// run runs certops with args against the fixture; the environment names
// the server, as CERTOPS_SERVER does.
func (f *apiFixture) run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	all := map[string]string{"CERTOPS_SERVER": f.url}
	for k, v := range env {
		all[k] = v
	}
	return cli(context.Background(), all, args...)
}

func wantOutput(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("%s: escape codes in the output of a non-terminal:\n%q", what, out)
	}
}

// fields is the whitespace-separated words of the line of out that starts
// with first, or nil.
func fields(out, first string) []string {
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == first {
			return f
		}
	}
	return nil
}

// TestOperatorCommands runs status, get and describe against the read API
// over a real store, in every output format.
func TestOperatorCommands(t *testing.T) {
	f := newAPIFixture(t, "")

	t.Run("status", func(t *testing.T) {
		code, out, errOut := f.run(t, nil, "status")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		wantOutput(t, "status", out, "Applied revision:    main@sha1:"+strings.Repeat("2", 40),
			"CONDITION", "Ready", "ReconciliationSucceeded", "Stalled")
		code, out, _ = f.run(t, nil, "status", "-o", "json")
		var st apiv1.Status
		if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
			t.Fatalf("status -o json: exit %d, %v", code, err)
		}
		if c, _ := st.Condition(state.ConditionReady); c.Status != state.True {
			t.Errorf("status -o json: Ready %+v", c)
		}
	})

	t.Run("get certificates with a label filter", func(t *testing.T) {
		code, out, errOut := f.run(t, nil, "get", "certificates", "-l", "team=shop")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		wantOutput(t, "table", out, "NAME", "STATE", "INSTALLED", "EXPIRES", "ISSUER")
		if got := fields(out, "shop"); len(got) < 5 || got[1] != "issue-failed" || got[2] != "1/2" || got[len(got)-2] != "internal-ca" {
			t.Errorf("shop's row: %q\n%s", got, out)
		}
		if strings.Count(out, "\n") != 2 {
			t.Errorf("want the header and one row:\n%s", out)
		}
	})

	t.Run("get certificates -o wide", func(t *testing.T) {
		code, out, _ := f.run(t, nil, "get", "-o", "wide", "certificates", "-l", "team=shop")
		if code != 0 {
			t.Fatal(code)
		}
		wantOutput(t, "wide", out, "SOURCE", "certs/shop.yaml:3", "team=shop", "installed:1", "issue-failed:1", "shop.example.com,www.shop.example.com")
	})

	t.Run("get certificates through every page", func(t *testing.T) {
		f.listPages.Store(0)
		code, out, _ := f.run(t, nil, "get", "certificates", "-o", "json")
		var list apiv1.CertificateList
		if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil {
			t.Fatalf("exit %d, %v", code, err)
		}
		if len(list.Items) != bulkCertificates+1 || list.Items[0].Name != "bulk-0000" || list.Items[len(list.Items)-1].Name != "shop" {
			t.Errorf("got %d items, want %d from bulk-0000 to shop", len(list.Items), bulkCertificates+1)
		}
		if pages := f.listPages.Load(); pages != 2 {
			t.Errorf("%d list requests, want 2 pages", pages)
		}
		code, out, _ = f.run(t, nil, "get", "certificates", "--limit", "3")
		if code != 0 || strings.Count(out, "\n") != 4 || fields(out, "bulk-0002") == nil {
			t.Errorf("--limit 3: exit %d\n%s", code, out)
		}
	})

	t.Run("get agents -o yaml", func(t *testing.T) {
		code, out, _ := f.run(t, nil, "get", "agents", "-l", "role=web", "-o", "yaml")
		var list apiv1.AgentList
		if err := yaml.Unmarshal([]byte(out), &list); code != 0 || err != nil {
			t.Fatalf("exit %d, %v\n%s", code, err, out)
		}
		if len(list.Items) != 2 || list.Items[0].Name != "web-01" || list.Items[1].Status.State != apiv1.Offline {
			t.Errorf("agents: %+v", list.Items)
		}
		if !strings.Contains(out, "kind: Agent") {
			t.Errorf("yaml does not use the API's field names:\n%s", out)
		}
		code, out, _ = f.run(t, nil, "get", "agents")
		if got := fields(out, "db-01"); code != 0 || len(got) < 4 || got[1] != "offline" || got[2] != "-" || got[3] != "role=db" {
			t.Errorf("get agents: db-01's row %q\n%s", got, out)
		}
	})

	t.Run("get revisions", func(t *testing.T) {
		code, out, _ := f.run(t, nil, "get", "revisions", "-o", "wide")
		if got := fields(out, "1"); code != 0 || len(got) < 4 || got[1] != "applied" || got[2] != "main@111111111111" || got[3] != "Alice" {
			t.Errorf("revision row %q\n%s", got, out)
		}
		if lines := strings.Count(out, "\n"); lines != 3 {
			t.Errorf("want the header and two revisions, newest first:\n%s", out)
		}
		wantOutput(t, "revisions", out, fmt.Sprintf("+%d ~0 -0", bulkCertificates+4), "+0 ~1 -0", "add shop", "label shop")
	})

	t.Run("describe certificate", func(t *testing.T) {
		code, out, errOut := f.run(t, nil, "describe", "certificate", "shop")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		wantOutput(t, "describe", out, "Name:           shop", "Labels:         team=shop,tier=front", "Issuer:         internal-ca",
			"DNS names:      shop.example.com, www.shop.example.com", "Status:         not ready: issuance for agent web-02 failed",
			"Serial:         0a1b2c", "Expires:", "Renews at:", "Recent revisions:")
		if got := fields(out, "2"); len(got) < 4 || got[1] != "update" || got[2] != "applied" || got[3] != "main@222222222222" {
			t.Errorf("shop's recent revision: %q\n%s", got, out)
		}
		if got := fields(out, "web-01"); len(got) < 4 || got[1] != "installed" || got[2] != "0a1b2c" || got[3] != "same" {
			t.Errorf("web-01's deployment (installed, and served the same): %q\n%s", got, out)
		}
		if got := fields(out, "web-02"); len(got) < 2 || got[1] != "issue-failed" || !strings.Contains(strings.Join(got, " "), "CSR does not match") ||
			!strings.Contains(strings.Join(got, " "), "(agent suspended)") {
			t.Errorf("web-02's deployment: %q\n%s", got, out)
		}
		// A deployment waiting for the rate limit says so, as no failure.
		code, out, errOut = f.run(t, nil, "describe", "certificate", "bulk-0000")
		if got := strings.Join(fields(out, "db-01"), " "); code != 0 || !strings.Contains(got, "waiting, in 6d") ||
			!strings.Contains(got, "waiting for the CA's rate limit until") || strings.Contains(got, "failure") {
			t.Errorf("db-01's waiting deployment: exit %d %q\n%s%s", code, got, out, errOut)
		}
		code, out, _ = f.run(t, nil, "describe", "certificate", "shop", "-o", "json")
		var c apiv1.Certificate
		if err := json.Unmarshal([]byte(out), &c); code != 0 || err != nil || c.Status == nil || len(c.Status.Deployments) != 2 {
			t.Errorf("describe -o json: exit %d, %v, %+v", code, err, c.Status)
		}
	})

	t.Run("describe agent", func(t *testing.T) {
		code, out, errOut := f.run(t, nil, "describe", "agent", "web-02")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		wantOutput(t, "describe agent", out, "Name:           web-02", "State:          offline", "suspended (spec.suspend", "Assignments (1):", "CSR does not match", "Recent revisions:")
		if got := fields(out, "shop"); len(got) < 2 || got[1] != "issue-failed" {
			t.Errorf("web-02's assignment: %q\n%s", got, out)
		}
	})

	t.Run("not found", func(t *testing.T) {
		code, out, errOut := f.run(t, nil, "describe", "certificate", "nope")
		if code != 1 || out != "" || !strings.Contains(errOut, `certops describe: certificate "nope" not found`) {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
}

// TestOperatorCommandsRefused: bad usage exits 2 and changes nothing; an
// unreachable server and a refused token exit 1 with one line saying what
// to do.
func TestOperatorCommandsRefused(t *testing.T) {
	const token = "the-api-token"
	f := newAPIFixture(t, token)
	dir := t.TempDir()
	tokenFile, wrongFile := filepath.Join(dir, "token"), filepath.Join(dir, "wrong")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrongFile, []byte("nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	code, _, errOut := f.run(t, nil, "status")
	if code != 1 || errOut != "certops status: the server refused the token: set --token-file (or CERTOPS_TOKEN_FILE) to the API's token\n" {
		t.Errorf("no token: exit %d, %q", code, errOut)
	}
	code, _, errOut = f.run(t, nil, "get", "agents", "--token-file", wrongFile)
	if code != 1 || !strings.Contains(errOut, "the server refused the token in "+wrongFile) {
		t.Errorf("wrong token: exit %d, %q", code, errOut)
	}
	if code, out, errOut := f.run(t, map[string]string{"CERTOPS_TOKEN_FILE": tokenFile}, "get", "agents"); code != 0 || fields(out, "web-01") == nil {
		t.Errorf("token from CERTOPS_TOKEN_FILE: exit %d, %s%s", code, out, errOut)
	}

	closed := "http://" + testkit.ClosedAddr(t)
	code, out, errOut := cli(context.Background(), nil, "get", "certificates", "--server", closed)
	if code != 1 || out != "" || errOut != "certops get: cannot reach "+closed+": connection refused\n" {
		t.Errorf("unreachable: exit %d, %q", code, errOut)
	}

	for _, args := range [][]string{
		{"get"},
		{"get", "widgets"},
		{"get", "certificates", "agents"},
		{"get", "certificates", "-o", "xml"},
		{"get", "certificates", "-l", "novalue"},
		{"get", "revisions", "-l", "a=b"},
		{"get", "certificates", "--limit", "-1"},
		{"describe", "certificate"},
		{"describe", "revision", "1"},
		{"describe", "certificate", "shop", "-o", "wide"},
		{"status", "extra"},
		{"status", "--token-file", filepath.Join(dir, "missing")},
		{"reconcile", "now"},
		{"reconcile", "--timeout", "5"},
		{"completion"},
		{"completion", "powershell"},
		{"get", "certificates", "--server", "ftp://example.com"},
	} {
		code, out, errOut := f.run(t, nil, args...)
		if code != 2 || out != "" || errOut == "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and an explanation", args, code, out, errOut)
		}
	}
	if _, _, errOut := f.run(t, nil, "reconcile", "--timeout", "5"); !strings.Contains(errOut, `"5" has no unit: write it as 5s, 5m or 5h`) {
		t.Errorf("a duration without unit: %q", errOut)
	}
}

// TestTerminalOutput: colours only on a terminal without NO_COLOR, and
// tables cut to the terminal's width.
func TestTerminalOutput(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		tty  bool
		env  func(string) string
		want bool
	}{
		{true, env(), true},
		{false, env(), false},
		{true, env("NO_COLOR", "1"), false},
		{true, env("TERM", "dumb"), false},
	} {
		if got := colorAllowed(tc.tty, tc.env); got != tc.want {
			t.Errorf("tty %v: colours %v, want %v", tc.tty, got, tc.want)
		}
	}
	// A writer that is not a terminal: unlimited width, no colours.
	if term := newTerminal(cliEnv{stdout: &strings.Builder{}, getenv: env()}); term.color || term.width != 0 {
		t.Errorf("a buffer as stdout: %+v", term)
	}

	var b strings.Builder
	term := terminal{w: &b, width: 40, color: true, now: time.Now()}
	term.print(table{header: []string{"NAME", "STATE", "LAST ERROR"}, states: []int{1}, rows: [][]string{
		{"shop", "installed", ""},
		{"api", "rolled-back", strings.Repeat("reload failed ", 10)},
	}})
	out := b.String()
	if !strings.Contains(out, "\x1b[32minstalled\x1b[0m") || !strings.Contains(out, "\x1b[31mrolled-back\x1b[0m") {
		t.Errorf("states not coloured:\n%q", out)
	}
	for line := range strings.Lines(out) {
		if n := visibleWidth(strings.TrimSuffix(line, "\n")); n > 40 {
			t.Errorf("line of %d characters on a 40-column terminal: %q", n, line)
		}
	}
	if !strings.Contains(out, "…") {
		t.Errorf("the long error is not cut:\n%s", out)
	}
}

// visibleWidth counts what a terminal shows of s: not the colour codes.
func visibleWidth(s string) int {
	n, esc := 0, false
	for _, r := range s {
		switch {
		case r == '\x1b':
			esc = true
		case esc && r == 'm':
			esc = false
		case !esc:
			n++
		}
	}
	return n
}

// TestReconcileCommandEndToEnd runs `certops serve` on a real git
// repository and database with polling practically off and an API token:
// a pushed commit, announced by no webhook, is applied once `certops
// reconcile --wait` asks for it; a broken one is reported with its errors
// (exit 1); a pass that finds nothing new still answers.
func TestReconcileCommandEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	repo := newConfigRepo(t, map[string]string{"base.yaml": issuerDoc, "certs.yaml": certDoc("shop", "shop.example.com")})
	first := gitCLI(t, repo.work, "rev-parse", "HEAD")
	tokenFile := filepath.Join(t.TempDir(), "api-token")
	if err := os.WriteFile(tokenFile, []byte("operator-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := repo.serveEnv()
	env["CERTOPS_REF"] = "main"
	env["CERTOPS_API_TOKEN_FILE"] = tokenFile
	srv := startServe(t, ctx, env)
	client := map[string]string{"CERTOPS_SERVER": srv.url, "CERTOPS_TOKEN_FILE": tokenFile}
	testkit.WaitFor(t, waitTimeout, "the first revision to be applied", func() bool {
		_, out, _ := cli(ctx, client, "status", "-o", "json")
		var st apiv1.Status
		return json.Unmarshal([]byte(out), &st) == nil && st.LastAppliedRevision == "main@sha1:"+first
	})

	second := repo.push("second", map[string]string{"certs.yaml": certDoc("shop", "shop.example.com") + certDoc("blog", "blog.example.com")})
	// Without the token the request is refused and wakes nothing.
	code, _, errOut := cli(ctx, map[string]string{"CERTOPS_SERVER": srv.url}, "reconcile")
	if code != 1 || !strings.Contains(errOut, "the server refused the token: set --token-file") {
		t.Fatalf("reconcile without a token: exit %d, %q", code, errOut)
	}
	code, out, errOut := cli(ctx, client, "reconcile", "--wait", "--timeout", "30s", "--poll-interval", "100ms")
	if code != 0 || !strings.Contains(out, "Ready: revision main@sha1:"+second+" applied") {
		t.Fatalf("reconcile --wait: exit %d\nstdout: %s\nstderr: %s\nserve: %s", code, out, errOut, srv.logs.String())
	}

	broken := repo.push("broken", map[string]string{"certs.yaml": certDoc("shop", "bad_host!")})
	code, out, errOut = cli(ctx, client, "reconcile", "--wait", "--timeout", "30s", "--poll-interval", "100ms")
	if code != 1 || !strings.Contains(out, "Stalled (ValidationFailed)") || !strings.Contains(out, "attempted revision: main@sha1:"+broken) ||
		!strings.Contains(out, "main@sha1:"+second+" (still serving)") || !strings.Contains(out, "certs.yaml:") ||
		!strings.Contains(errOut, "certops reconcile: the reconciler is not ready") {
		t.Fatalf("reconcile --wait of a broken revision: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	fixed := repo.push("fix", map[string]string{"certs.yaml": certDoc("shop", "shop.example.com")})
	if code, out, errOut := cli(ctx, client, "reconcile", "--wait", "--poll-interval", "100ms"); code != 0 || !strings.Contains(out, "main@sha1:"+fixed+" applied") {
		t.Fatalf("reconcile --wait of the fix: exit %d\n%s%s", code, out, errOut)
	}
	// Nothing new: the pass fetches the same head, and that is an answer.
	if code, out, errOut := cli(ctx, client, "reconcile", "--wait", "--poll-interval", "100ms"); code != 0 || !strings.Contains(out, "main@sha1:"+fixed+" applied") {
		t.Fatalf("reconcile --wait with nothing new: exit %d\n%s%s", code, out, errOut)
	}
	// Without --wait it only asks.
	if code, out, _ := cli(ctx, client, "reconcile"); code != 0 || !strings.HasPrefix(out, "reconcile requested at ") {
		t.Errorf("reconcile: exit %d, %q", code, out)
	}
	// The read API stays read-only.
	req, _ := http.NewRequest(http.MethodPost, srv.url+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer operator-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/v1/status: %d, want 405", resp.StatusCode)
	}
	cancel()
	<-srv.done
}
