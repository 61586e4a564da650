package agentapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/certops/certops/agentapi"
	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/httpapi"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is an agent API over a real database, a real local CA and a real
// issuer registry, served on 127.0.0.1.
type env struct {
	t       testing.TB
	st      *store.Store
	url     string
	api     *api
	issuers *issuer.Registry // synced by the snapshot with the applied Issuers
	http    *httptest.Server
	clock   *testkit.Clock
	reg     *prometheus.Registry
	caDir   string
	caCert  []byte
	desired map[spec.Key]*spec.Object
	commits int
}

type envOptions struct {
	perCertificate bool
	cfg            agentapi.Config
	caValidity     time.Duration // of the local CA; 0 is pki's default
}

func newEnv(t testing.TB, opts envOptions, objs ...*spec.Object) *env {
	t.Helper()
	ctx := context.Background()
	url := pgtest.DB(t)
	st, err := store.Open(ctx, url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e := &env{t: t, st: st, url: url, clock: testkit.NewClock(time.Now().UTC().Truncate(time.Second)),
		reg: prometheus.NewRegistry(), caDir: t.TempDir(), desired: map[spec.Key]*spec.Object{}}
	e.caCert, _ = writeCA(t, e.caDir, opts.caValidity)
	e.apply(objs...)
	e.issuers = issuer.NewRegistry(nil)
	cfg := opts.cfg
	cfg.Now = e.clock.Now
	e.api = newAPI(apiDeps{store: st, signers: e.issuers, issuers: e.issuers, reg: e.reg, perCertificate: opts.perCertificate},
		cfg, testLogger(t))
	e.refresh()
	e.http = httptest.NewServer(e.api.handler)
	t.Cleanup(e.http.Close)
	return e
}

// writeCA creates a CA in dir (ca.crt, ca.key) with pki.NewCA, valid for
// validity (0: pki's default).
func writeCA(t testing.TB, dir string, validity time.Duration) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{Validity: validity})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// apply makes objs (added to or replacing earlier ones) the desired state
// and applies it as a new revision.
func (e *env) apply(objs ...*spec.Object) { e.applyState(objs, nil) }

// remove deletes objects from the desired state and applies it.
func (e *env) remove(keys ...spec.Key) { e.applyState(nil, keys) }

func (e *env) applyState(objs []*spec.Object, remove []spec.Key) {
	e.t.Helper()
	for _, o := range objs {
		if o.Kind == spec.KindIssuer && o.Issuer().LocalCA != nil && o.Issuer().LocalCA.CertFile == "" {
			o.Issuer().LocalCA.CertFile = filepath.Join(e.caDir, "ca.crt")
			o.Issuer().LocalCA.KeyFile = filepath.Join(e.caDir, "ca.key")
		}
		e.desired[o.Key()] = o
	}
	for _, k := range remove {
		delete(e.desired, k)
	}
	ctx := context.Background()
	stored, err := e.st.StoredHashes(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	e.commits++
	rev := state.Revision{Ref: "main", Commit: strings.Repeat(string(rune('0'+e.commits%10)), 40), Time: time.Now()}
	lease, ok, err := e.st.TryLeader(ctx) // writes of desired state are the leader's
	if err != nil || !ok {
		e.t.Fatalf("TryLeader = %v, %v", ok, err)
	}
	defer lease.Release()
	if _, err := e.st.Apply(ctx, lease.Fence(), rev, reconcile.Compute(e.desired, stored), state.Status{LastAppliedRevision: rev.String()}); err != nil {
		e.t.Fatal(err)
	}
}

// api is the agent API's parts, wired as serve wires them.
type api struct {
	snapshot *agentapi.Snapshot
	presence *agentapi.Presence
	orders   *agentapi.Orders
	events   *agentapi.Announcer
	handler  *agentapi.Handler
	gauges   *agentapi.StateCollector // registered when apiDeps.reg is set
}

type apiDeps struct {
	store          *store.Store
	signers        agentapi.Signers
	issuers        agentapi.IssuerSync // may be nil
	events         agentapi.EventSink  // may be nil
	reg            prometheus.Registerer
	perCertificate bool
}

func newAPI(d apiDeps, cfg agentapi.Config, logger *slog.Logger) *api {
	metrics := agentapi.NewMetrics(d.reg)
	a := &api{snapshot: agentapi.NewSnapshot(d.store, d.issuers, cfg, logger),
		presence: agentapi.NewPresence(d.store, cfg, logger), events: agentapi.NewAnnouncer(d.events, logger)}
	if d.reg != nil {
		a.gauges = agentapi.NewStateCollector(a.snapshot, a.presence, d.perCertificate)
		d.reg.MustRegister(a.gauges)
	}
	ledger := agentapi.NewLedger(d.store, a.snapshot, a.events, metrics, cfg, logger)
	a.orders = agentapi.NewOrders(d.store, a.snapshot, ledger, metrics, cfg, logger)
	issuance := agentapi.NewIssuance(a.snapshot, d.signers, a.orders, ledger, metrics, cfg, logger)
	a.handler = agentapi.NewHandler(agentapi.Parts{Snapshot: a.snapshot, Presence: a.presence,
		Issuance: issuance, Ledger: ledger, Orders: a.orders}, logger)
	return a
}

// Run runs the parts' loops until ctx ends and they all stopped.
func (a *api) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.snapshot.Run(ctx) })
	wg.Go(func() { _ = a.presence.Run(ctx) })
	wg.Go(func() { _ = a.orders.Run(ctx) })
	wg.Go(func() { _ = a.events.Run(ctx) })
	wg.Wait()
}

