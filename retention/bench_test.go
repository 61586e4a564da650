package retention_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/certops/certops/retention"
	"github.com/certops/certops/store"
)

// BenchmarkPrune50K prunes, with the default settings, the history of
// 50,000 certificates each deployed on one agent (10,000 agents): ten
// versions per pair, one issued every 60 days with a 90-day lifetime, so
// the newest two are valid and eight expired (150,000 versions to delete:
// three per pair over the five kept); and 1,460 revisions, one every 12
// hours for two years, the first two full applies of 60,002 actions each,
// the others 5, with 60,002 objects last written by revision 3 or by one
// of the last thousand. Meanwhile an agent-like writer issues versions
// (insert a version, point the deployment at it) and a watcher samples
// pg_locks for waiting locks. Run it once:
//
//	go test -run '^$' -bench Prune50K -benchtime 1x -v ./retention
//	CERTOPS_BENCH_WRITER=saturate go test -run '^$' -bench Prune50K -benchtime 1x -v ./retention
func BenchmarkPrune50K(b *testing.B) {
	if testing.Short() {
		b.Skip("seeds 500,000 versions")
	}
	d := openDB(b)
	for range b.N {
		b.StopTimer()
		d.exec(b, `TRUNCATE certificate_versions, deployments, revisions, revision_actions, objects`)
		seed50K(b, d)
		b.StartTimer()

		ctx, cancel := context.WithCancel(b.Context())
		var wg sync.WaitGroup
		var writes writerStats
		var maxWaiting int64
		wg.Go(func() { writes = agentWriter(ctx, d) })
		wg.Go(func() { maxWaiting = lockWatcher(ctx, d) })
		timed := &timedStore{Store: d.st}
		p := retention.New(timed, retention.Defaults(), nil, slog.New(slog.DiscardHandler))
		r, err := p.PruneOnce(b.Context())
		cancel()
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		if writes.err != nil {
			b.Fatalf("writer: %v", writes.err)
		}
		for _, m := range timed.methods() {
			b.Logf("%-22s %4d batches, longest %v, total %v", m.name, m.n, m.longest.Round(time.Millisecond), m.total.Round(time.Millisecond))
		}
		if r.Versions != 150_000 || r.Revisions != 459 || r.Actions != 2*60_002+457*5 {
			b.Fatalf("deleted %d versions, %d revisions, %d actions; want 150000, 459, %d", r.Versions, r.Revisions, r.Actions, 2*60_002+457*5)
		}
		b.ReportMetric(float64(r.LongestBatch.Microseconds())/1000, "longest_batch_ms")
		b.ReportMetric(r.Elapsed.Seconds(), "total_s")
		b.ReportMetric((r.Elapsed - time.Duration(r.Batches-1)*retention.DefaultPause).Seconds(), "working_s")
		b.ReportMetric(float64(r.Batches), "batches")
		b.ReportMetric(float64(writes.max.Microseconds())/1000, "writer_max_ms")
		b.ReportMetric(float64(writes.n), "writer_txs")
		b.ReportMetric(float64(maxWaiting), "max_waiting_locks")
	}
}

// seed50K fills the tables as the benchmark's comment says.
func seed50K(b *testing.B, d db) {
	b.Helper()
	start := time.Now()
	for _, sql := range []string{
		// ids grow with time: every pair's first version, then every second one...
		`INSERT INTO certificate_versions (certificate, agent, spec_hash, serial, sha256, not_before, not_after, cert_pem, chain_pem, issuer, issued_at)
		 SELECT 'svc-' || lpad(c::text, 5, '0'), 'web-' || lpad((c % 10000)::text, 5, '0'), 'h', 's-' || c || '-' || v, md5(c || '-' || v),
		        now() - (10 - v) * interval '60 days', now() - (10 - v) * interval '60 days' + interval '90 days',
		        (SELECT string_agg(md5(c || '-' || v || '-' || i), '') FROM generate_series(1, 36) i),
		        (SELECT string_agg(md5('chain-' || i), '') FROM generate_series(1, 36) i),
		        'internal-ca', now() - (10 - v) * interval '60 days'
		 FROM generate_series(1, 10) v, generate_series(0, 49999) c
		 ORDER BY v, c`,
		`INSERT INTO deployments (certificate, agent, spec_hash, current_version, installed_serial, installed_spec_hash, state)
		 SELECT DISTINCT ON (certificate, agent) certificate, agent, 'h', id, serial, 'h', 'installed'
		 FROM certificate_versions ORDER BY certificate, agent, id DESC`,
		`INSERT INTO revisions (id, commit, outcome, applied_at, action_count)
		 SELECT r, md5(r::text) || 'abcdefgh', 'applied', now() - (1460 - r) * interval '12 hours', CASE WHEN r <= 2 THEN 60002 ELSE 5 END
		 FROM generate_series(1, 1460) r`,
		`SELECT setval('revisions_id_seq', 1460)`,
		`INSERT INTO revision_actions (revision_id, seq, action, kind, name)
		 SELECT r, s, 'update', 'Certificate', 'svc-' || lpad(s::text, 5, '0')
		 FROM generate_series(1, 1460) r, LATERAL generate_series(1, CASE WHEN r <= 2 THEN 60002 ELSE 5 END) s`,
		`INSERT INTO objects (kind, name, spec, hash, revision_id)
		 SELECT 'Certificate', 'svc-' || lpad(o::text, 5, '0'),
		        jsonb_build_object('issuerRef', 'internal-ca', 'commonName', 'svc-' || o || '.example.com', 'dnsNames', jsonb_build_array('svc-' || o || '.example.com')),
		        md5(o::text), CASE WHEN o % 6 = 0 THEN 461 + o % 1000 ELSE 3 END
		 FROM generate_series(0, 60001) o`,
		`VACUUM ANALYZE certificate_versions, deployments, revisions, revision_actions, objects`,
	} {
		d.exec(b, sql)
	}
	b.Logf("seeded in %v", time.Since(start).Round(time.Second))
}

