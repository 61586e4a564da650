package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

func version(cert, agent, serial string, now time.Time) state.CertificateVersion {
	return state.CertificateVersion{Certificate: cert, Agent: agent, SpecHash: "h1", Serial: serial, SHA256: "ab",
		NotBefore: now, NotAfter: now.Add(time.Hour), CertPEM: "leaf", ChainPEM: "chain", Issuer: "internal-ca", IssuedAt: now}
}

func TestDeploymentsSinceIsIncremental(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

	all, mark0, err := s.DeploymentsSince(ctx, 0)
	if err != nil || len(all) != 0 || mark0 == 0 {
		t.Fatalf("empty: %v, mark %d, %v", all, mark0, err)
	}
	d, err := s.RecordIssuance(ctx, store.Issuance{Version: version("shop", "web-01", "01", now), RenewAt: now.Add(40 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if d.Current == nil || d.Current.Serial != "01" || d.State != state.DeploymentIssued || d.ChangeSeq == 0 || !d.RenewAt.Equal(now.Add(40*time.Minute)) {
		t.Fatalf("RecordIssuance returned %+v", d)
	}
	_, mark1, err := s.DeploymentsSince(ctx, mark0)
	if err != nil {
		t.Fatal(err)
	}
	db, err := s.RecordIssuance(ctx, store.Issuance{Version: version("db", "db-01", "02", now), RenewAt: now})
	if err != nil || db.ChangeSeq <= d.ChangeSeq {
		t.Fatalf("second issuance: %+v %v; want a higher change_seq than %d", db, err, d.ChangeSeq)
	}
	// Transactions of other tests on the cluster may hold the mark back, so
	// a row already read may come again, unchanged; nothing new is missed.
	seen := map[string]int64{"shop": d.ChangeSeq, "db": db.ChangeSeq}
	onlySeen := func(rows []state.Deployment) bool {
		for _, r := range rows {
			if seen[r.Certificate] != r.ChangeSeq {
				return false
			}
		}
		return true
	}
	rows, mark2, err := s.DeploymentsSince(ctx, mark1)
	if err != nil || !slices.ContainsFunc(rows, func(r state.Deployment) bool { return r.Certificate == "db" }) || !onlySeen(rows) || mark2 < mark1 {
		t.Fatalf("since %d: %+v, mark %d, %v; want db (and nothing but what was written)", mark1, rows, mark2, err)
	}
	if rows, _, err := s.DeploymentsSince(ctx, mark2); err != nil || !onlySeen(rows) {
		t.Fatalf("since %d: %+v %v; want nothing new", mark2, rows, err)
	}
	if rows, _, err := s.DeploymentsSince(ctx, 0); err != nil || len(rows) != 2 {
		t.Fatalf("since 0: %+v %v; want both", rows, err)
	}
	// The challenge counter is not moved by deployments.
	if rev, seq, err := s.AgentChanges(ctx); err != nil || rev != 0 || seq != 0 {
		t.Fatalf("AgentChanges = %d, %d, %v; want 0, 0", rev, seq, err)
	}
}

// A write that commits after a later write was read is not skipped: the
// mark of a read stays below every transaction still running, so the next
// read returns it. Writers do not wait for each other.
func TestDeploymentsSinceNeverSkipsALateCommit(t *testing.T) {
	ctx := context.Background()
	url := pgtest.DB(t)
	s := openStore(t, url)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.RecordIssuance(ctx, store.Issuance{Version: version("shop", "web-01", "01", now), RenewAt: now}); err != nil {
		t.Fatal(err)
	}
	_, mark, err := s.DeploymentsSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A slow writer: its transaction changes shop/web-01 and stays open.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	slow, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx)
	if _, err := slow.Exec(ctx, `UPDATE deployments SET last_error = 'slow',
		change_seq = nextval('agent_change_seq'), change_xid = pg_current_xact_id()
		WHERE certificate = 'shop' AND agent = 'web-01'`); err != nil {
		t.Fatal(err)
	}
	// A fast writer commits meanwhile, without waiting for the slow one.
	if _, err := s.RecordIssuance(ctx, store.Issuance{Version: version("db", "db-01", "02", now), RenewAt: now}); err != nil {
		t.Fatal(err)
	}
	rows, next, err := s.DeploymentsSince(ctx, mark)
	if err != nil || !slices.ContainsFunc(rows, func(r state.Deployment) bool { return r.Certificate == "db" }) ||
		slices.ContainsFunc(rows, func(r state.Deployment) bool { return r.LastError == "slow" }) {
		t.Fatalf("while the slow writer runs: %+v %v; want db, and not the uncommitted change", rows, err)
	}
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rows, _, err = s.DeploymentsSince(ctx, next)
	found := false
	for _, r := range rows {
		found = found || r.Certificate == "shop" && r.LastError == "slow"
	}
	if err != nil || !found {
		t.Fatalf("after the slow writer committed: %+v %v; want shop with its change", rows, err)
	}
}

func TestIssueFailureBackoffAndReset(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	fail := func(hash string) state.Deployment {
		t.Helper()
		d, err := s.RecordIssueFailure(ctx, store.IssueFailure{Certificate: "shop", Agent: "web-01", SpecHash: hash,
			Error: "boom", At: now, Base: time.Minute, Cap: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute} {
		d := fail("h1")
		if d.Failures != i+1 || !d.NotBefore.Equal(now.Add(want)) || d.State != state.DeploymentIssueFailed || d.LastError != "boom" {
			t.Errorf("failure %d: %+v, want notBefore +%v", i+1, d, want)
		}
	}
	// A new spec starts counting again.
	if d := fail("h2"); d.Failures != 1 || !d.NotBefore.Equal(now.Add(time.Minute)) {
		t.Errorf("failure for a new spec: %+v", d)
	}
	// Success clears it all.
	v := version("shop", "web-01", "01", now)
	v.SpecHash = "h2"
	d, err := s.RecordIssuance(ctx, store.Issuance{Version: v, RenewAt: now})
	if err != nil {
		t.Fatal(err)
	}
	if d.Failures != 0 || !d.NotBefore.IsZero() || d.LastError != "" || d.SpecHash != "h2" {
		t.Errorf("after success: %+v", d)
	}
}

func TestReportKeepsInstalledOnRollback(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	v := version("shop", "web-01", "01", now)
	if _, err := s.RecordIssuance(ctx, store.Issuance{Version: v, RenewAt: now}); err != nil {
		t.Fatal(err)
	}
	d, err := s.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: "web-01", SpecHash: "h1", Serial: "01",
		Result: state.DeploymentInstalled, At: now})
	if err != nil || d.InstalledSerial != "01" || d.InstalledSpecHash != "h1" || !d.InstalledNotAfter.Equal(v.NotAfter) {
		t.Fatalf("installed: %+v %v", d, err)
	}
	if _, err := s.RecordIssuance(ctx, store.Issuance{Version: version("shop", "web-01", "02", now), RenewAt: now}); err != nil {
		t.Fatal(err)
	}
	d, err = s.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: "web-01", SpecHash: "h1", Serial: "02",
		Result: state.DeploymentRolledBack, Error: "reload: exit 1", At: now.Add(time.Minute)})
	if err != nil || d.InstalledSerial != "01" || d.State != state.DeploymentRolledBack || d.LastError != "reload: exit 1" ||
		!d.LastAttempt.Equal(now.Add(time.Minute)) {
		t.Fatalf("rolled back: %+v %v", d, err)
	}
	if _, err := s.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: "web-01", Result: "exploded"}); err == nil {
		t.Error("a report with an unknown result was accepted")
	}
}

