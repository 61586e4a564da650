package retention_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/retention"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
	"github.com/certops/certops/testkit/storekit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// db is a migrated test database: the store, and a plain pool to seed and
// inspect rows with.
type db struct {
	st  *store.Store
	sql *pgxpool.Pool
}

func openDB(t testing.TB) db {
	t.Helper()
	url := pgtest.DB(t)
	st := storekit.OpenURL(t, url)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return db{st: st, sql: pool}
}

func (d db) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := d.sql.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// version inserts a certificate version whose not_after is expiresIn from
// now, and returns its id. Its serial is "s<id>".
func (d db) version(t testing.TB, certificate, agent string, expiresIn time.Duration) int64 {
	t.Helper()
	var id int64
	err := d.sql.QueryRow(context.Background(), `
		INSERT INTO certificate_versions (certificate, agent, spec_hash, serial, sha256, not_before, not_after, cert_pem, issuer)
		VALUES ($1, $2, 'h', '', '', now() - interval '90 days', now() + make_interval(secs => $3), 'PEM', 'ca')
		RETURNING id`, certificate, agent, expiresIn.Seconds()).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	d.exec(t, `UPDATE certificate_versions SET serial = 's' || id WHERE id = $1`, id)
	return id
}

// versionIDs are the ids of certificate_versions of a pair, ascending.
func (d db) versionIDs(t testing.TB, certificate, agent string) []int64 {
	t.Helper()
	return d.ids(t, `SELECT id FROM certificate_versions WHERE certificate = $1 AND agent = $2 ORDER BY id`, certificate, agent)
}

