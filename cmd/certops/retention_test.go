package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/testkit"
)

// TestServePrunesHistory starts serve on a database with two years of
// history: its leader prunes what the retention flags do not keep, and
// says so in its metrics and log.
func TestServePrunesHistory(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := pgtest.DB(t)
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// Five revisions applied two years ago, with two actions each, and ten
	// expired versions of one certificate on one agent.
	for _, sql := range []string{
		`INSERT INTO revisions (commit, outcome, applied_at) SELECT 'old', 'applied', now() - interval '2 years' FROM generate_series(1, 5)`,
		`INSERT INTO revision_actions (revision_id, seq, action, kind, name) SELECT id, s, 'create', 'Certificate', 'c' FROM revisions, generate_series(1, 2) s`,
		`INSERT INTO certificate_versions (certificate, agent, spec_hash, serial, sha256, not_before, not_after, cert_pem, issuer)
			SELECT 'shop', 'web-01', 'h', 's' || i, '', now() - interval '1 year', now() - interval '1 day', 'PEM', 'ca' FROM generate_series(1, 10) i`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.yaml": issuerDoc})
	srv := startServe(t, ctx, map[string]string{"CERTOPS_DATABASE_URL": db, "CERTOPS_REPO": dir,
		"CERTOPS_PRUNE_INTERVAL": "100ms", "CERTOPS_KEEP_VERSIONS": "2", "CERTOPS_KEEP_REVISIONS": "1", "CERTOPS_KEEP_REVISIONS_FOR": "24h"})
	waitStatus(t, srv.url, "the directory to be applied", appliedPrefix("dir@sha1:"))
	// Every old revision goes (the directory's revision is the newest and
	// the last applied), and all but the newest two versions.
	testkit.WaitFor(t, waitTimeout, "the leader to prune the history", func() bool {
		return metric(t, srv.url, `certops_pruned_rows_total{table="revisions"}`) == 5 &&
			metric(t, srv.url, `certops_pruned_rows_total{table="certificate_versions"}`) == 8
	})
	if got := metric(t, srv.url, `certops_pruned_rows_total{table="revision_actions"}`); got != 10 {
		t.Errorf("revision actions pruned: %v, want 10", got)
	}
	var revisions, versions int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM revisions), (SELECT count(*) FROM certificate_versions)`).Scan(&revisions, &versions); err != nil {
		t.Fatal(err)
	}
	if revisions != 1 || versions != 2 {
		t.Errorf("left %d revisions and %d versions, want 1 and 2", revisions, versions)
	}
	// The round logs when it ends, after the ACME ledger's batch.
	testkit.WaitFor(t, waitTimeout, "the pruning round to be logged", func() bool {
		return strings.Contains(srv.logs.String(), `"msg":"pruned history"`)
	})
	cancel()
	<-srv.done
}
