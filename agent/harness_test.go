package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/testkit"
)

// protoServer speaks agentproto like the reconciler, signing with a real
// local CA (package pki), and records everything it receives.
type protoServer struct {
	*httptest.Server
	t        *testing.T
	ca       *pki.CA
	caPEM    string
	token    string
	clock    *testkit.Clock // shared with the agent
	lifetime time.Duration

	mu          sync.Mutex
	assignments []*agentproto.Assignment
	challenges  []agentproto.Challenge // http-01 challenges listed with the assignments
	bundles     []agentproto.Bundle    // trust bundles listed with the assignments
	ready       []string               // tokens confirmed on the challenge ready route
	bodies      []string
	requests    []string // "METHOD path -> status"
	arrivals    []arrival
	reports     []agentproto.Report
	served      []agentproto.ServedReport
	issued      []*agentproto.Issued
	heartbeats  int
	refuseCSR   bool                 // answer issue requests with 422 csr_mismatch
	issueError  map[string]errAnswer // answer issue requests for a name with this error
	reportError *errAnswer           // answer reports with this error
	down        bool                 // drop every connection
	status      int                  // answer everything with this status, not certops' (no known code)
	retryAfter  string               // with this Retry-After
}

// errAnswer is an error answer: status, code and Retry-After.
type errAnswer struct {
	status     int
	code       agentproto.Code
	retryAfter string
}

func (e errAnswer) write(w http.ResponseWriter) {
	if e.retryAfter != "" {
		w.Header().Set("Retry-After", e.retryAfter)
	}
	writeError(w, e.status, e.code, "test says so")
}

// arrival is when a request came in.
type arrival struct {
	method, path string
	at           time.Time
}

func newProtoServer(t *testing.T, clk *testkit.Clock, token string) *protoServer {
	t.Helper()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{CommonName: "test CA"})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s := &protoServer{t: t, ca: ca, caPEM: string(certPEM), token: token, clock: clk, lifetime: 90 * 24 * time.Hour}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentproto.PathAssignments, s.getAssignments)
	mux.HandleFunc("POST "+agentproto.PathHeartbeat, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.heartbeats++
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+agentproto.PathReports, s.postReport)
	mux.HandleFunc("POST "+agentproto.PathIssue, s.postIssue)
	mux.HandleFunc("POST "+agentproto.PathServed, func(w http.ResponseWriter, r *http.Request) {
		var rep agentproto.ServedReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			writeError(w, http.StatusBadRequest, agentproto.CodeInvalid, err.Error())
			return
		}
		s.mu.Lock()
		s.served = append(s.served, rep)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+agentproto.PathChallengeReady, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ready = append(s.ready, r.PathValue("token"))
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	s.Server = httptest.NewServer(s.middleware(mux)) // 127.0.0.1
	t.Cleanup(s.Close)
	return s
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *protoServer) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		s.mu.Lock()
		s.arrivals = append(s.arrivals, arrival{method: r.Method, path: r.URL.Path, at: time.Now()})
		s.bodies = append(s.bodies, string(body))
		down, status, retryAfter := s.down, s.status, s.retryAfter
		s.mu.Unlock()
		if down {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		rec := &recorder{ResponseWriter: w, status: 200}
		defer func() {
			s.mu.Lock()
			s.requests = append(s.requests, fmt.Sprintf("%s %s -> %d", r.Method, r.URL.Path, rec.status))
			s.mu.Unlock()
		}()
		switch {
		case status != 0:
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			writeError(rec, status, "forced", "test says so") // read by its status
		case r.Header.Get("Authorization") != "Bearer "+s.token:
			writeError(rec, http.StatusUnauthorized, agentproto.CodeUnauthorized, "unauthorized")
		default:
			next.ServeHTTP(rec, r)
		}
	})
}

func writeError(w http.ResponseWriter, status int, code agentproto.Code, msg string) {
	var eb agentproto.ErrorBody
	eb.Error.Code, eb.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(eb)
}

