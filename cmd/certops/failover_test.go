package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/gitsource"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
)

// runAsCertops makes TestMain run certops instead of the tests.
const runAsCertops = "CERTOPS_TEST_RUN_AS_CERTOPS"

// replica is `certops serve` as a real process.
type replica struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	url  string // http://ADDR

	mu  sync.Mutex
	log []string
}

// startReplica runs `certops serve` with env and args as a process named
// name (its database sessions carry it as application_name).
func startReplica(t *testing.T, name string, env map[string]string, args ...string) *replica {
	t.Helper()
	u, err := url.Parse(env["CERTOPS_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), runAsCertops+"=1", "CERTOPS_DATABASE_URL="+u.String())
	for k, v := range env {
		if k != "CERTOPS_DATABASE_URL" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{t: t, name: name, cmd: cmd}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			r.log = append(r.log, line)
			r.mu.Unlock()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" && rec.Addr != "" {
				select {
				case addr <- rec.Addr:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, r.logText())
		}
	})
	select {
	case a := <-addr:
		r.url = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start serving: %s", name, r.logText())
	}
	return r
}

func (r *replica) logText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.log, "\n")
}

// logged reports whether a log line of r contains s.
func (r *replica) logged(s string) bool { return strings.Contains(r.logText(), s) }

// leads reports whether r says it holds the lease (certops_leader 1). A
// frozen replica does not answer: false (unlike metric, which needs an
// answer).
func (r *replica) leads() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(r.url + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(body), "\ncertops_leader 1\n")
}

func (r *replica) signal(sig syscall.Signal) {
	r.t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatal(err)
	}
}