func (e *env) refresh() {
	e.t.Helper()
	if err := e.api.snapshot.Refresh(context.Background()); err != nil {
		e.t.Fatalf("Refresh: %v", err)
	}
}

func tokenOf(agent string) string { return "token-of-" + agent }

func agentObj(name string, labels map[string]string) *spec.Object {
	sum := sha256.Sum256([]byte(tokenOf(name)))
	return &spec.Object{Kind: spec.KindAgent, Name: name, Labels: labels,
		Spec: &spec.AgentSpec{TokenSHA256: hex.EncodeToString(sum[:])}}
}

func issuerObj(name string) *spec.Object {
	return &spec.Object{Kind: spec.KindIssuer, Name: name, Spec: &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{}}}
}

// certObj is a normalized certificate spec (as the loader stores it)
// deployed to agents by name and/or selector.
func certObj(name string, agents []string, selector map[string]string) *spec.Object {
	c := &spec.CertificateSpec{
		IssuerRef: "internal-ca", CommonName: name + ".example.com",
		DNSNames:   []string{name + ".example.com", "www." + name + ".example.com"},
		PrivateKey: spec.PrivateKey{Algorithm: "ECDSA", Size: 256, RotationPolicy: "Always"},
		Duration:   "2160h",
		Deploy: &spec.Deployment{Agents: agents,
			Files:  spec.DeployFiles{Cert: "/etc/ssl/" + name + "/cert.pem", Key: "/etc/ssl/" + name + "/key.pem"},
			Reload: []string{"nginx", "-s", "reload"}},
	}
	if selector != nil {
		c.Deploy.AgentSelector = &spec.LabelSelector{MatchLabels: selector}
	}
	return &spec.Object{Kind: spec.KindCertificate, Name: name, Spec: c}
}

// fleetObjs: issuer internal-ca; agents web-01, web-02 (role web) and
// db-01; certificates shop (web-01), pool (role=web) and db (db-01).
func fleetObjs() []*spec.Object {
	return []*spec.Object{
		issuerObj("internal-ca"),
		agentObj("web-01", map[string]string{"role": "web"}),
		agentObj("web-02", map[string]string{"role": "web"}),
		agentObj("db-01", map[string]string{"role": "db"}),
		certObj("shop", []string{"web-01"}, nil),
		certObj("pool", nil, map[string]string{"role": "web"}),
		certObj("db", []string{"db-01"}, nil),
	}
}

// response is an HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) errorBody(t testing.TB) agentproto.ErrorBody {
	t.Helper()
	var b agentproto.ErrorBody
	r.decode(t, &b)
	if b.Error.Code == "" {
		t.Fatalf("error response without a code: %s", r.body)
	}
	return b
}