func (s *protoServer) getAssignments(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	doc := agentproto.Assignments{Agent: "web-01", Challenges: s.challenges, Bundles: s.bundles}
	for _, a := range s.assignments {
		doc.Certificates = append(doc.Certificates, *a)
	}
	b, _ := json.Marshal(doc)
	s.mu.Unlock()
	sum := sha256.Sum256(b)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (s *protoServer) postReport(w http.ResponseWriter, r *http.Request) {
	var rep agentproto.Report
	if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
		writeError(w, http.StatusBadRequest, agentproto.CodeInvalid, err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reportError != nil {
		s.reportError.write(w)
		return
	}
	s.reports = append(s.reports, rep)
	w.WriteHeader(http.StatusNoContent)
}

func (s *protoServer) postIssue(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	as := s.find(r.PathValue("name"))
	if as == nil {
		writeError(w, http.StatusNotFound, agentproto.CodeNotFound, "not assigned")
		return
	}
	var req agentproto.IssueRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, agentproto.CodeInvalid, err.Error())
		return
	}
	if req.SpecHash != as.SpecHash {
		writeError(w, http.StatusConflict, agentproto.CodeConflict, "spec changed")
		return
	}
	csr, err := pki.ParseCSR([]byte(req.CSRPEM))
	if err != nil {
		writeError(w, http.StatusBadRequest, agentproto.CodeInvalid, err.Error())
		return
	}
	cs := &spec.CertificateSpec{
		CommonName: as.CommonName, DNSNames: as.DNSNames, IPAddresses: as.IPAddresses,
		PrivateKey: spec.PrivateKey{Algorithm: as.Key.Algorithm, Size: as.Key.Size, RotationPolicy: as.Key.RotationPolicy},
		Duration:   s.lifetime.String(),
	}
	if e, ok := s.issueError[as.Name]; ok {
		e.write(w)
		return
	}
	if s.refuseCSR {
		writeError(w, http.StatusUnprocessableEntity, agentproto.CodeCSRMismatch, "test refuses every CSR")
		return
	}
	if err := pki.CheckCSR(csr, cs); err != nil {
		writeError(w, http.StatusUnprocessableEntity, agentproto.CodeCSRMismatch, err.Error())
		return
	}
	iss, err := s.ca.Sign(csr, cs, s.clock.Now())
	if err != nil {
		writeError(w, http.StatusInternalServerError, agentproto.CodeInternal, err.Error())
		return
	}
	as.Current = iss
	as.RenewAt = iss.NotBefore.Add(iss.NotAfter.Sub(iss.NotBefore) * 2 / 3)
	s.issued = append(s.issued, iss)
	json.NewEncoder(w).Encode(iss)
}

func (s *protoServer) find(name string) *agentproto.Assignment {
	for _, a := range s.assignments {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// edit changes an assignment under the lock.
func (s *protoServer) edit(name string, f func(*agentproto.Assignment)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.find(name))
}

func (s *protoServer) set(f func(*protoServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *protoServer) snapshot() (reports []agentproto.Report, issued []*agentproto.Issued, requests, bodies []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reports), slices.Clone(s.issued), slices.Clone(s.requests), slices.Clone(s.bodies)
}

// arrivalsOf returns when the requests for method and path came in, in order.
func (s *protoServer) arrivalsOf(method, path string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var at []time.Time
	for _, a := range s.arrivals {
		if a.method == method && a.path == path {
			at = append(at, a.at)
		}
	}
	return at
}

// lastServed is the last served report received.
func (s *protoServer) lastServed(t *testing.T) agentproto.ServedReport {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.served) == 0 {
		t.Fatal("no served report received")
	}
	return s.served[len(s.served)-1]
}

func (s *protoServer) lastReport(t *testing.T) agentproto.Report {
	t.Helper()
	reports, _, _, _ := s.snapshot()
	if len(reports) == 0 {
		t.Fatal("no report received")
	}
	return reports[len(reports)-1]
}

// env is one agent host under test: a server, a target directory, a
// service, reload scripts and the agent's configuration.
type env struct {
	t        *testing.T
	clock    *testkit.Clock
	srv      *protoServer
	tls      *testkit.TLSService
	dir      string // where the certificate files go
	stateDir string
	cfg      Config
	reloads  string // each successful reload script run appends a line
	files    agentproto.Files
}

const testToken = "s3cret-token"

