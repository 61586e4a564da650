package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certops/certops/fleet"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/review"
	"github.com/certops/certops/testkit"
	"github.com/certops/certops/testkit/storekit"
	"github.com/certops/certops/webhook"
)

func TestMain(m *testing.M) {
	// The failover tests run replicas as real processes: this test binary,
	// re-executed as certops.
	if os.Getenv(runAsCertops) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := run(ctx, append([]string{"certops"}, os.Args[1:]...), os.Getenv, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	pgtest.Main(m)
}

// cli runs the certops command line in-process.
func cli(ctx context.Context, env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errOut testkit.Buffer
	code = run(ctx, append([]string{"certops"}, args...), func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := fleet.WriteFiles(dir, files); err != nil {
		t.Fatal(err)
	}
}

func gitCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := fleet.Git(context.Background(), dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const issuerDoc = `apiVersion: certops/v1
kind: Issuer
metadata: {name: internal-ca}
spec:
  localCA: {certFile: /etc/certops/ca/tls.crt, keyFile: /etc/certops/ca/tls.key}
---
apiVersion: certops/v1
kind: Agent
metadata: {name: web-01, labels: {role: web}}
spec:
  tokenSHA256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
`

func certDoc(name, host string) string {
	return fmt.Sprintf(`---
apiVersion: certops/v1
kind: Certificate
metadata: {name: %s, labels: {team: shop}}
spec:
  issuerRef: internal-ca
  commonName: %s
  dnsNames: [%s]
  deploy:
    agents: [web-01]
    files: {cert: /etc/ssl/%s/cert.pem, key: /etc/ssl/%s/key.pem, mode: "0600"}
    reload: [nginx, -s, reload]
`, name, host, host, name, name)
}

func TestValidate(t *testing.T) {
	ctx := context.Background()
	if code, _, stderr := cli(ctx, nil, "validate", "../../examples/config"); code != 0 {
		t.Fatalf("validate examples: exit %d, want 0\n%s", code, stderr)
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"base.yaml":       issuerDoc,
		"certs/bad.yaml":  certDoc("shop", "bad_host.example.com") + "  bogus: 1\n",
		"certs/also.yaml": strings.Replace(certDoc("blog", "blog.example.com"), "internal-ca", "missing-ca", 1),
	})
	code, stdout, _ := cli(ctx, nil, "validate", dir)
	if code != 1 {
		t.Fatalf("validate invalid dir: exit %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	re := regexp.MustCompile(`^certs/(bad|also)\.yaml:\d+: .+`)
	for _, l := range lines {
		if !re.MatchString(l) {
			t.Errorf("error line %q is not FILE:LINE: message relative to DIR", l)
		}
	}
	for _, want := range []string{"bad_host.example.com", "bogus", "missing-ca"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("validate output lacks an error about %s:\n%s", want, stdout)
		}
	}
	if code, _, _ := cli(ctx, nil, "validate", filepath.Join(dir, "does-not-exist")); code != 1 {
		t.Errorf("validate missing dir: exit %d, want 1", code)
	}
	if code, _, _ := cli(ctx, nil, "validate", dir, dir); code != 2 {
		t.Errorf("validate with two directories: exit %d, want 2 (bad usage)", code)
	}

	// One file is checked on its own: what it defines, not references to
	// objects of other files (shop.yaml's issuer is in issuers.yaml).
	shop := "../../examples/config/certificates/shop.yaml"
	if code, _, stderr := cli(ctx, nil, "validate", shop); code != 0 || !strings.Contains(stderr, "valid") {
		t.Errorf("validate %s: exit %d, want 0\n%s", shop, code, stderr)
	}
	bad := filepath.Join(dir, "certs", "bad.yaml")
	code, stdout, _ = cli(ctx, nil, "validate", bad)
	if code != 1 || !strings.Contains(stdout, bad+":") || !strings.Contains(stdout, "bogus") || !strings.Contains(stdout, "bad_host.example.com") {
		t.Errorf("validate %s: exit %d, want 1 with its errors under the path given:\n%s", bad, code, stdout)
	}
	if code, stdout, _ := cli(ctx, nil, "validate", filepath.Join(dir, "certs", "also.yaml")); code != 0 {
		t.Errorf("validate also.yaml alone: exit %d; a reference to an Issuer of another file is not an error there:\n%s", code, stdout)
	}
}

func TestPlan(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config/base.yaml": issuerDoc, "config/certs.yaml": certDoc("shop", "shop.example.com"), "README.md": "x"})
	gitCLI(t, dir, "init", "-q", "-b", "main")
	gitCLI(t, dir, "add", "-A")
	gitCLI(t, dir, "commit", "-q", "-m", "base")
	writeFiles(t, dir, map[string]string{"config/certs.yaml": certDoc("shop", "www.example.com") + certDoc("blog", "blog.example.com")})
	gitCLI(t, dir, "checkout", "-q", "-b", "feature")
	gitCLI(t, dir, "commit", "-q", "-am", "change")
	writeFiles(t, dir, map[string]string{"README.md": "only docs"})
	gitCLI(t, dir, "commit", "-q", "-am", "docs only")

	short := func(rev string) string { return strings.TrimSpace(gitCLI(t, dir, "rev-parse", "--short=7", rev)) }
	code, stdout, stderr := cli(ctx, nil, "plan", "--repo", dir, "--path", "config", "--base", "main", "--head", "HEAD", "--format", "markdown")
	if code != 2 {
		t.Fatalf("plan with changes: exit %d, want 2\n%s", code, stderr)
	}
	heading := fmt.Sprintf("### certops plan: main (%s) → HEAD (%s)\n", short("main"), short("HEAD"))
	for _, want := range []string{heading, "| Certificate |", "shop", "blog", "www.example.com", "```diff"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("markdown plan lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = cli(ctx, nil, "plan", "--repo", dir, "--path", "config", "--base", "HEAD~1", "--head", "HEAD", "--format", "json")
	if code != 0 {
		t.Fatalf("plan without changes: exit %d, want 0", code)
	}
	var rep struct {
		FormatVersion          int
		Valid                  bool
		BaseCommit, HeadCommit string
		Changes                []any
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || len(rep.Changes) != 0 || rep.FormatVersion != review.FormatVersion || !rep.Valid {
		t.Errorf("json plan without changes: %v, %s", err, stdout)
	}
	if head := strings.TrimSpace(gitCLI(t, dir, "rev-parse", "HEAD")); rep.HeadCommit != head || rep.BaseCommit != strings.TrimSpace(gitCLI(t, dir, "rev-parse", "HEAD~1")) {
		t.Errorf("json plan: baseCommit %q, headCommit %q; want the full hashes of HEAD~1 and HEAD (%s)", rep.BaseCommit, rep.HeadCommit, head)
	}
	if code, _, _ := cli(ctx, nil, "plan", "--repo", dir, "--base", "no-such-branch", "--head", "HEAD"); code != 1 {
		t.Errorf("plan with a bad revision: exit %d, want 1", code)
	}
	for _, args := range [][]string{
		// Bad usage exits 1, not 2: plan's 2 means "changes".
		{"--repo", dir, "--path", "config", "--head", "HEAD"}, // no --base
		{"--repo", dir, "--path", "config", "--base", "main", "--format", "html"},
		{"--repo", dir, "--base", "main", "--no-such-flag"},
		{"--repo", t.TempDir(), "--base", "main"}, // not a repository
		{"--repo", dir, "--path", "no-such-dir", "--base", "main"},
	} {
		if code, stdout, _ := cli(ctx, nil, append([]string{"plan"}, args...)...); code != 1 || stdout != "" {
			t.Errorf("plan %v: exit %d with output %q, want 1 and no plan", args, code, stdout)
		}
	}
	writeFiles(t, dir, map[string]string{"config/certs.yaml": certDoc("shop", "bad_host")})
	gitCLI(t, dir, "commit", "-q", "-am", "broken")
	code, _, stderr = cli(ctx, nil, "plan", "--repo", dir, "--path", "config", "--base", "main", "--head", "HEAD")
	if code != 1 || !strings.Contains(stderr, "certs.yaml:") {
		t.Errorf("plan of an invalid head: exit %d, want 1 with FILE:LINE errors\n%s", code, stderr)
	}
	if n := strings.Count(stderr, "bad_host"); n != 1 {
		t.Errorf("plan printed the validation error %d times, want once:\n%s", n, stderr)
	}
	// Markdown and JSON say why there is no plan, on stdout, for the PR
	// comment and for tools; the exit code stays 1.
	code, stdout, _ = cli(ctx, nil, "plan", "--repo", dir, "--path", "config", "--base", "main", "--head", "HEAD", "--format", "markdown")
	if code != 1 || !strings.Contains(stdout, "#### The head is invalid and would be refused\n\n1 error:") ||
		!regexp.MustCompile(`(?m)^certs\.yaml:\d+: .*bad_host`).MatchString(stdout) {
		t.Errorf("markdown plan of an invalid head: exit %d, want 1 with the errors\n%s", code, stdout)
	}
	code, stdout, _ = cli(ctx, nil, "plan", "--repo", dir, "--path", "config", "--base", "main", "--head", "HEAD", "--format", "json")
	var refused struct {
		Valid   bool
		Refusal string
		Errors  []struct {
			File    string
			Line    int
			Message string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &refused); code != 1 || err != nil || refused.Valid || refused.Refusal != "is invalid" ||
		len(refused.Errors) != 1 || refused.Errors[0].File != "certs.yaml" || refused.Errors[0].Line == 0 {
		t.Errorf("json plan of an invalid head: exit %d, %v, want 1 with valid false and the error\n%s", code, err, stdout)
	}
	// A pull request fixing a broken base still gets a plan.
	writeFiles(t, dir, map[string]string{"config/certs.yaml": certDoc("shop", "fixed.example.com")})
	gitCLI(t, dir, "commit", "-q", "-am", "fix")
	code, stdout, stderr = cli(ctx, nil, "plan", "--repo", dir, "--path", "config", "--base", "HEAD~1", "--head", "HEAD")
	if code != 2 || !strings.Contains(stderr, "base revision HEAD~1 is invalid") || !strings.Contains(stdout, "fixed.example.com") {
		t.Errorf("plan from an invalid base: exit %d, want 2 with a warning\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

func TestHelpExitsZero(t *testing.T) {
	for _, cmd := range []string{"serve", "migrate", "plan", "demo", "validate"} {
		if code, _, stderr := cli(context.Background(), nil, cmd, "-h"); code != 0 || !strings.Contains(stderr, "usage") && !strings.Contains(stderr, "Usage") {
			t.Errorf("certops %s -h: exit %d, want 0 with usage\n%s", cmd, code, stderr)
		}
	}
}

// Bad usage exits 2 in every command but plan (see TestPlan), as in
// certops-agent; an error exits 1.
func TestBadUsageExitsTwo(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"serve", "--no-such-flag"},
		{"serve", "--repo", "."}, // no --database-url
		{"serve", "--database-url", "postgres://x", "--repo", ".", "--log-format", "xml"},
		{"serve", "--database-url", "postgres://x", "--repo", ".", "--keep-versions", "-1"},
		{"serve", "--database-url", "postgres://x", "--repo", ".", "--prune-interval", "-1h"},
		{"serve", "--database-url", "postgres://x", "--repo", ".", "--ari-interval", "-1h"},
		{"migrate"}, // no --database-url
		{"migrate", "--database-wait", "soon"},
		{"backup", "--log-level", "loud", "--database-url", "postgres://x"},
		{"restore", "--database-url", "postgres://x", "--file", "s3://bucket-only"},
		{"demo", "--keep=maybe"},
		{"rules", ".", "extra"},
		{"validate", "--strict"},
		{"ca", "init", "--out", filepath.Join(t.TempDir(), "ca"), "--key-type", "dsa"},
	} {
		code, stdout, stderr := cli(context.Background(), nil, args...)
		if code != 2 || stderr == "" || stdout != "" {
			t.Errorf("certops %s: exit %d, stdout %q, stderr %q; want 2 and a message on stderr", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	if code, _, _ := cli(context.Background(), map[string]string{"CERTOPS_INTERVAL": "often"}, "serve"); code != 2 {
		t.Errorf("serve with a bad CERTOPS_INTERVAL: exit %d, want 2", code)
	}
	if code, _, stderr := cli(context.Background(), map[string]string{"CERTOPS_KEEP_REVISIONS": "all"}, "serve"); code != 2 || !strings.Contains(stderr, "CERTOPS_KEEP_REVISIONS") {
		t.Errorf("serve with a bad CERTOPS_KEEP_REVISIONS: exit %d, stderr %q; want 2 naming the variable", code, stderr)
	}
	if code, _, _ := cli(context.Background(), nil, "validate", filepath.Join(t.TempDir(), "missing")); code != 1 {
		t.Errorf("validate of a missing directory: exit %d, want 1 (an error, not bad usage)", code)
	}
}

type apiStatus struct {
	LastAppliedRevision   string `json:"lastAppliedRevision"`
	LastAttemptedRevision string `json:"lastAttemptedRevision"`
	Conditions            []struct {
		Type, Status, Reason, Message string
	} `json:"conditions"`
	Errors []string `json:"errors"`
}

// testClient is what getJSON asks with; TestDemo swaps in one that trusts
// the demo CA (no test of this package runs in parallel).
var testClient = http.DefaultClient

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := testClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, body)
		}
	}
	return resp.StatusCode
}

// scrape returns the /metrics page of the server at url.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// metric returns the value of the sample series (name{labels} as /metrics
// writes it) scraped from the server at url, or 0 while there is none.
func metric(t *testing.T, url, series string) float64 {
	t.Helper()
	for line := range strings.Lines(scrape(t, url)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// waitTimeout bounds every wait for something serve or demo does.
const waitTimeout = 30 * time.Second

// waitStatus polls the status API at url until cond holds and returns the
// status it saw last.
func waitStatus(t *testing.T, url, what string, cond func(apiStatus) bool) apiStatus {
	t.Helper()
	var st apiStatus
	testkit.WaitFor(t, waitTimeout, what, func() bool {
		st = apiStatus{}
		getJSON(t, url+"/api/v1/status", &st)
		return cond(st)
	})
	return st
}

// appliedPrefix is a waitStatus condition: a revision whose name starts
// with prefix (e.g. "dir@sha1:") is applied.
func appliedPrefix(prefix string) func(apiStatus) bool {
	return func(st apiStatus) bool { return strings.HasPrefix(st.LastAppliedRevision, prefix) }
}

// hookSecret is the generic webhook secret of configRepo.
const hookSecret = "s3cret"

// configRepo is a bare config repository on branch main that `serve`
// follows, a clone that pushes to it, and the generic webhook's secret file.
type configRepo struct {
	t                      *testing.T
	bare, work, secretFile string
}

// newConfigRepo creates the repository and pushes files as its first commit.
func newConfigRepo(t *testing.T, files map[string]string) *configRepo {
	t.Helper()
	base := t.TempDir()
	r := &configRepo{t: t, bare: filepath.Join(base, "config.git"), work: filepath.Join(base, "work"),
		secretFile: filepath.Join(base, "hook-secret")}
	gitCLI(t, base, "init", "-q", "--bare", "-b", "main", r.bare)
	gitCLI(t, base, "clone", "-q", r.bare, r.work)
	if err := os.WriteFile(r.secretFile, []byte(hookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.push("first", files)
	return r
}

// push writes files into the clone, commits everything and pushes; it
// returns the new commit.
func (r *configRepo) push(msg string, files map[string]string) string {
	r.t.Helper()
	writeFiles(r.t, r.work, files)
	gitCLI(r.t, r.work, "add", "-A")
	gitCLI(r.t, r.work, "commit", "-q", "-m", msg)
	gitCLI(r.t, r.work, "push", "-q", "origin", "main")
	return gitCLI(r.t, r.work, "rev-parse", "HEAD")
}

// serveEnv configures `serve` to follow the repository with polling
// practically off, so only a webhook wakes the fetch.
func (r *configRepo) serveEnv() map[string]string {
	return map[string]string{
		"CERTOPS_DATABASE_URL":                pgtest.DB(r.t),
		"CERTOPS_REPO":                        "file://" + r.bare,
		"CERTOPS_INTERVAL":                    "1h",
		"CERTOPS_GENERIC_WEBHOOK_SECRET_FILE": r.secretFile,
	}
}

// postHook posts body to the generic webhook receiver at url, signed with
// hookSecret when sign is set, and returns the status code.
func postHook(t *testing.T, url, body string, sign bool) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/hooks/generic", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if sign {
		mac := hmac.New(sha256.New, []byte(hookSecret))
		mac.Write([]byte(body))
		req.Header.Set("X-Certops-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServeEndToEnd runs `certops serve` against a real bare repository that
// receives real pushes: a good revision is applied, a broken one refused
// while the good one keeps serving, and the fix applied. Each push is
// announced by a signed webhook; the poll interval is an hour, so only the
// webhook can have woken the fetch.
func TestServeEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	repo := newConfigRepo(t, map[string]string{"base.yaml": issuerDoc, "certs.yaml": certDoc("shop", "shop.example.com")})
	first := gitCLI(t, repo.work, "rev-parse", "HEAD")
	env := repo.serveEnv()
	env["CERTOPS_REF"] = "main"
	srv := startServe(t, ctx, env)
	url := srv.url
	waitStatus(t, url, "the first revision to be applied", func(st apiStatus) bool {
		return st.LastAppliedRevision == "main@sha1:"+first
	})

	// A broken revision is refused; the first keeps serving. The unsigned
	// webhook before the signed one must not wake the fetch: reconciles run
	// one at a time in the order of their wake-ups, so one it woke would
	// be counted, as a second refusal of the broken revision, before the
	// fix below is applied (checked there).
	broken := repo.push("broken", map[string]string{"certs.yaml": certDoc("shop", "shop.example.com") + certDoc("blog", "bad_host!")})
	if code := postHook(t, url, `{"after":"`+strings.Repeat("0", 40)+`"}`, false); code != http.StatusUnauthorized {
		t.Fatalf("unsigned webhook: got %d, want 401", code)
	}
	if code := postHook(t, url, `{"ref":"refs/heads/main"}`, true); code != http.StatusAccepted {
		t.Fatalf("signed webhook: got %d, want 202", code)
	}
	st := waitStatus(t, url, "the broken revision to be attempted", func(st apiStatus) bool {
		return st.LastAttemptedRevision == "main@sha1:"+broken
	})
	if st.LastAppliedRevision != "main@sha1:"+first {
		t.Errorf("lastAppliedRevision after a broken push: got %s, want the first", st.LastAppliedRevision)
	}
	if len(st.Errors) == 0 || !strings.HasPrefix(st.Errors[0], "certs.yaml:") {
		t.Errorf("status errors: got %v, want FILE:LINE errors", st.Errors)
	}
	stalled := false
	for _, c := range st.Conditions {
		stalled = stalled || (c.Type == "Stalled" && c.Status == "True")
	}
	if !stalled {
		t.Errorf("conditions after a broken push: %+v, want Stalled=True", st.Conditions)
	}
	if code := getJSON(t, url+"/api/v1/certificates/blog", nil); code != http.StatusNotFound {
		t.Errorf("certificate of the broken revision: got %d, want 404", code)
	}
	// serve mounts the dashboard: / leads to it, and it shows the refusal.
	ui, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(ui.Body)
	ui.Body.Close()
	if ui.StatusCode != http.StatusOK || ui.Request.URL.Path != "/ui/" || !strings.Contains(string(page), `id="reconcile-errors"`) ||
		ui.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("GET / = %d at %s, want the dashboard's overview with the errors", ui.StatusCode, ui.Request.URL)
	}

	// The fix is applied.
	fixed := repo.push("fix", map[string]string{"certs.yaml": certDoc("shop", "shop.example.com") + certDoc("blog", "blog.example.com")})
	if code := postHook(t, url, `{}`, true); code != http.StatusAccepted {
		t.Fatalf("signed webhook for the fix: got %d, want 202", code)
	}
	waitStatus(t, url, "the fix to be applied", func(st apiStatus) bool { return st.LastAppliedRevision == "main@sha1:"+fixed })
	// Counted after the status is written: once both applies are counted, so
	// is every reconcile woken before the fix.
	testkit.WaitFor(t, waitTimeout, "the fix's reconcile to be counted", func() bool {
		return metric(t, url, `certops_reconcile_total{result="success"}`) >= 2
	})
	if n := metric(t, url, `certops_reconcile_total{result="stalled"}`); n != 1 {
		t.Errorf("the broken revision was refused by %v reconciles, want 1: the unsigned webhook woke the fetch", n)
	}
	var list struct {
		Items []struct{ Name string }
		Next  string
	}
	getJSON(t, url+"/api/v1/certificates?label=team=shop", &list)
	if len(list.Items) != 2 {
		t.Errorf("certificates after the fix: got %+v, want blog and shop", list.Items)
	}
	var revs struct {
		Items []struct {
			Outcome string
			Actions []struct{ Action, Kind, Name string }
		}
	}
	getJSON(t, url+"/api/v1/revisions", &revs)
	if len(revs.Items) != 3 || revs.Items[0].Outcome != "applied" || revs.Items[1].Outcome != "invalid" {
		t.Errorf("revision history: got %+v, want applied, invalid, applied (newest first)", revs.Items)
	}

	// The API is read-only.
	req, _ := http.NewRequest(http.MethodDelete, url+"/api/v1/certificates/shop", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: got %d, want 405", resp.StatusCode)
	}
	metrics := scrape(t, url)
	// Without GOGC in its environment, serve collects at 50 %.
	for _, want := range []string{`certops_reconcile_total{result="success"}`, `certops_webhook_requests_total{receiver="generic",result="unauthorized"} 1`, "certops_applied_revision_info", "go_gc_gogc_percent 50", `certops_build_info{goversion="go`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	cancel()
	select {
	case code := <-srv.done:
		if code != 0 {
			t.Errorf("serve exit code after shutdown: got %d, want 0\n%s", code, srv.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not shut down")
	}
}

// TestDemo runs `certops demo` as the README says and checks it applies the
// bundled example repository; a second run on the same --dir picks up where
// the first left off. The demo's backup policy works from the start (no
// CertopsBackupTooOld) and its notification channel is its own console
// receiver (no delivery failures).
func TestDemo(t *testing.T) {
	// Not under t.TempDir (mode 0700): run as root, the demo's PostgreSQL
	// runs as the postgres user, which must reach its data directory.
	parent, err := os.MkdirTemp("", "certops-demo-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "demo")
	runDemo(t, dir)
	if backups, _ := filepath.Glob(filepath.Join(dir, "backups", "*")); len(backups) == 0 {
		t.Errorf("the demo took no backup into %s", filepath.Join(dir, "backups"))
	}
	second := runDemo(t, dir)
	if !strings.Contains(second, "reusing "+filepath.Join(dir, "config-repo")) {
		t.Errorf("the second run on the same --dir did not reuse the repository:\n%s", second)
	}
}

// runDemo runs `certops demo --dir dir` until web-01 has shop-frontend
// installed, checks what every run must show, stops it and returns its
// output.
func runDemo(t *testing.T, dir string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testkit.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"certops", "demo", "--listen", "127.0.0.1:0", "--dir", dir},
			func(string) string { return "" }, &out, &errOut)
	}()
	re := regexp.MustCompile(`status\s+(https://\S+)`)
	var statusURL string
	testkit.WaitFor(t, waitTimeout, "the demo to print its URLs", func() bool {
		select {
		case code := <-done:
			t.Fatalf("demo exited early with %d:\n%s\n%s", code, out.String(), errOut.String())
		default:
		}
		m := re.FindStringSubmatch(out.String())
		if m != nil {
			statusURL = m[1]
		}
		return m != nil
	})
	base := strings.TrimSuffix(statusURL, "/api/v1/status")
	// It serves HTTPS with a certificate of the demo CA it names.
	ca := regexp.MustCompile(`local CA\s+(\S+)`).FindStringSubmatch(out.String())
	if ca == nil {
		t.Fatalf("demo output does not name its CA file:\n%s", out.String())
	}
	hc, err := demoHTTPClient(ca[1])
	if err != nil {
		t.Fatal(err)
	}
	testClient = hc
	t.Cleanup(func() { testClient = http.DefaultClient })
	if out, err := exec.Command("curl", "-sS", "--fail", "--cacert", ca[1], base+"/healthz").CombinedOutput(); err != nil {
		t.Fatalf("curl --cacert %s %s/healthz: %v\n%s", ca[1], base, err, out)
	}
	waitStatus(t, base, "the example repo to be applied", appliedPrefix("main@sha1:"))
	var list struct{ Items []any }
	getJSON(t, base+"/api/v1/certificates", &list)
	if len(list.Items) == 0 {
		t.Error("demo applied no certificates")
	}
	// The local agent installs web-01's certificates from the local CA.
	m := regexp.MustCompile(`installs its certificates under (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("demo output does not say where certificates go:\n%s", out.String())
	}
	fullchain := filepath.Join(m[1], "shop", "fullchain.pem")
	testkit.WaitFor(t, waitTimeout, "the demo agent to install shop-frontend", func() bool {
		_, err := os.Stat(fullchain)
		return err == nil
	})
	var cs certStatus
	testkit.WaitFor(t, waitTimeout, "shop-frontend to be installed on web-01", func() bool {
		getJSON(t, base+"/api/v1/certificates/shop-frontend", &cs)
		for _, d := range cs.Status.Deployments {
			if d.Agent == "web-01" && d.State == "installed" {
				return true
			}
		}
		return false
	})
	var status struct{ Alerts []struct{ Name string } }
	getJSON(t, base+"/api/v1/status", &status)
	for _, a := range status.Alerts {
		if a.Name == "CertopsBackupTooOld" {
			t.Error("CertopsBackupTooOld fires in the demo: its backup policy does not work out of the box")
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("demo exit code: got %d, want 0\n%s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop")
	}
	if logs := errOut.String(); strings.Contains(logs, "notification") && strings.Contains(logs, "fail") {
		t.Errorf("the demo's notifications failed:\n%s", logs)
	}
	return out.String()
}

// The demo's console receiver prints each signed notification as one line
// and refuses unsigned ones.
func TestDemoConsoleReceiver(t *testing.T) {
	var out testkit.Buffer
	c, err := startConsoleReceiver(t.Context(), &out, filepath.Join(t.TempDir(), "notify.key"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key, err := os.ReadFile(c.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"version":"1","deliveryID":"d1","channel":"demo-console","kind":"firing","status":"firing",` +
		`"alert":{"name":"CertopsCertificateExpiringSoon","severity":"warning","subject":"shop","summary":"Certificate shop expires soon","description":"","since":"2026-12-05T00:00:00Z"},"at":"2026-12-05T00:00:00Z"}`)
	post := func(sig string) int {
		req, _ := http.NewRequest(http.MethodPost, c.url, bytes.NewReader(body))
		if sig != "" {
			req.Header.Set(notify.SignatureHeader, sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("sha256=00"); code != http.StatusBadRequest {
		t.Errorf("a badly signed notification: %d, want 400", code)
	}
	if code := post(webhook.Sign([]byte(strings.TrimSpace(string(key))), body)); code != http.StatusNoContent {
		t.Fatalf("a signed notification: %d, want 204", code)
	}
	want := "certops demo: alert firing: CertopsCertificateExpiringSoon (warning) shop: Certificate shop expires soon\n"
	if out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	if !strings.Contains(c.channelYAML(), "url: "+c.url) {
		t.Errorf("the channel does not post to the receiver:\n%s", c.channelYAML())
	}
}

// server is a `certops serve` running in the background.
type server struct {
	url  string          // http://127.0.0.1:PORT, or https:// with TLS
	logs *testkit.Buffer // its JSON log (stderr)
	done <-chan int      // its exit code
}

// startServe runs `certops serve` in the background, listening on a port
// the system picks, and waits until it logs the address it listens on.
func startServe(t *testing.T, ctx context.Context, env map[string]string) *server {
	t.Helper()
	var out testkit.Buffer
	s := &server{logs: &testkit.Buffer{}}
	done := make(chan int, 1)
	s.done = done
	go func() {
		done <- run(ctx, []string{"certops", "serve", "--listen", "127.0.0.1:0", "--log-format", "json"},
			func(k string) string { return env[k] }, &out, s.logs)
	}()
	testkit.WaitFor(t, waitTimeout, "serve to log its address", func() bool {
		select {
		case code := <-done:
			t.Fatalf("serve exited early with %d:\n%s", code, s.logs.String())
		default:
		}
		s.url = servingURL(s.logs.String())
		return s.url != ""
	})
	return s
}

// servingURL is the base URL of serve's "serving" log line (http:// or,
// when it says tls, https://), or "".
func servingURL(jsonLog string) string {
	for line := range strings.Lines(jsonLog) {
		var rec struct {
			Msg, Addr string
			TLS       bool
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" && rec.Addr != "" {
			if rec.TLS {
				return "https://" + rec.Addr
			}
			return "http://" + rec.Addr
		}
	}
	return ""
}

func TestServeMigrationsViaHook(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.yaml": issuerDoc})
	db := pgtest.EmptyDB(t)
	srv := startServe(t, ctx, map[string]string{
		"CERTOPS_DATABASE_URL": db, "CERTOPS_REPO": dir, "CERTOPS_MIGRATIONS_VIA_HOOK": "true"})
	url := srv.url
	var body struct{ Error struct{ Code string } }
	if code := getJSON(t, url+"/readyz", &body); code != http.StatusServiceUnavailable || body.Error.Code != "unavailable" {
		t.Fatalf("readyz before migration: got %d %+v, want 503", code, body)
	}
	// serve checks the schema version every 2s. Two checks that found it
	// behind show it kept waiting instead of migrating.
	testkit.WaitFor(t, waitTimeout, "serve to find the schema behind twice", func() bool {
		return strings.Count(srv.logs.String(), "database schema is behind") >= 2
	})
	if code := getJSON(t, url+"/readyz", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz while waiting for the hook: got %d, want 503", code)
	}
	if ok, have, _, err := storekit.OpenURL(t, db).SchemaCurrent(ctx); err != nil || ok || have != 0 {
		t.Fatalf("schema while waiting for the hook: current %v, version %d (%v); want none: serve migrated by itself with CERTOPS_MIGRATIONS_VIA_HOOK=true", ok, have, err)
	}
	if code, stdout, stderr := cli(ctx, map[string]string{"CERTOPS_DATABASE_URL": db}, "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, stdout, stderr)
	}
	waitStatus(t, url, "the revision to be applied after the hook migrated", appliedPrefix("dir@sha1:"))
	// Ready also waits for the agent API's first load of the desired state,
	// which runs beside the reconciler.
	testkit.WaitFor(t, waitTimeout, "readyz to answer 200 after the migration", func() bool {
		return getJSON(t, url+"/readyz", nil) == http.StatusOK
	})
	cancel()
	<-srv.done
}

// TestServeWatchesPlainDirectory edits a file of a plain (non-git) directory
// and expects the change applied through the file watcher, with polling
// practically off.
func TestServeWatchesPlainDirectory(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.yaml": issuerDoc, "certs/shop.yaml": certDoc("shop", "shop.example.com")})
	srv := startServe(t, ctx, map[string]string{
		"CERTOPS_DATABASE_URL": pgtest.DB(t), "CERTOPS_REPO": dir, "CERTOPS_INTERVAL": "1h"})
	url := srv.url
	first := waitStatus(t, url, "the directory to be applied", appliedPrefix("dir@sha1:")).LastAppliedRevision
	writeFiles(t, dir, map[string]string{"certs/shop.yaml": certDoc("shop", "www.example.com")})
	start := time.Now()
	waitStatus(t, url, "the edit to be applied", func(st apiStatus) bool { return st.LastAppliedRevision != first })
	t.Logf("edit applied after %v", time.Since(start).Round(10*time.Millisecond))
	var cert struct{ Spec struct{ CommonName string } }
	getJSON(t, url+"/api/v1/certificates/shop", &cert)
	if cert.Spec.CommonName != "www.example.com" {
		t.Errorf("commonName after the edit: got %q", cert.Spec.CommonName)
	}
	cancel()
	<-srv.done
}

// TestWebhookToFollowerWakesLeader runs two replicas on one database. A
// signed webhook sent to the replica that does not hold the lease still
// gets the push applied, with polling practically off.
func TestWebhookToFollowerWakesLeader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	repo := newConfigRepo(t, map[string]string{"base.yaml": issuerDoc})
	env := repo.serveEnv()
	a, b := startServe(t, ctx, env), startServe(t, ctx, env)
	urlA, urlB := a.url, b.url
	isLeader := func(url string) bool { return metric(t, url, "certops_leader") == 1 }
	var follower string
	testkit.WaitFor(t, waitTimeout, "one leader", func() bool {
		a, b := isLeader(urlA), isLeader(urlB)
		switch {
		case a && !b:
			follower = urlB
		case b && !a:
			follower = urlA
		}
		return follower != ""
	})
	waitStatus(t, follower, "the first revision", appliedPrefix("main@sha1:"))

	second := repo.push("second", map[string]string{"certs.yaml": certDoc("shop", "shop.example.com")})
	if code := postHook(t, follower, `{"ref":"refs/heads/main"}`, true); code != http.StatusAccepted {
		t.Fatalf("webhook to the follower: got %d, want 202", code)
	}
	waitStatus(t, follower, "the push to be applied after a webhook to the follower", func(st apiStatus) bool {
		return st.LastAppliedRevision == "main@sha1:"+second
	})
	cancel()
	<-a.done
	<-b.done
}

// Without --cache-dir the clone is in a temporary directory, on disk, and
// removed when serve exits; --debug-listen serves the runtime profiles.
func TestServeClonesToATemporaryDirectory(t *testing.T) {
	repo := newConfigRepo(t, map[string]string{"base.yaml": issuerDoc})
	env := repo.serveEnv() // the test database first: pgtest's cluster lives under the usual TMPDIR
	env["CERTOPS_DEBUG_LISTEN"] = "127.0.0.1:0"
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := startServe(t, ctx, env)
	waitStatus(t, srv.url, "the first revision to be applied", appliedPrefix("main@sha1:"))
	clones, _ := filepath.Glob(filepath.Join(tmp, "certops-clone-*", "objects"))
	if len(clones) != 1 {
		t.Errorf("bare clones in TMPDIR while serving: %v, want one", clones)
	}
	var profiles string
	for line := range strings.Lines(srv.logs.String()) {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving profiles" {
			profiles = "http://" + rec.Addr + "/debug/pprof/heap"
		}
	}
	if resp, err := http.Get(profiles); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET %q: %v %v, want a heap profile", profiles, resp, err)
	} else {
		resp.Body.Close()
	}
	cancel()
	if code := <-srv.done; code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, srv.logs.String())
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "certops-clone-*")); len(left) != 0 {
		t.Errorf("left after exit: %v", left)
	}
}
