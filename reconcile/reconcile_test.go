package reconcile_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/fleet"
	"github.com/certops/certops/gitsource"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
	"github.com/certops/certops/testkit/storekit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const issuerYAML = `apiVersion: certops/v1
kind: Issuer
metadata: {name: internal-ca}
spec:
  localCA: {certFile: /etc/certops/ca/tls.crt, keyFile: /etc/certops/ca/tls.key}
`

func agentYAML(name string) string {
	return fmt.Sprintf(`---
apiVersion: certops/v1
kind: Agent
metadata: {name: %s, labels: {role: web}}
spec:
  tokenSHA256: %s
`, name, spec.HashBytes([]byte("token-"+name))) // one token per agent
}

func certYAML(name, host string) string {
	return fmt.Sprintf(`---
apiVersion: certops/v1
kind: Certificate
metadata: {name: %s}
spec:
  issuerRef: internal-ca
  commonName: %s
  dnsNames: [%s]
  deploy:
    agents: [web-01]
    files: {cert: /etc/ssl/%s/cert.pem, key: /etc/ssl/%s/key.pem}
`, name, host, host, name, name)
}

// configRepo is a real git repository in a temp dir that tests commit to.
type configRepo struct {
	t   *testing.T
	dir string
}

func newConfigRepo(t *testing.T, files map[string]string) *configRepo {
	t.Helper()
	r := &configRepo{t: t, dir: t.TempDir()}
	r.write(files)
	if _, err := fleet.InitRepo(context.Background(), r.dir); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *configRepo) write(files map[string]string) {
	r.t.Helper()
	if err := fleet.WriteFiles(r.dir, files); err != nil {
		r.t.Fatal(err)
	}
}

func (r *configRepo) commit(files map[string]string, msg string) string {
	r.t.Helper()
	r.write(files)
	c, err := fleet.Commit(context.Background(), r.dir, msg)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// harness is a reconciler over a real git repository and a real database.
type harness struct {
	t     *testing.T
	repo  *configRepo
	store *store.Store
	rec   *reconcile.Reconciler
	reg   *prometheus.Registry
	clock *testkit.Clock // the reconciler's
	dbURL string
}

func newHarness(t *testing.T, files map[string]string) *harness {
	t.Helper()
	ctx := context.Background()
	h := &harness{t: t, repo: newConfigRepo(t, files), reg: prometheus.NewRegistry(), clock: testkit.NewClock(time.Unix(1_800_000_000, 0))}
	h.dbURL = pgtest.DB(t)
	st := storekit.OpenURL(t, h.dbURL)
	h.store = st
	repo, err := gitsource.Open(ctx, gitsource.Config{URL: h.repo.dir, Ref: "main"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h.rec = reconcile.New(gitsource.Source{Repo: repo}, st, reconcile.ElectorOf(st.TryLeader), reconcile.NewMetrics(h.reg),
		slog.New(slog.DiscardHandler), reconcile.Options{Now: h.clock.Now, FullCompareInterval: time.Hour})
	return h
}

func (h *harness) once() state.Outcome {
	h.t.Helper()
	return h.rec.ReconcileOnce(context.Background(), lead(h.t, h.store))
}

// lead takes the reconcile lease for st (once per store, released when the
// test ends): the passes of a test run as its holder.
func lead(t *testing.T, st *store.Store) *store.Lease {
	t.Helper()
	leasesMu.Lock()
	defer leasesMu.Unlock()
	if l, ok := leases[st]; ok {
		return l
	}
	l, ok, err := st.TryLeader(context.Background())
	if err != nil || !ok {
		t.Fatalf("TryLeader = %v, %v; want leadership", ok, err)
	}
	leases[st] = l
	t.Cleanup(func() {
		l.Release()
		leasesMu.Lock()
		delete(leases, st)
		leasesMu.Unlock()
	})
	return l
}

var (
	leasesMu sync.Mutex
	leases   = map[*store.Store]*store.Lease{}
)

// names returns "Kind/name" of every stored object, sorted.
func (h *harness) names() []string {
	h.t.Helper()
	hashes, err := h.store.StoredHashes(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for k := range hashes {
		out = append(out, k.String())
	}
	slices.Sort(out)
	return out
}

func (h *harness) status() state.Status {
	h.t.Helper()
	st, err := h.store.Status(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func (h *harness) revisionCount() int {
	h.t.Helper()
	revs, err := h.store.ListRevisions(context.Background(), 1000, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(revs)
}

func condition(st state.Status, typ state.ConditionType) state.Condition {
	c, _ := st.Condition(typ)
	return c
}

func baseFiles() map[string]string {
	return map[string]string{
		"issuers.yaml": issuerYAML,
		"agents.yaml":  agentYAML("web-01") + agentYAML("web-02"),
		"certs/a.yaml": certYAML("shop", "shop.example.com") + certYAML("blog", "blog.example.com"),
	}
}

func TestApplyInvalidRevisionThenFix(t *testing.T) {
	h := newHarness(t, baseFiles())
	first := h.once()
	if first.Result != "success" {
		t.Fatalf("first reconcile: got %s (%v %v), want success", first.Result, first.Err, first.Errors)
	}
	want := []string{"Issuer/internal-ca", "Agent/web-01", "Agent/web-02", "Certificate/blog", "Certificate/shop"}
	slices.Sort(want)
	if got := h.names(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("stored objects: got %v, want %v", got, want)
	}
	good := first.Revision.String()
	if !strings.HasPrefix(good, "main@sha1:") || len(good) != len("main@sha1:")+40 {
		t.Fatalf("revision string %q is not BRANCH@sha1:<40 hex>", good)
	}

	// A broken revision: a bad DNS name and a dangling issuerRef in one push.
	bad := h.repo.commit(map[string]string{
		"certs/a.yaml": certYAML("shop", "shop.example.com") + strings.Replace(certYAML("blog", "bad_name.example.com"), "internal-ca", "nope", 1),
		"certs/b.yaml": certYAML("new-one", "new.example.com"),
	}, "broken")
	out := h.once()
	if out.Result != "stalled" {
		t.Fatalf("broken revision: got %s, want stalled", out.Result)
	}
	if len(out.Errors) < 2 {
		t.Fatalf("broken revision: got errors %v, want both the DNS name and the issuerRef", out.Errors)
	}
	for _, e := range out.Errors {
		if e.File != "certs/a.yaml" || e.Line == 0 {
			t.Errorf("error %q: want certs/a.yaml with a line", e.Error())
		}
	}
	if got := h.names(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after the broken revision, stored objects: got %v, want %v (unchanged)", got, want)
	}
	st := h.status()
	if st.LastAppliedRevision != good {
		t.Errorf("lastAppliedRevision: got %q, want %q", st.LastAppliedRevision, good)
	}
	if st.LastAttemptedRevision != "main@sha1:"+bad {
		t.Errorf("lastAttemptedRevision: got %q, want main@sha1:%s", st.LastAttemptedRevision, bad)
	}
	if c := condition(st, "Stalled"); c.Status != "True" || c.Reason != "ValidationFailed" {
		t.Errorf("Stalled condition: got %+v, want True/ValidationFailed", c)
	}
	if c := condition(st, "Ready"); c.Status != "False" {
		t.Errorf("Ready condition: got %+v, want False", c)
	}
	if len(st.Errors) != len(out.Errors) {
		t.Errorf("status errors: got %d, want %d", len(st.Errors), len(out.Errors))
	}
	// Polling the same broken head again neither re-validates nor records anything.
	revs := h.revisionCount()
	if out := h.once(); out.Result != "stalled" {
		t.Errorf("same broken head: got %s, want stalled", out.Result)
	}
	if got := h.revisionCount(); got != revs {
		t.Errorf("same broken head recorded %d more revisions", got-revs)
	}

	// The fix is applied.
	fixed := h.repo.commit(map[string]string{
		"certs/a.yaml": certYAML("shop", "shop.example.com") + certYAML("blog", "blog2.example.com"),
	}, "fix")
	out = h.once()
	if out.Result != "success" {
		t.Fatalf("fixed revision: got %s (%v %v), want success", out.Result, out.Err, out.Errors)
	}
	counts := out.Plan.Counts()[spec.KindCertificate]
	if counts != (state.Counts{Create: 1, Update: 1}) {
		t.Errorf("fixed revision certificate counts: got %+v, want 1 create, 1 update", counts)
	}
	st = h.status()
	if st.LastAppliedRevision != "main@sha1:"+fixed || st.LastAttemptedRevision != st.LastAppliedRevision {
		t.Errorf("after fix: applied %q attempted %q, want both main@sha1:%s", st.LastAppliedRevision, st.LastAttemptedRevision, fixed)
	}
	if c := condition(st, "Ready"); c.Status != "True" {
		t.Errorf("Ready after fix: got %+v, want True", c)
	}
	if c := condition(st, "Stalled"); c.Status != "False" {
		t.Errorf("Stalled after fix: got %+v, want False", c)
	}
	if len(st.Errors) != 0 {
		t.Errorf("errors after fix: got %v, want none", st.Errors)
	}
}

func TestReapplyingChangesNothing(t *testing.T) {
	h := newHarness(t, baseFiles())
	if out := h.once(); out.Result != "success" {
		t.Fatalf("first reconcile: %s %v %v", out.Result, out.Err, out.Errors)
	}
	before, _, err := h.store.ListObjects(context.Background(), store.ObjectQuery{Kind: spec.KindCertificate, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	revs := h.revisionCount()
	for i := range 3 {
		if out := h.once(); out.Result != "unchanged" {
			t.Fatalf("poll %d: got %s, want unchanged", i, out.Result)
		}
	}
	// A fresh reconciler (a restart, or a new leader) re-plans from the store: still nothing to do.
	h2 := &harness{t: t, repo: h.repo, store: h.store, reg: prometheus.NewRegistry(), clock: h.clock}
	repo, err := gitsource.Open(context.Background(), gitsource.Config{URL: h.repo.dir, Ref: "main"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h2.rec = reconcile.New(gitsource.Source{Repo: repo}, h.store, reconcile.ElectorOf(h.store.TryLeader), reconcile.NewMetrics(h2.reg),
		slog.New(slog.DiscardHandler), reconcile.Options{Now: h.clock.Now})
	out := h2.once()
	if out.Result != "success" || !out.Plan.Empty() {
		t.Fatalf("restart on the same revision: got %s with %d changes, want success with none", out.Result, len(out.Plan.Changes))
	}
	after, _, err := h.store.ListObjects(context.Background(), store.ObjectQuery{Kind: spec.KindCertificate, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if before[i].Generation != after[i].Generation || !before[i].UpdatedAt.Equal(after[i].UpdatedAt) {
			t.Errorf("%s changed: generation %d→%d", before[i].Name, before[i].Generation, after[i].Generation)
		}
	}
	if got := h.revisionCount(); got != revs {
		t.Errorf("re-applying recorded %d new revisions, want 0", got-revs)
	}
}

func TestPruneGuard(t *testing.T) {
	files := baseFiles()
	var certs strings.Builder
	for i := range 12 {
		certs.WriteString(certYAML(fmt.Sprintf("c%02d", i), fmt.Sprintf("c%02d.example.com", i)))
	}
	files["certs/many.yaml"] = certs.String()
	h := newHarness(t, files)
	if out := h.once(); out.Result != "success" {
		t.Fatalf("first reconcile: %s %v %v", out.Result, out.Err, out.Errors)
	}
	before := h.names()

	// Deleting 12 of 14 certificates is refused.
	h.repo.commit(map[string]string{"certs/many.yaml": ""}, "oops")
	out := h.once()
	if out.Result != "stalled" {
		t.Fatalf("mass delete: got %s, want stalled", out.Result)
	}
	if len(out.Errors) != 1 || !strings.Contains(out.Errors[0].Message, "Certificate: 12 of 14 would be deleted") {
		t.Fatalf("mass delete errors: got %v", out.Errors)
	}
	if got := h.names(); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("prune guard let deletions through: %d objects left, want %d", len(got), len(before))
	}
	if c := condition(h.status(), "Stalled"); c.Reason != "PruneBlocked" {
		t.Errorf("Stalled reason: got %q, want PruneBlocked", c.Reason)
	}
	if got := metricValue(t, h.reg, "certops_prune_blocked_total"); got != 1 {
		t.Errorf("certops_prune_blocked_total: got %v, want 1", got)
	}

	// Allowing fewer deletions than needed still refuses; enough lets it through.
	h.repo.commit(map[string]string{reconcile.AllowPruneFile: "5\n"}, "allow 5")
	if out := h.once(); out.Result != "stalled" {
		t.Fatalf("allow 5 of 12: got %s, want stalled", out.Result)
	}
	h.repo.commit(map[string]string{reconcile.AllowPruneFile: "12\n"}, "allow 12")
	if out := h.once(); out.Result != "success" {
		t.Fatalf("allow 12: got %s (%v), want success", out.Result, out.Errors)
	}
	if got := len(h.names()); got != len(before)-12 {
		t.Errorf("after allowed prune: %d objects, want %d", got, len(before)-12)
	}
}

func TestDriftRepair(t *testing.T) {
	h := newHarness(t, baseFiles())
	if out := h.once(); out.Result != "success" {
		t.Fatalf("first reconcile: %s %v %v", out.Result, out.Err, out.Errors)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Out-of-band edits: a changed spec (hash column untouched) and a deleted row.
	if _, err := conn.Exec(ctx, `UPDATE objects SET spec = jsonb_set(spec, '{commonName}', '"evil.example.com"') WHERE kind='Certificate' AND name='shop'`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM objects WHERE kind='Agent' AND name='web-02'`); err != nil {
		t.Fatal(err)
	}
	// Before the full comparison is due, polls trust the cache.
	if out := h.once(); out.Result != "unchanged" {
		t.Fatalf("poll before full compare: got %s, want unchanged", out.Result)
	}
	h.clock.Advance(2 * time.Hour)
	out := h.once()
	if out.Result != "success" || len(out.Plan.Changes) != 2 {
		t.Fatalf("full compare: got %s with %d changes, want success with 2 repairs", out.Result, len(out.Plan.Changes))
	}
	var cn string
	if err := conn.QueryRow(ctx, `SELECT spec->>'commonName' FROM objects WHERE kind='Certificate' AND name='shop'`).Scan(&cn); err != nil {
		t.Fatal(err)
	}
	if cn != "shop.example.com" {
		t.Errorf("commonName after repair: got %q, want shop.example.com", cn)
	}
	if got := len(h.names()); got != 5 {
		t.Errorf("objects after repair: got %d, want 5", got)
	}
	if got := metricValue(t, h.reg, "certops_drift_repaired_total"); got != 2 {
		t.Errorf("certops_drift_repaired_total: got %v, want 2 (one edited row, one deleted)", got)
	}
}