func newEnv(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{t: t, clock: testkit.NewClock(time.Now().Truncate(time.Second))}
	e.dir = filepath.Join(root, "etc", "ssl", "shop")
	e.stateDir = filepath.Join(root, "state")
	e.reloads = filepath.Join(root, "reloads")
	tokenFile := filepath.Join(root, "token")
	writeFile(t, tokenFile, "  "+testToken+"\n", 0o600)
	e.srv = newProtoServer(t, e.clock, testToken)
	e.files = agentproto.Files{
		Cert:      filepath.Join(e.dir, "cert.pem"),
		Chain:     filepath.Join(e.dir, "chain.pem"),
		Fullchain: filepath.Join(e.dir, "fullchain.pem"),
		Key:       filepath.Join(e.dir, "key.pem"),
	}
	e.tls = testkit.StartTLSService(t, e.files.Fullchain, e.files.Key)
	e.cfg = Config{
		Server:        e.srv.URL,
		Name:          "web-01",
		TokenFile:     tokenFile,
		StateDir:      e.stateDir,
		PollInterval:  time.Minute,
		ReloadTimeout: 5 * time.Second,
		VerifyTimeout: 2 * time.Second,
		Logger:        slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version:       "test",
		Now:           e.clock.Now,
	}
	e.srv.assignments = []*agentproto.Assignment{{
		Name:       "shop",
		SpecHash:   "spec-1",
		CommonName: "shop.example.com",
		DNSNames:   []string{"shop.example.com", "www.shop.example.com"},
		Key:        agentproto.KeySpec{Algorithm: "ECDSA", Size: 256, RotationPolicy: "Always"},
		Files:      e.files,
		Reload:     []string{e.reloadScript()},
		Verify:     &agentproto.Verify{Address: e.tls.Addr, ServerName: "shop.example.com"},
	}}
	return e
}

// Flags the reload script reacts to, once each: the next reload fails, or
// hangs (with a child process, to show the whole group is killed).
const (
	failNext    = "fail-next"
	hangNext    = "hang-next"
	garbageNext = "garbage-next" // fails, printing NUL, invalid UTF-8, escapes and 8 KB
)

// reloadScript is the service's reload command. It fails or hangs once when
// the test drops the matching flag file into the env's root, and otherwise
// records the reload.
func (e *env) reloadScript() string {
	root := filepath.Dir(e.reloads)
	return e.script("reload", fmt.Sprintf(`cd %q
if [ -e %s ]; then rm %s; echo "nginx: [emerg] cannot load certificate" >&2; exit 3; fi
if [ -e %s ]; then rm %s; sleep 60 & echo $! > child.pid; wait; fi
if [ -e %s ]; then rm %s; head -c 8000 /dev/zero | tr '\000' 'x'; printf '\nnginx: bad\000byte \377\033[31m red\n'; exit 4; fi
echo reloaded >> reloads`, root, failNext, failNext, hangNext, hangNext, garbageNext, garbageNext))
}

// flag drops a flag file for the reload script.
func (e *env) flag(name string) {
	writeFile(e.t, filepath.Join(filepath.Dir(e.reloads), name), "", 0o644)
}

// script writes an executable shell script and returns its path.
func (e *env) script(name, body string) string {
	e.t.Helper()
	p := filepath.Join(e.t.TempDir(), name)
	writeFile(e.t, p, "#!/bin/sh\n"+body+"\n", 0o755)
	return p
}

func (e *env) newAgent() *Agent {
	e.t.Helper()
	a, err := New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	a.backoffBase = 10 * time.Millisecond
	a.verifyWindow = 500 * time.Millisecond
	return a
}

func (e *env) sync(a *Agent) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	if err := a.SyncOnce(ctx); err != nil {
		e.t.Fatalf("SyncOnce: %v", err)
	}
}

// fileSet is the content of every target file ("" when missing).
func (e *env) fileSet() map[string]string {
	set := map[string]string{}
	for _, p := range []string{e.files.Cert, e.files.Chain, e.files.Fullchain, e.files.Key} {
		b, _ := os.ReadFile(p)
		set[filepath.Base(p)] = string(b)
	}
	return set
}

func (e *env) reloadCount() int {
	b, _ := os.ReadFile(e.reloads)
	return strings.Count(string(b), "reloaded")
}

// dirEntries lists the target directory, to catch leftover temps and backups.
func (e *env) dirEntries() []string {
	ents, _ := os.ReadDir(e.dir)
	var names []string
	for _, d := range ents {
		names = append(names, d.Name())
	}
	return names
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