// do sends a request as the agent holding token ("" for none); body is
// sent as is when it is []byte, else as JSON.
func (e *env) do(method, path, token string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// assignments polls as agent and returns the assignments (200 expected).
func (e *env) assignments(agent string) (agentproto.Assignments, string) {
	e.t.Helper()
	r := e.do("GET", agentproto.PathAssignments, tokenOf(agent), nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("poll as %s: %d %s", agent, r.status, r.body)
	}
	var a agentproto.Assignments
	r.decode(e.t, &a)
	return a, r.header.Get("ETag")
}

func (e *env) assignment(agent, cert string) agentproto.Assignment {
	e.t.Helper()
	a, _ := e.assignments(agent)
	for _, c := range a.Certificates {
		if c.Name == cert {
			return c
		}
	}
	e.t.Fatalf("%s is not assigned %s: %+v", agent, cert, a)
	return agentproto.Assignment{}
}

func issuePath(cert string) string {
	return strings.Replace(agentproto.PathIssue, "{name}", cert, 1)
}

// csrFor makes a key as the assignment asks and a CSR for it.
func csrFor(t testing.TB, a agentproto.Assignment) (crypto.Signer, string) {
	t.Helper()
	key, err := pki.GenerateKey(a.Key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, a)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(csr)
}

// issue asks for the certificate as agent with a matching CSR.
func (e *env) issue(agent, cert string) response {
	e.t.Helper()
	a := e.assignment(agent, cert)
	_, csr := csrFor(e.t, a)
	return e.do("POST", issuePath(cert), tokenOf(agent), agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: csr})
}

// scrape returns the /metrics page as serve serves it: the registry's
// families, then the collector's per-certificate text (httpapi).
func (e *env) scrape() []byte {
	e.t.Helper()
	h := httpapi.NewHandler(nil, httpapi.Config{Gatherer: e.reg, MetricsText: e.api.gauges}, testLogger(e.t))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		e.t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

// families parses a /metrics page with expfmt's text parser.
func parseMetrics(t testing.TB, page []byte) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, page)
	}
	return mfs
}

// issued asks as agent for cert, which must be signed at once (200), and
// returns the answer and its leaf.
func (e *env) issued(agent, cert string) (agentproto.Issued, *x509.Certificate) {
	e.t.Helper()
	r := e.issue(agent, cert)
	if r.status != http.StatusOK {
		e.t.Fatalf("issue %s as %s: %d %s", cert, agent, r.status, r.body)
	}
	var issued agentproto.Issued
	r.decode(e.t, &issued)
	return issued, parseLeaf(e.t, issued.CertPEM)
}

// metric returns the value of the series name{labels} on /metrics, and
// whether it exists.
func (e *env) metric(name string, labels map[string]string) (float64, bool) {
	e.t.Helper()
	return seriesValue(parseMetrics(e.t, e.scrape()), name, labels)
}

// seriesValue returns the value of the series name{labels} of mfs, and
// whether it exists.
func seriesValue(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	if mf := mfs[name]; mf != nil {
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// scanText returns "table.column" for every text, varchar or JSON column
// of every table in the database at url holding needle.
func scanText(t testing.TB, url, needle string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'json', 'jsonb')`)
	if err != nil {
		t.Fatal(err)
	}
	type column struct{ table, name string }
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		return c, r.Scan(&c.table, &c.name)
	})
	if err != nil || len(cols) < 10 {
		t.Fatalf("columns: %v %v", cols, err)
	}
	var hits []string
	for _, c := range cols {
		var n int
		q := fmt.Sprintf("SELECT count(*) FROM %s WHERE %s::text LIKE '%%' || $1 || '%%'",
			pgx.Identifier{c.table}.Sanitize(), pgx.Identifier{c.name}.Sanitize())
		if err := conn.QueryRow(ctx, q, needle).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			hits = append(hits, c.table+"."+c.name)
		}
	}
	return hits
}

// testLogger logs warnings and errors to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newBenchEnv is newEnv for benchmarks, quiet.
func newBenchEnv(b *testing.B, objs []*spec.Object) *env {
	b.Helper()
	return newEnv(b, envOptions{}, objs...)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