func TestApplyFailureLeavesPreviousState(t *testing.T) {
	h := newHarness(t, baseFiles())
	if out := h.once(); out.Result != "success" {
		t.Fatalf("first reconcile: %s %v %v", out.Result, out.Err, out.Errors)
	}
	before := h.names()
	good := h.status().LastAppliedRevision
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// A real fault inside the transaction: inserting "boom" raises, after the
	// other rows of the same apply were already written.
	if _, err := conn.Exec(ctx, `
CREATE FUNCTION certops_test_boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.name = 'boom' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$;
CREATE TRIGGER certops_test_boom BEFORE INSERT OR UPDATE ON objects FOR EACH ROW EXECUTE FUNCTION certops_test_boom();`); err != nil {
		t.Fatal(err)
	}
	h.repo.commit(map[string]string{
		"certs/a.yaml": certYAML("shop", "shop2.example.com") + certYAML("blog", "blog.example.com") + certYAML("zzz", "z.example.com"),
		"certs/b.yaml": certYAML("boom", "boom.example.com"),
	}, "will fail")
	out := h.once()
	if out.Result != "transient" {
		t.Fatalf("faulty apply: got %s, want transient", out.Result)
	}
	if got := h.names(); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Errorf("after failed apply, objects: got %v, want %v", got, before)
	}
	var cn string
	if err := conn.QueryRow(ctx, `SELECT spec->>'commonName' FROM objects WHERE kind='Certificate' AND name='shop'`).Scan(&cn); err != nil {
		t.Fatal(err)
	}
	if cn != "shop.example.com" {
		t.Errorf("shop after failed apply: got %q, want the old shop.example.com", cn)
	}
	st := h.status()
	if st.LastAppliedRevision != good {
		t.Errorf("lastAppliedRevision after failure: got %q, want %q", st.LastAppliedRevision, good)
	}
	if c := condition(st, "Reconciling"); c.Status != "True" || c.Reason != "RetryingAfterFailure" {
		t.Errorf("Reconciling after failure: got %+v", c)
	}
	revs, err := h.store.ListRevisions(ctx, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if revs[0].Outcome != "failed" || len(revs[0].Errors) != 1 || !strings.Contains(revs[0].Errors[0].Message, "injected fault") {
		t.Errorf("newest revision record: got %+v, want outcome failed with the database error", revs[0])
	}
	if out := h.once(); out.Result != "transient" {
		t.Fatalf("retry while still faulty: got %s, want transient", out.Result)
	}
	if got, _ := h.store.ListRevisions(ctx, 10, 0); len(got) != len(revs) {
		t.Errorf("a retry of the same failing commit recorded another revision (%d → %d)", len(revs), len(got))
	}
	// Once the fault is gone the same revision applies.
	if _, err := conn.Exec(ctx, `DROP TRIGGER certops_test_boom ON objects`); err != nil {
		t.Fatal(err)
	}
	if out := h.once(); out.Result != "success" {
		t.Fatalf("retry: got %s (%v)", out.Result, out.Err)
	}
	if got := len(h.names()); got != len(before)+2 {
		t.Errorf("after retry: %d objects, want %d", got, len(before)+2)
	}
}