func TestAgentsSeenMovesForward(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.RecordAgentsSeen(ctx, []store.AgentSeen{{Name: "a", LastSeen: t0, Version: "1", Hostname: "h"}, {Name: "b", LastSeen: t0}}); err != nil {
		t.Fatal(err)
	}
	// An older flush from another replica does not move last seen back; an
	// empty version keeps the known one.
	if err := s.RecordAgentsSeen(ctx, []store.AgentSeen{{Name: "a", LastSeen: t0.Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	seen, err := s.AgentsSeen(ctx, []string{"a"})
	if err != nil || len(seen) != 1 || !seen["a"].LastSeen.Equal(t0) || seen["a"].Version != "1" || seen["a"].Hostname != "h" {
		t.Fatalf("AgentsSeen(a) = %+v, %v", seen, err)
	}
	if all, _ := s.AgentsSeen(ctx, nil); len(all) != 2 {
		t.Errorf("AgentsSeen(nil) = %+v", all)
	}
}

func TestAgentAssignments(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	converge(t, s, "1", desiredOf(issuer("internal-ca"),
		agent("web-01", map[string]string{"role": "web"}), agent("db-01", map[string]string{"role": "db"}),
		cert("shop", nil, "shop.example.com"), // agents [web-01] and selector role=web
	))
	for agentName, want := range map[string]int{"web-01": 1, "db-01": 0} {
		labels := map[string]string{"role": "web"}
		if agentName == "db-01" {
			labels = map[string]string{"role": "db"}
		}
		got, err := s.AgentAssignments(ctx, agentName, labels)
		if err != nil || len(got) != want {
			t.Errorf("AgentAssignments(%s) = %v, %v; want %d", agentName, got, err, want)
		}
	}
	// By selector only.
	got, err := s.AgentAssignments(ctx, "web-99", map[string]string{"role": "web", "rack": "1"})
	if err != nil || len(got) != 1 || got[0] != "shop" {
		t.Errorf("AgentAssignments by selector = %v, %v", got, err)
	}
	all, err := s.AssignmentObjects(ctx, 0, nil)
	if err != nil || all.Revision == 0 || len(all.Objects) != 4 {
		t.Errorf("AssignmentObjects = %d, %d objects, %v", all.Revision, len(all.Objects), err)
	}
}

// AssignmentObjects since a revision returns what later revisions wrote and
// deleted, so a copy as of that revision is brought up to date; objects
// deleted and written again count as written, refused revisions change
// nothing, and other kinds are left out.
func TestAssignmentObjectsSince(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	policy := &spec.Object{Kind: spec.KindAlertPolicy, Name: "default", Spec: &spec.AlertPolicySpec{RenotifyInterval: "2h"}}
	base := []*spec.Object{issuer("internal-ca"), agent("web-01", nil), agent("web-02", nil),
		cert("shop", nil, "shop.example.com"), cert("blog", nil, "blog.example.com"), policy}
	_, first := converge(t, s, "1", desiredOf(base...))
	if got, err := s.AssignmentObjects(ctx, first, nil); err != nil || got.Revision != first || len(got.Objects)+len(got.Deleted) != 0 {
		t.Fatalf("since the newest revision = %+v, %v; want nothing", got, err)
	}
	// Revision 2 deletes web-02 and blog, changes shop and the policy;
	// revision 3 brings blog back and adds wiki.
	shop := cert("shop", nil, "shop2.example.com")
	policy2 := &spec.Object{Kind: spec.KindAlertPolicy, Name: "default", Spec: &spec.AlertPolicySpec{RenotifyInterval: "3h"}}
	converge(t, s, "2", desiredOf(issuer("internal-ca"), agent("web-01", nil), shop, policy2))
	_, last := converge(t, s, "3", desiredOf(issuer("internal-ca"), agent("web-01", nil), shop, policy2,
		cert("blog", nil, "blog.example.com"), cert("wiki", nil, "wiki.example.com")))
	got, err := s.AssignmentObjects(ctx, first, nil)
	if err != nil {
		t.Fatal(err)
	}
	var written []string
	for _, o := range got.Objects {
		written = append(written, string(o.Kind)+"/"+o.Name)
	}
	slices.Sort(written)
	if got.Revision != last || !slices.Equal(written, []string{"Certificate/blog", "Certificate/shop", "Certificate/wiki"}) ||
		!slices.Equal(got.Deleted, []spec.Key{{Kind: spec.KindAgent, Name: "web-02"}}) {
		t.Errorf("since %d = revision %d, written %v, deleted %v; want %d, [blog shop wiki], [Agent/web-02]",
			first, got.Revision, written, got.Deleted, last)
	}
	// What the caller knows by key and hash comes without its content.
	known := func(k spec.Key, hash string) bool { return k.Name == "shop" && hash == shop.Hash() }
	got, err = s.AssignmentObjects(ctx, first, known)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range got.Objects {
		if bare := o.Spec == nil && o.Labels == nil; bare != (o.Name == "shop") || o.Hash == "" {
			t.Errorf("%s/%s: spec %s, hash %q; want content only for what the caller does not know", o.Kind, o.Name, o.Spec, o.Hash)
		}
	}
}

func TestAssignmentObjectsHashLikeTheLoader(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	is := issuer("internal-ca")
	is.Annotations = map[string]string{"owner": "pki-team"}
	converge(t, s, "1", desiredOf(is))
	all, err := s.AssignmentObjects(ctx, 0, nil)
	objs := all.Objects
	if err != nil || len(objs) != 1 {
		t.Fatalf("AssignmentObjects = %+v, %v", objs, err)
	}
	var sp spec.IssuerSpec
	if err := json.Unmarshal(objs[0].Spec, &sp); err != nil {
		t.Fatal(err)
	}
	back := &spec.Object{Kind: spec.KindIssuer, Name: objs[0].Name, Labels: objs[0].Labels, Annotations: objs[0].Annotations, Spec: &sp}
	if back.Hash() != is.Hash() {
		t.Errorf("hash of the object read back %s != the loader's %s", back.Hash(), is.Hash())
	}
}

// A row with bytes Postgres refuses does not fail the batch: every agent's
// liveness is written, the bad fields made safe.
func TestAgentsSeenBadBytesDoNotFailTheBatch(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	err := s.RecordAgentsSeen(ctx, []store.AgentSeen{
		{Name: "bad", LastSeen: t0, Version: "1\xff", Hostname: "web\x00-01"},
		{Name: "good", LastSeen: t0, Version: "2", Hostname: "good.lan"},
	})
	if err != nil {
		t.Fatalf("RecordAgentsSeen: %v", err)
	}
	seen, err := s.AgentsSeen(ctx, nil)
	if err != nil || seen["good"].Hostname != "good.lan" || !seen["bad"].LastSeen.Equal(t0) ||
		strings.ContainsRune(seen["bad"].Hostname, 0) || !utf8.ValidString(seen["bad"].Version) {
		t.Fatalf("AgentsSeen = %+v, %v", seen, err)
	}
}

// A report of a serial never issued to that agent for that certificate,
// or dated before it was issued, changes nothing.
func TestReportOfUnknownSerialIsRefused(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.RecordIssuance(ctx, store.Issuance{Version: version("shop", "web-01", "01", now), RenewAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordIssuance(ctx, store.Issuance{Version: version("shop", "web-02", "02", now), RenewAt: now}); err != nil {
		t.Fatal(err)
	}
	before, mark0, err := s.DeploymentsSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int64{}
	for _, d := range before {
		seen[d.Agent] = d.ChangeSeq
	}
	for _, r := range []store.DeploymentReport{
		{Serial: "deadbeef", Result: state.DeploymentInstalled, At: now},
		{Serial: "02", Result: state.DeploymentInstalled, At: now},                                           // another agent's
		{Serial: "01", Result: state.DeploymentInstalled, At: now.Add(-store.ReportClockSkew - time.Second)}, // before it was issued
		{Serial: "deadbeef", Result: state.DeploymentRolledBack, At: now},
	} {
		r.Certificate, r.Agent, r.SpecHash = "shop", "web-01", "h1"
		if _, err := s.RecordReport(ctx, r); !errors.Is(err, store.ErrUnknownSerial) {
			t.Errorf("RecordReport(%+v) = %v, want ErrUnknownSerial", r, err)
		}
	}
	// Rows may be read again (other tests' transactions hold the mark
	// back), but none was written since.
	again, _, err := s.DeploymentsSince(ctx, mark0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range again {
		if d.ChangeSeq != seen[d.Agent] {
			t.Errorf("refused reports wrote %+v", d)
		}
	}
	deps, _, err := s.DeploymentsSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deps {
		if d.InstalledSerial != "" || d.State != state.DeploymentIssued {
			t.Errorf("refused reports changed %+v", d)
		}
	}
	if d, err := s.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: "web-01", SpecHash: "h1", Serial: "01",
		Result: state.DeploymentInstalled, At: now.Add(-time.Minute)}); err != nil || d.InstalledSerial != "01" {
		t.Errorf("a known serial within the skew: %+v %v", d, err)
	}
}

// The agent's failed issue-stage report of the attempt the server refused
// keeps the server's issue-failed state and error; any other report, or one
// for another spec, is recorded. Each state carries the spec it is for.
func TestReportOfARefusedIssueKeepsTheServersState(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	v := version("shop", "web-01", "01", now)
	if _, err := s.RecordIssuance(ctx, store.Issuance{Version: v, RenewAt: now}); err != nil {
		t.Fatal(err)
	}
	d, err := s.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: "web-01", SpecHash: v.SpecHash, Serial: "01",
		Result: state.DeploymentInstalled, At: now})
	if err != nil || d.StateSpecHash != v.SpecHash {
		t.Fatalf("installed: %+v %v", d, err)
	}
	const refused = `the CA "x" may not sign these names: DNS name "shop.example.org" is not permitted`
	d, err = s.RecordIssueFailure(ctx, store.IssueFailure{Certificate: "shop", Agent: "web-01", SpecHash: "h2",
		Error: refused, At: now.Add(time.Minute), Base: time.Minute, Cap: time.Hour})
	if err != nil || d.State != state.DeploymentIssueFailed || d.StateSpecHash != "h2" {
		t.Fatalf("issue failure: %+v %v", d, err)
	}
	report := func(spec string, result state.DeploymentState, stage, msg string) state.Deployment {
		t.Helper()
		d, err := s.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: "web-01", SpecHash: spec,
			Result: result, Stage: stage, Error: msg, At: now.Add(2 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d = report("h2", state.DeploymentFailed, agentproto.StageIssue, "issue: 422 name_not_permitted")
	if d.State != state.DeploymentIssueFailed || d.LastError != refused || d.StateSpecHash != "h2" || !d.LastAttempt.Equal(now.Add(time.Minute)) {
		t.Errorf("after the agent's report of the refused issue: %+v", d)
	}
	if d.InstalledSerial != "01" || d.InstalledSpecHash != v.SpecHash || d.Failures != 1 {
		t.Errorf("the report changed what is installed or the failures: %+v", d)
	}
	d = report("h3", state.DeploymentFailed, agentproto.StageIssue, "issue: key generation failed")
	if d.State != state.DeploymentFailed || d.StateSpecHash != "h3" || d.LastError != "issue: key generation failed" {
		t.Errorf("a failed issue report for another spec: %+v", d)
	}
	if _, err := s.RecordIssueFailure(ctx, store.IssueFailure{Certificate: "shop", Agent: "web-01", SpecHash: "h3",
		Error: "boom", At: now, Base: time.Minute, Cap: time.Hour}); err != nil {
		t.Fatal(err)
	}
	d = report("h3", state.DeploymentFailed, agentproto.StageInstall, "install: read-only file system")
	if d.State != state.DeploymentFailed || d.LastError != "install: read-only file system" {
		t.Errorf("a failed install report: %+v", d)
	}
}