type writerStats struct {
	n   int
	max time.Duration
	err error
}

// agentWriter issues versions as the agent API does (insert a version,
// point the deployment at it, one transaction) for random pairs, 100 a
// second (CERTOPS_BENCH_WRITER=saturate: back to back), until ctx ends, and
// returns the slowest transaction.
func agentWriter(ctx context.Context, d db) writerStats {
	var s writerStats
	pace := time.NewTicker(10 * time.Millisecond)
	defer pace.Stop()
	saturate := os.Getenv("CERTOPS_BENCH_WRITER") == "saturate"
	for ctx.Err() == nil {
		if !saturate {
			select {
			case <-ctx.Done():
				return s
			case <-pace.C:
			}
		}
		c := rand.IntN(50_000)
		start := time.Now()
		_, err := d.sql.Exec(ctx, `
			WITH v AS (
				INSERT INTO certificate_versions (certificate, agent, spec_hash, serial, sha256, not_before, not_after, cert_pem, issuer)
				VALUES ($1, $2, 'h', gen_random_uuid()::text, '', now(), now() + interval '90 days', 'PEM', 'internal-ca')
				RETURNING id, certificate, agent)
			UPDATE deployments d SET current_version = v.id FROM v WHERE d.certificate = v.certificate AND d.agent = v.agent`,
			fmt.Sprintf("svc-%05d", c), fmt.Sprintf("web-%05d", c%10_000))
		if err != nil {
			if ctx.Err() == nil {
				s.err = err
			}
			return s
		}
		s.n++
		s.max = max(s.max, time.Since(start))
	}
	return s
}

// lockWatcher samples pg_locks every 5 ms until ctx ends and returns the
// most locks seen waiting at once in the benchmark's database (the test
// cluster may be shared with other tests).
func lockWatcher(ctx context.Context, d db) int64 {
	var most int64
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return most
		case <-t.C:
		}
		var n int64
		if err := d.sql.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE NOT l.granted AND a.datname = current_database()`).Scan(&n); err != nil {
			return most
		}
		most = max(most, n)
	}
}

// timedStore times each batch method of the store it wraps.
type timedStore struct {
	retention.Store
	mu    sync.Mutex
	stats map[string]*methodStats
}

type methodStats struct {
	name           string
	n              int
	longest, total time.Duration
}

func (t *timedStore) time(name string, start time.Time) {
	d := time.Since(start)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stats == nil {
		t.stats = map[string]*methodStats{}
	}
	m := t.stats[name]
	if m == nil {
		m = &methodStats{name: name}
		t.stats[name] = m
	}
	m.n++
	m.total += d
	m.longest = max(m.longest, d)
}

func (t *timedStore) methods() []methodStats {
	var out []methodStats
	for _, name := range []string{"PruneVersionsBatch", "PrunableRevisions", "PruneRevisionActions", "PruneRevisions"} {
		if m := t.stats[name]; m != nil {
			out = append(out, *m)
		}
	}
	return out
}

func (t *timedStore) PruneVersionsBatch(ctx context.Context, after store.VersionCursor, keep, limit int) (store.VersionBatch, error) {
	defer t.time("PruneVersionsBatch", time.Now())
	return t.Store.PruneVersionsBatch(ctx, after, keep, limit)
}

func (t *timedStore) PrunableRevisions(ctx context.Context, keep store.RevisionRetention, limit int) ([]int64, error) {
	defer t.time("PrunableRevisions", time.Now())
	return t.Store.PrunableRevisions(ctx, keep, limit)
}

func (t *timedStore) PruneRevisionActions(ctx context.Context, ids []int64, limit int) (int64, error) {
	defer t.time("PruneRevisionActions", time.Now())
	return t.Store.PruneRevisionActions(ctx, ids, limit)
}

func (t *timedStore) PruneRevisions(ctx context.Context, ids []int64, keep store.RevisionRetention) (int64, error) {
	defer t.time("PruneRevisions", time.Now())
	return t.Store.PruneRevisions(ctx, ids, keep)
}