func TestLeaderElection(t *testing.T) {
	h := newHarness(t, baseFiles())
	ctx := context.Background()
	st2 := storekit.OpenURL(t, h.dbURL)
	repo2, err := gitsource.Open(ctx, gitsource.Config{URL: h.repo.dir, Ref: "main"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	reg1, reg2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	opts := reconcile.Options{LeaderRetry: 50 * time.Millisecond, Interval: 50 * time.Millisecond}
	el1, el2 := &countingElector{Elector: reconcile.ElectorOf(h.store.TryLeader)}, &countingElector{Elector: reconcile.ElectorOf(st2.TryLeader)}
	// Leader-only work (WhileLeading, two of them) runs on the leader
	// only, and ends with its term.
	var leading1, leading2, terms1, terms2 atomic.Int32
	opts1, opts2 := opts, opts
	opts1.WhileLeading = []func(context.Context){whileLeading(&leading1, &terms1), whileLeading(&leading1, &terms1)}
	opts2.WhileLeading = []func(context.Context){whileLeading(&leading2, &terms2), whileLeading(&leading2, &terms2)}
	rec1 := reconcile.New(gitsource.Source{Repo: mustRepo(t, h.repo.dir)}, h.store, el1, reconcile.NewMetrics(reg1), slog.New(slog.DiscardHandler), opts1)
	rec2 := reconcile.New(gitsource.Source{Repo: repo2}, st2, el2, reconcile.NewMetrics(reg2), slog.New(slog.DiscardHandler), opts2)

	ctx1, cancel1 := context.WithCancel(ctx)
	ctx2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	done1, done2 := make(chan error, 1), make(chan error, 1)
	go func() { done1 <- rec1.Run(ctx1) }()
	go func() { done2 <- rec2.Run(ctx2) }()

	leaders := func() (float64, float64) {
		return metricValue(t, reg1, "certops_leader"), metricValue(t, reg2, "certops_leader")
	}
	testkit.WaitFor(t, 10*time.Second, "one leader", func() bool { a, b := leaders(); return a+b == 1 })
	// It stays exactly one: the follower asks for the lease every
	// LeaderRetry; after five more refusals only one lease was handed out.
	a, _ := leaders()
	follower := el2
	if a == 0 {
		follower = el1
	}
	asked := follower.tries.Load()
	testkit.WaitFor(t, 10*time.Second, "five more tries of the follower", func() bool { return follower.tries.Load() >= asked+5 })
	if wins := el1.wins.Load() + el2.wins.Load(); wins != 1 {
		t.Fatalf("leases handed out while one replica leads: %d, want 1", wins)
	}
	if a, b := leaders(); a+b != 1 {
		t.Fatalf("leaders: got %v+%v, want exactly one", a, b)
	}
	leaderWork, followerWork := &leading1, &terms2
	if a == 0 {
		leaderWork, followerWork = &leading2, &terms1
	}
	testkit.WaitFor(t, 10*time.Second, "leader-only work on the leader", func() bool { return leaderWork.Load() == 2 })
	if n := followerWork.Load(); n != 0 {
		t.Fatalf("leader-only work started %d times on the follower, want never", n)
	}
	// Stop the leader: the other one takes over, and its leader-only
	// work starts once the first one's has ended.
	if a == 1 {
		cancel1()
		<-done1
		testkit.WaitFor(t, 10*time.Second, "the second replica to lead", func() bool { _, b := leaders(); return b == 1 })
		testkit.WaitFor(t, 10*time.Second, "leader-only work on the second replica only", func() bool { return leading1.Load() == 0 && leading2.Load() == 2 })
	} else {
		cancel2()
		<-done2
		testkit.WaitFor(t, 10*time.Second, "the first replica to lead", func() bool { a, _ := leaders(); return a == 1 })
		testkit.WaitFor(t, 10*time.Second, "leader-only work on the first replica only", func() bool { return leading1.Load() == 2 && leading2.Load() == 0 })
	}
	cancel1()
	cancel2()
	if st := h.status(); !strings.HasPrefix(st.LastAppliedRevision, "main@sha1:") {
		t.Errorf("no revision applied by the leader: %+v", st)
	}
}

// whileLeading is a WhileLeading that counts the terms it started and
// whether one is running now.
func whileLeading(running, terms *atomic.Int32) func(context.Context) {
	return func(ctx context.Context) {
		terms.Add(1)
		running.Add(1)
		defer running.Add(-1)
		<-ctx.Done()
	}
}

func mustRepo(t *testing.T, dir string) *gitsource.Repo {
	t.Helper()
	repo, err := gitsource.Open(context.Background(), gitsource.Config{URL: dir, Ref: "main"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// countingElector counts how often a replica asked for the lease and how
// often it got it.
type countingElector struct {
	reconcile.Elector
	tries, wins atomic.Int32
}

func (e *countingElector) TryLeader(ctx context.Context) (reconcile.Lease, bool, error) {
	lease, ok, err := e.Elector.TryLeader(ctx)
	if err == nil {
		e.tries.Add(1)
		if ok {
			e.wins.Add(1)
		}
	}
	return lease, ok, err
}

// metricValue sums every series of the named metric in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestFetchFailureRecovers makes the repository unreachable for a while: the
// status shows the failure, and once the same head is reachable again the
// conditions are Ready again without any new commit.
func TestFetchFailureRecovers(t *testing.T) {
	h := newHarness(t, baseFiles())
	if out := h.once(); out.Result != "success" {
		t.Fatalf("first reconcile: %s %v %v", out.Result, out.Err, out.Errors)
	}
	moved := h.repo.dir + ".moved"
	if err := os.Rename(h.repo.dir, moved); err != nil {
		t.Fatal(err)
	}
	out := h.once()
	if out.Result != "transient" {
		t.Fatalf("unreachable repository: got %s, want transient", out.Result)
	}
	st := h.status()
	if c := condition(st, "Ready"); c.Status != "False" || c.Reason != "FetchFailed" {
		t.Errorf("Ready while unreachable: got %+v, want False/FetchFailed", c)
	}
	if c := condition(st, "Reconciling"); c.Status != "True" {
		t.Errorf("Reconciling while unreachable: got %+v, want True", c)
	}
	if err := os.Rename(moved, h.repo.dir); err != nil {
		t.Fatal(err)
	}
	if out := h.once(); out.Result != "unchanged" {
		t.Fatalf("reachable again: got %s, want unchanged", out.Result)
	}
	st = h.status()
	for typ, want := range map[state.ConditionType]state.ConditionStatus{"Ready": "True", "Reconciling": "False", "Stalled": "False"} {
		if c := condition(st, typ); c.Status != want {
			t.Errorf("%s after recovery: got %+v, want %s", typ, c, want)
		}
	}
}

// eventRecorder records the events a reconciler announces.
type eventRecorder struct{ events []alert.Alert }

func (e *eventRecorder) Event(_ context.Context, a alert.Alert) error {
	e.events = append(e.events, a)
	return nil
}

// TestRefusedRevisionIsAnnounced: a refused revision is announced once, with
// its errors, however often the same head is polled.
func TestRefusedRevisionIsAnnounced(t *testing.T) {
	h := newHarness(t, baseFiles())
	rec := &eventRecorder{}
	repo := mustRepo(t, h.repo.dir)
	h.rec = reconcile.New(gitsource.Source{Repo: repo}, h.store, reconcile.ElectorOf(h.store.TryLeader), reconcile.NewMetrics(prometheus.NewRegistry()),
		slog.New(slog.DiscardHandler), reconcile.Options{Now: h.clock.Now, FullCompareInterval: time.Hour, Events: rec})
	if out := h.once(); out.Result != "success" {
		t.Fatalf("first reconcile: %s", out.Result)
	}
	bad := h.repo.commit(map[string]string{"certs/a.yaml": certYAML("shop", "bad_host!")}, "broken")
	for range 3 {
		if out := h.once(); out.Result != "stalled" {
			t.Fatalf("broken revision: got %s, want stalled", out.Result)
		}
	}
	if len(rec.events) != 1 {
		t.Fatalf("events: got %d, want 1", len(rec.events))
	}
	e := rec.events[0]
	if e.Name != alert.RevisionRefused || e.Subject != bad || !strings.Contains(e.Description, "certs/a.yaml:") {
		t.Errorf("event: got %+v, want RevisionRefused for %s with FILE:LINE errors", e, bad)
	}
}

// TestRefusedHeadIsNotRevalidatedByTheDriftCheck: once the full comparison
// is due, a head already refused stays refused without being loaded,
// recorded or announced again on every poll.
func TestRefusedHeadIsNotRevalidatedByTheDriftCheck(t *testing.T) {
	h := newHarness(t, baseFiles())
	rec := &eventRecorder{}
	h.rec = reconcile.New(gitsource.Source{Repo: mustRepo(t, h.repo.dir)}, h.store, reconcile.ElectorOf(h.store.TryLeader), reconcile.NewMetrics(prometheus.NewRegistry()),
		slog.New(slog.DiscardHandler), reconcile.Options{Now: h.clock.Now, FullCompareInterval: time.Hour, Events: rec})
	if out := h.once(); out.Result != "success" {
		t.Fatalf("first reconcile: %s", out.Result)
	}
	h.repo.commit(map[string]string{"certs/a.yaml": certYAML("shop", "bad_host!")}, "broken")
	if out := h.once(); out.Result != "stalled" {
		t.Fatalf("broken revision: got %s, want stalled", out.Result)
	}
	revs := h.revisionCount()
	for range 3 {
		h.clock.Advance(2 * time.Hour) // the full comparison is due on every poll
		if out := h.once(); out.Result != "stalled" {
			t.Fatalf("broken head after the drift interval: got %s, want stalled", out.Result)
		}
	}
	if got := h.revisionCount(); got != revs {
		t.Errorf("polling the refused head recorded %d more revisions, want 0", got-revs)
	}
	if len(rec.events) != 1 {
		t.Errorf("events: got %d, want 1", len(rec.events))
	}
}

// statusFailsOnce is a store whose first Status read fails.
type statusFailsOnce struct {
	*store.Store
	failed bool
}

func (s *statusFailsOnce) Status(ctx context.Context) (state.Status, error) {
	if !s.failed {
		s.failed = true
		return state.Status{}, fmt.Errorf("injected status read failure")
	}
	return s.Store.Status(ctx)
}

// TestStatusReadFailureAtTermStart: a new term that cannot read the stored
// status neither erases it nor re-applies the applied revision; it retries.
func TestStatusReadFailureAtTermStart(t *testing.T) {
	h := newHarness(t, baseFiles())
	if out := h.once(); out.Result != "success" {
		t.Fatalf("first reconcile: %s %v %v", out.Result, out.Err, out.Errors)
	}
	before := h.status()
	revs := h.revisionCount()

	st := &statusFailsOnce{Store: h.store}
	rec := reconcile.New(gitsource.Source{Repo: mustRepo(t, h.repo.dir)}, st, reconcile.ElectorOf(h.store.TryLeader), reconcile.NewMetrics(prometheus.NewRegistry()),
		slog.New(slog.DiscardHandler), reconcile.Options{Now: h.clock.Now, FullCompareInterval: time.Hour})
	if out := rec.ReconcileOnce(context.Background(), lead(t, h.store)); out.Result != "transient" {
		t.Fatalf("status unreadable: got %s, want transient", out.Result)
	}
	after := h.status()
	if after.LastAppliedRevision != before.LastAppliedRevision || after.LastAppliedAt == nil || !after.LastAppliedAt.Equal(*before.LastAppliedAt) {
		t.Errorf("status after a failed read: got applied %q at %v, want %q at %v",
			after.LastAppliedRevision, after.LastAppliedAt, before.LastAppliedRevision, before.LastAppliedAt)
	}
	if got := h.revisionCount(); got != revs {
		t.Errorf("a failed status read recorded %d revisions, want 0", got-revs)
	}
	out := rec.ReconcileOnce(context.Background(), lead(t, h.store))
	if out.Result != "success" || !out.Plan.Empty() {
		t.Fatalf("retry: got %s with %d changes, want success with none", out.Result, len(out.Plan.Changes))
	}
	if got := h.revisionCount(); got != revs {
		t.Errorf("the retry recorded %d revisions, want 0", got-revs)
	}
}

// TestBlockedApplyIsTransient: an orphaned transaction holding the apply
// lock makes the apply wait; while it waits the status says Reconciling, and
// the lock timeout turns it into a transient ApplyFailed instead of a hang.
// Once the orphan is gone the revision applies.
func TestBlockedApplyIsTransient(t *testing.T) {
	h := newHarness(t, baseFiles())
	st, err := store.OpenWith(context.Background(), h.dbURL, store.Options{LockTimeout: 2 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	orphan, err := pgx.Connect(context.Background(), h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer orphan.Close(context.Background())
	tx, err := orphan.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), "SELECT pg_advisory_xact_lock($1)", int64(0x63657274_6f707303)); err != nil {
		t.Fatal(err)
	}
	repo := mustRepo(t, h.repo.dir)
	rec := reconcile.New(gitsource.Source{Repo: repo}, st, reconcile.ElectorOf(st.TryLeader), reconcile.NewMetrics(prometheus.NewRegistry()),
		slog.New(slog.DiscardHandler), reconcile.Options{Now: h.clock.Now})
	lease := lead(t, st)
	done := make(chan state.Outcome, 1)
	go func() { done <- rec.ReconcileOnce(context.Background(), lease) }()
	testkit.WaitFor(t, 10*time.Second, "Reconciling=True while the apply waits", func() bool {
		c := condition(h.status(), state.ConditionReconciling)
		return c.Status == state.True && c.Reason == state.ReasonProgressing
	})
	out := <-done
	if out.Result != state.ResultTransient || out.Reason != state.ReasonApplyFailed || !strings.Contains(out.Message, "lock timeout") {
		t.Fatalf("blocked apply: got %s %s %q, want transient ApplyFailed naming the lock timeout", out.Result, out.Reason, out.Message)
	}
	if c := condition(h.status(), state.ConditionReady); c.Status != state.False || c.Reason != state.ReasonApplyFailed {
		t.Errorf("Ready after the blocked apply: %+v, want False/ApplyFailed", c)
	}
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := rec.ReconcileOnce(context.Background(), lease); out.Result != state.ResultSuccess {
		t.Fatalf("after the orphan ended: got %s %v, want success", out.Result, out.Err)
	}
}