// TestFailoverFencesTheFrozenLeader is the split brain of a frozen leader
// whose connection is cut, on real processes: A leads and is frozen
// (SIGSTOP) with its sessions intact; B takes the lease once it expires and
// applies X; A's sessions are terminated; B applies Y, which reverts X's
// change; A resumes (SIGCONT) with caches from before X. A must write
// nothing: the database equals a full load of the revision B applied last,
// and every revision is recorded once.
func TestFailoverFencesTheFrozenLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real replicas")
	}
	repo := newConfigRepo(t, map[string]string{"base.yaml": issuerDoc, "certs.yaml": certDoc("shop", "shop.example.com")})
	env := repo.serveEnv()
	args := []string{"--interval", "300ms", "--lease-ttl", "2s"}
	a := startReplica(t, "replica-a", env, args...)
	testkit.WaitFor(t, waitTimeout, "replica A to lead", a.leads)
	b := startReplica(t, "replica-b", env, args...)
	base := gitCLI(t, repo.work, "rev-parse", "HEAD")
	waitStatus(t, b.url, "the base revision", func(st apiStatus) bool { return st.LastAppliedRevision == "main@sha1:"+base })

	// A freezes with its database sessions intact: B is the leader within
	// the lease's TTL and a retry, and applies X.
	a.signal(syscall.SIGSTOP)
	frozenAt := time.Now()
	testkit.WaitFor(t, waitTimeout, "replica B to take over from the frozen leader", b.leads)
	if took := time.Since(frozenAt); took > 15*time.Second {
		t.Errorf("takeover took %s, want at most 15s", took)
	}
	x := repo.push("X: shop moves", map[string]string{"certs.yaml": certDoc("shop", "shop-x.example.com")})
	waitStatus(t, b.url, "X applied by B", func(st apiStatus) bool { return st.LastAppliedRevision == "main@sha1:"+x })

	// A's sessions are cut (a failover or network blip), Y reverts X, and A
	// resumes with its caches of the base revision.
	dbURL := env["CERTOPS_DATABASE_URL"]
	admin, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var cut int
	if err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'replica-a'`).Scan(&cut); err != nil {
		t.Fatalf("terminate A's sessions: %v", err)
	}
	t.Logf("terminated %d sessions of the frozen replica", cut) // its pool may hold none at this moment
	y := repo.push("Y: revert X", map[string]string{"certs.yaml": certDoc("shop", "shop.example.com"),
		"more.yaml": certDoc("blog", "blog.example.com")})
	a.signal(syscall.SIGCONT)
	testkit.WaitFor(t, waitTimeout, "replica A to find it lost the lease", func() bool {
		return a.logged("reconcile lease taken by another replica") || a.logged("lost reconcile lease")
	})
	waitStatus(t, b.url, "Y applied by B", func(st apiStatus) bool { return st.LastAppliedRevision == "main@sha1:"+y })
	testkit.WaitFor(t, waitTimeout, "replica A to say it no longer leads", func() bool {
		return metric(t, a.url, "certops_leader") == 0
	})

	st, err := store.Open(context.Background(), dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	status, err := st.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if status.LastAppliedRevision != "main@sha1:"+y {
		t.Fatalf("lastAppliedRevision %s, want Y (%s)", status.LastAppliedRevision, y)
	}
	assertFullLoad(t, st, repo.bare, y)
	revs, err := st.ListRevisions(context.Background(), 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range revs {
		seen[r.Revision.Commit+" "+string(r.Outcome)]++
	}
	for key, n := range seen {
		if n != 1 {
			t.Errorf("revision %s recorded %d times, want once", key, n)
		}
	}
	for _, c := range []string{base, x, y} {
		if seen[c+" applied"] != 1 {
			t.Errorf("revision %s: applied %d times, want once (history %v)", c, seen[c+" applied"], seen)
		}
	}
}

// assertFullLoad checks that the objects stored are exactly a full load of
// commit, by their stored hashes and by their content.
func assertFullLoad(t *testing.T, st *store.Store, bare, commit string) {
	t.Helper()
	repo, err := gitsource.OpenLocal(bare)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	fsys, err := repo.FS(commit)
	if err != nil {
		t.Fatal(err)
	}
	var l reconcile.Loader
	desired, errs := l.Load(fsys, commit, nil)
	if len(errs) > 0 {
		t.Fatalf("load %s: %v", commit, errs)
	}
	want := map[spec.Key]string{}
	for k, o := range desired.Objects {
		want[k] = o.Hash()
	}
	stored, err := st.StoredHashes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	content, drifted, err := st.ContentHashes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, stored); diff != "" {
		t.Errorf("stored hashes are not a full load of %s (-want +got):\n%s", commit, diff)
	}
	if diff := cmp.Diff(want, content); diff != "" || drifted != 0 {
		t.Errorf("stored content is not a full load of %s (%d drifted) (-want +got):\n%s", commit, drifted, diff)
	}
}

// TestServeThroughGitOutage: a replica restarted while the git remote is
// unreachable (even with a warm --cache-dir) serves the read API and the
// agent API from Postgres, reports FetchFailed, and recovers when the remote
// is back.
func TestServeThroughGitOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real replicas")
	}
	repo := newConfigRepo(t, map[string]string{"base.yaml": issuerDoc, "certs.yaml": certDoc("shop", "shop.example.com")})
	env := repo.serveEnv()
	args := []string{"--interval", "300ms", "--lease-ttl", "2s", "--cache-dir", t.TempDir()}
	base := gitCLI(t, repo.work, "rev-parse", "HEAD")
	first := startReplica(t, "first", env, args...)
	waitStatus(t, first.url, "the base revision", func(st apiStatus) bool { return st.LastAppliedRevision == "main@sha1:"+base })
	first.signal(syscall.SIGTERM)
	if err := first.cmd.Wait(); err != nil {
		t.Fatalf("first replica: %v", err)
	}

	hidden := repo.bare + ".away"
	if err := os.Rename(repo.bare, hidden); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, "restarted", env, args...)
	testkit.WaitFor(t, waitTimeout, "/readyz while git is unreachable", func() bool {
		resp, err := http.Get(r.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	st := waitStatus(t, r.url, "FetchFailed", func(st apiStatus) bool {
		for _, c := range st.Conditions {
			if c.Type == "Ready" && c.Status == "False" && c.Reason == "FetchFailed" {
				return true
			}
		}
		return false
	})
	if st.LastAppliedRevision != "main@sha1:"+base {
		t.Errorf("lastAppliedRevision during the outage: %q, want the base", st.LastAppliedRevision)
	}
	var certs struct {
		Items []struct{ Name string } `json:"items"`
	}
	getJSON(t, r.url+"/api/v1/certificates", &certs)
	if len(certs.Items) != 1 || certs.Items[0].Name != "shop" {
		t.Errorf("certificates during the outage: %+v, want shop", certs.Items)
	}
	req, _ := http.NewRequest(http.MethodGet, r.url+"/agent/v1/assignments", nil)
	req.Header.Set("Authorization", "Bearer test") // web-01's token: sha256("test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"name":"shop"`) {
		t.Errorf("agent assignments during the outage: %d %s, want 200 with shop", resp.StatusCode, body)
	}

	if err := os.Rename(hidden, repo.bare); err != nil {
		t.Fatal(err)
	}
	next := repo.push("after the outage", map[string]string{"more.yaml": certDoc("blog", "blog.example.com")})
	waitStatus(t, r.url, "the push after the outage", func(st apiStatus) bool { return st.LastAppliedRevision == "main@sha1:"+next })
}