func (d db) ids(t testing.TB, sql string, args ...any) []int64 {
	t.Helper()
	rows, err := d.sql.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (d db) count(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := d.sql.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

const year = 365 * 24 * time.Hour

// versionFixture is three pairs with every reason to keep a version:
// web-01's versions e1..e9 expired, v10 valid, v11 valid and current; e1
// is installed, e2 is served; e3..e9 are in use by nothing. web-02 has no
// deployment row and four expired versions; api/web-01 two expired ones
// and its current version is expired too (its agent is offline).
type versionFixture struct {
	web01, web02, api []int64
}

func seedVersions(t *testing.T, d db) versionFixture {
	t.Helper()
	var f versionFixture
	for range 9 {
		f.web01 = append(f.web01, d.version(t, "shop", "web-01", -time.Hour))
	}
	f.web01 = append(f.web01, d.version(t, "shop", "web-01", 60*24*time.Hour), d.version(t, "shop", "web-01", 80*24*time.Hour))
	for range 4 {
		f.web02 = append(f.web02, d.version(t, "shop", "web-02", -24*time.Hour))
	}
	for range 3 {
		f.api = append(f.api, d.version(t, "api", "web-01", -time.Minute))
	}
	d.exec(t, `INSERT INTO deployments (certificate, agent, current_version, installed_serial, served_serial)
		VALUES ('shop', 'web-01', $1, $2, $3), ('api', 'web-01', $4, '', '')`,
		f.web01[10], fmt.Sprintf("s%d", f.web01[0]), fmt.Sprintf("s%d", f.web01[1]), f.api[2])
	return f
}

func TestVersionsKeptAndDeleted(t *testing.T) {
	d := openDB(t)
	f := seedVersions(t, d)
	p := retention.New(d.st, retention.Options{KeepVersions: 2, Interval: time.Hour, BatchSize: 2}, nil, slog.New(slog.DiscardHandler))
	r, err := p.PruneOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// web-01: installed e1, served e2, the newest two unused expired e8 e9,
	// valid v10, current v11. e3..e7 go.
	wantWeb01 := []int64{f.web01[0], f.web01[1], f.web01[7], f.web01[8], f.web01[9], f.web01[10]}
	if got := d.versionIDs(t, "shop", "web-01"); !slices.Equal(got, wantWeb01) {
		t.Errorf("shop/web-01 kept %v, want %v (installed, served, newest 2 expired, valid, current)", got, wantWeb01)
	}
	if got, want := d.versionIDs(t, "shop", "web-02"), f.web02[2:]; !slices.Equal(got, want) {
		t.Errorf("shop/web-02 kept %v, want the newest two %v", got, want)
	}
	// api/web-01: the expired current version, and the newest two others.
	if got, want := d.versionIDs(t, "api", "web-01"), f.api; !slices.Equal(got, want) {
		t.Errorf("api/web-01 kept %v, want all of %v (current and newest two)", got, want)
	}
	if r.Versions != 7 {
		t.Errorf("result: %d versions deleted, want 7", r.Versions)
	}

	t.Run("keep 0 keeps only the valid and the used", func(t *testing.T) {
		p := retention.New(d.st, retention.Options{KeepVersions: 0, Interval: time.Hour}, nil, slog.New(slog.DiscardHandler))
		if _, err := p.PruneOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		want := []int64{f.web01[0], f.web01[1], f.web01[9], f.web01[10]}
		if got := d.versionIDs(t, "shop", "web-01"); !slices.Equal(got, want) {
			t.Errorf("shop/web-01 kept %v, want %v", got, want)
		}
		if got := d.versionIDs(t, "shop", "web-02"); len(got) != 0 {
			t.Errorf("shop/web-02 kept %v, want none", got)
		}
		if got, want := d.versionIDs(t, "api", "web-01"), f.api[2:]; !slices.Equal(got, want) {
			t.Errorf("api/web-01 kept %v, want the current one %v", got, want)
		}
	})
}

// Every batch deletes at most the batch size, in its own transaction.
func TestVersionBatchesAreBounded(t *testing.T) {
	d := openDB(t)
	for range 25 {
		d.version(t, "shop", "web-01", -time.Hour)
	}
	for range 7 {
		d.version(t, "blog", "web-01", -time.Hour)
	}
	after, total := store.VersionCursor{}, int64(0)
	for batches := 0; ; batches++ {
		if batches > 50 {
			t.Fatal("no end after 50 batches")
		}
		b, err := d.st.PruneVersionsBatch(t.Context(), after, 1, 4)
		if err != nil {
			t.Fatal(err)
		}
		if b.Deleted > 4 {
			t.Fatalf("batch %d deleted %d rows, want at most 4", batches, b.Deleted)
		}
		total += b.Deleted
		if b.Done {
			break
		}
		after = b.Next
	}
	if total != 30 || d.count(t, `SELECT count(*) FROM certificate_versions`) != 2 {
		t.Errorf("deleted %d, left %d; want 30 deleted and the newest of each pair left", total, d.count(t, `SELECT count(*) FROM certificate_versions`))
	}
	if _, err := d.st.PruneVersionsBatch(t.Context(), store.VersionCursor{}, -1, 4); err == nil {
		t.Error("a negative keep was accepted")
	}

	// Revision actions too: a revision with 7 actions takes 4 batches of 2.
	seedRevisions(t, d)
	d.exec(t, `INSERT INTO revision_actions (revision_id, seq, action, kind, name) SELECT 1, s, 'create', 'Certificate', 'c' || s FROM generate_series(4, 7) s`)
	var sizes []int64
	for {
		n, err := d.st.PruneRevisionActions(t.Context(), []int64{1}, 2)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
		if n < 2 {
			break
		}
	}
	if !slices.Equal(sizes, []int64{2, 2, 2, 1}) {
		t.Errorf("action batches deleted %v, want [2 2 2 1]", sizes)
	}
}

// revisionFixture: ten revisions; 1..8 applied two years ago, 9 and 10
// now. The last applied one is 5 (6..10 were refused); an object was last
// written by 2. Each revision has three actions.
func seedRevisions(t *testing.T, d db) {
	t.Helper()
	for i := 1; i <= 10; i++ {
		outcome, age := "applied", 2*year
		if i > 5 {
			outcome = "invalid"
		}
		if i > 8 {
			age = 0
		}
		d.exec(t, `INSERT INTO revisions (id, commit, outcome, applied_at, action_count) VALUES ($1, $2, $3, now() - make_interval(secs => $4), 3)`,
			i, fmt.Sprintf("%040d", i), outcome, age.Seconds())
		d.exec(t, `INSERT INTO revision_actions (revision_id, seq, action, kind, name) SELECT $1, s, 'create', 'Certificate', 'c' || s FROM generate_series(1, 3) s`, i)
	}
	d.exec(t, `SELECT setval('revisions_id_seq', 10)`)
	d.exec(t, `INSERT INTO objects (kind, name, spec, hash, revision_id) VALUES ('Certificate', 'shop', '{}', 'h', 2)`)
}

func (d db) revisionIDs(t testing.TB) []int64 {
	return d.ids(t, `SELECT id FROM revisions ORDER BY id`)
}

func TestRevisionsKeptByAgeCountAndUse(t *testing.T) {
	for _, tc := range []struct {
		name  string
		age   time.Duration
		count int
		want  []int64
	}{
		// The newest three (8, 9, 10), those within a year (9, 10), the
		// last applied (5) and the one an object references (2).
		{"a year or the last three", year, 3, []int64{2, 5, 8, 9, 10}},
		// By count alone.
		{"the last six", 0, 6, []int64{2, 5, 6, 7, 8, 9, 10}},
		// By age alone.
		{"a year", year, 0, []int64{2, 5, 9, 10}},
		// Neither: still the newest, the last applied, the referenced, and
		// those younger than store.MinRevisionAge (9).
		{"nothing", 0, 0, []int64{2, 5, 9, 10}},
		{"everything", 3 * year, 0, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := openDB(t)
			seedRevisions(t, d)
			p := retention.New(d.st, retention.Options{KeepRevisionsFor: tc.age, KeepRevisions: tc.count, Interval: time.Hour, BatchSize: 2},
				nil, slog.New(slog.DiscardHandler))
			r, err := p.PruneOnce(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got := d.revisionIDs(t); !slices.Equal(got, tc.want) {
				t.Errorf("kept revisions %v, want %v", got, tc.want)
			}
			if n := d.count(t, `SELECT count(*) FROM revision_actions a WHERE NOT EXISTS (SELECT FROM revisions r WHERE r.id = a.revision_id)`); n != 0 {
				t.Errorf("%d actions outlived their revision", n)
			}
			if n := d.count(t, `SELECT count(*) FROM revision_actions`); n != int64(3*len(tc.want)) {
				t.Errorf("%d actions left, want the kept revisions' %d", n, 3*len(tc.want))
			}
			if deleted := int64(10 - len(tc.want)); r.Revisions != deleted || r.Actions != 3*deleted {
				t.Errorf("result %+v, want %d revisions and %d actions", r, deleted, 3*deleted)
			}
		})
	}
}

func TestBadOptions(t *testing.T) {
	err := retention.Options{KeepVersions: -1, KeepRevisions: -2, KeepRevisionsFor: -time.Hour, Interval: -time.Second}.Check()
	for _, want := range []string{"keep-versions -1", "keep-revisions -2", "keep-revisions-for -1h0m0s", "prune-interval -1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check() = %v, want it to name %q", err, want)
		}
	}
	if err := retention.Defaults().Check(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	d := openDB(t)
	if _, err := d.st.PrunableRevisions(t.Context(), store.RevisionRetention{Keep: -1}, 10); err == nil {
		t.Error("PrunableRevisions accepted a negative count")
	}
}

// cancelAfter is a Store that cancels the round's context after n batches.
type cancelAfter struct {
	retention.Store
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) tick() {
	if c.n--; c.n == 0 {
		c.cancel()
	}
}

func (c *cancelAfter) PruneVersionsBatch(ctx context.Context, after store.VersionCursor, keep, limit int) (store.VersionBatch, error) {
	defer c.tick()
	return c.Store.PruneVersionsBatch(ctx, after, keep, limit)
}

func (c *cancelAfter) PruneRevisionActions(ctx context.Context, ids []int64, limit int) (int64, error) {
	defer c.tick()
	return c.Store.PruneRevisionActions(ctx, ids, limit)
}

// A round cancelled between batches keeps what it deleted, leaves no
// action without its revision, and the next round finishes the job: the
// end state is the one of an uninterrupted round.
func TestCancelMidwayLeavesAConsistentState(t *testing.T) {
	for _, stopAfter := range []int{1, 3, 5, 9} {
		t.Run(fmt.Sprint("after ", stopAfter, " batches"), func(t *testing.T) {
			d := openDB(t)
			f := seedVersions(t, d)
			seedRevisions(t, d)
			opt := retention.Options{KeepVersions: 2, KeepRevisionsFor: year, KeepRevisions: 3, Interval: time.Hour, BatchSize: 2}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			cut := &cancelAfter{Store: d.st, n: stopAfter, cancel: cancel}
			if _, err := retention.New(cut, opt, nil, slog.New(slog.DiscardHandler)).PruneOnce(ctx); err == nil {
				t.Fatal("a cancelled round reported no error")
			}
			if n := d.count(t, `SELECT count(*) FROM revision_actions a WHERE NOT EXISTS (SELECT FROM revisions r WHERE r.id = a.revision_id)`); n != 0 {
				t.Errorf("%d actions outlived their revision", n)
			}
			if n := d.count(t, `SELECT count(*) FROM deployments d WHERE NOT EXISTS (SELECT FROM certificate_versions v WHERE v.id = d.current_version)`); n != 0 {
				t.Errorf("%d deployments lost their current version", n)
			}
			if _, err := retention.New(d.st, opt, nil, slog.New(slog.DiscardHandler)).PruneOnce(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got, want := d.versionIDs(t, "shop", "web-01"), []int64{f.web01[0], f.web01[1], f.web01[7], f.web01[8], f.web01[9], f.web01[10]}; !slices.Equal(got, want) {
				t.Errorf("shop/web-01 kept %v, want %v", got, want)
			}
			if got, want := d.revisionIDs(t), []int64{2, 5, 8, 9, 10}; !slices.Equal(got, want) {
				t.Errorf("kept revisions %v, want %v", got, want)
			}
		})
	}
}

func TestMetricsAndRun(t *testing.T) {
	d := openDB(t)
	seedVersions(t, d)
	seedRevisions(t, d)
	reg := prometheus.NewRegistry()
	m := retention.NewMetrics(reg)
	opt := retention.Options{KeepVersions: 2, KeepRevisionsFor: year, KeepRevisions: 3, Interval: 20 * time.Millisecond, BatchSize: 2}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); retention.New(d.st, opt, m, slog.New(slog.DiscardHandler)).Run(ctx) }()
	testkit.WaitFor(t, 10*time.Second, "Run to prune the revisions", func() bool {
		return testutil.ToFloat64(m.Pruned(retention.TableRevisions)) == 5
	})
	cancel()
	<-done
	for table, want := range map[string]float64{retention.TableCertificateVersions: 7, retention.TableRevisions: 5, retention.TableRevisionActions: 15} {
		if got := testutil.ToFloat64(m.Pruned(table)); got != want {
			t.Errorf("certops_pruned_rows_total{table=%q} = %v, want %v", table, got, want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "certops_prune_batch_duration_seconds"); err != nil || n != 1 {
		t.Errorf("batch duration histogram: %d series, %v", n, err)
	}

	// Interval 0 disables pruning: Run returns at once.
	disabled := make(chan struct{})
	go func() {
		defer close(disabled)
		retention.New(d.st, retention.Options{}, nil, slog.New(slog.DiscardHandler)).Run(t.Context())
	}()
	select {
	case <-disabled:
	case <-time.After(10 * time.Second):
		t.Fatal("Run with Interval 0 did not return")
	}
}

// The ACME rate-limit ledger keeps 8 days (its 7-day window and a day):
// older rows go, in batches; newer ones stay.
func TestACMELedgerPruned(t *testing.T) {
	d := openDB(t)
	for _, age := range []time.Duration{9 * 24 * time.Hour, 8*24*time.Hour + time.Hour, 10 * 24 * time.Hour, 7 * 24 * time.Hour, time.Hour} {
		d.exec(t, `INSERT INTO acme_issuances (issuer, name_set, certificate, agent, serial, issued_at, ari_renewal)
			VALUES ('le', 'shop.example.com', 'shop', 'web-01', 'aa', now() - make_interval(secs => $1), false)`, age.Seconds())
	}
	p := retention.New(d.st, retention.Options{KeepVersions: 2, Interval: time.Hour, BatchSize: 2}, nil, slog.New(slog.DiscardHandler))
	r, err := p.PruneOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	left := d.count(t, `SELECT count(*) FROM acme_issuances`)
	if r.Ledger != 3 || left != 2 {
		t.Errorf("pruned %d ledger rows, %d left; want 3 pruned (older than 8 days), 2 left", r.Ledger, left)
	}
}
