package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
)

func TestApplyCreateUpdateDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)

	a := cert("a", map[string]string{"team": "shop"}, "a.example.com")
	b := cert("b", nil, "b.example.com")
	v1 := desiredOf(issuer("internal-ca"), agent("web-01", map[string]string{"role": "web"}), a, b)
	plan1, rev1 := converge(t, s, "1", v1)
	if got := len(plan1.Changes); got != 4 {
		t.Fatalf("first plan has %d changes, want 4 creates", got)
	}

	got, err := s.GetObject(ctx, spec.KindCertificate, "a")
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	wantSpec, _ := json.Marshal(a.Spec)
	if !jsonEqual(t, got.Spec, wantSpec) {
		t.Errorf("stored spec = %s, want %s", got.Spec, wantSpec)
	}
	if got.Hash != a.Hash() || got.Generation != 1 || got.RevisionID != rev1 ||
		got.SourceFile != "certs/a.yaml" || got.SourceLine != 7 ||
		!cmp.Equal(got.Labels, map[string]string{"team": "shop"}) || got.CreatedAt.IsZero() {
		t.Errorf("stored object = %+v, want hash %s, generation 1, revision %d, source certs/a.yaml:7, labels team=shop",
			got, a.Hash(), rev1)
	}

	// v2: change a, delete b, add c.
	a2 := cert("a", map[string]string{"team": "shop"}, "a2.example.com")
	c := cert("c", nil, "c.example.com")
	v2 := desiredOf(issuer("internal-ca"), agent("web-01", map[string]string{"role": "web"}), a2, c)
	plan2, rev2 := converge(t, s, "2", v2)

	wantActions := []state.ActionRecord{
		{Action: state.ActionUpdate, Kind: spec.KindCertificate, Name: "a"},
		{Action: state.ActionCreate, Kind: spec.KindCertificate, Name: "c"},
		{Action: state.ActionDelete, Kind: spec.KindCertificate, Name: "b"},
	}
	if diff := cmp.Diff(actionsOf(plan2), wantActions); diff != "" {
		t.Fatalf("second plan (-got +want):\n%s", diff)
	}
	got, err = s.GetObject(ctx, spec.KindCertificate, "a")
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	if got.Generation != 2 || got.Hash != a2.Hash() || got.RevisionID != rev2 || !got.UpdatedAt.After(got.CreatedAt) {
		t.Errorf("updated object: generation %d hash %s revision %d (created %v updated %v); want 2, %s, %d, updated after created",
			got.Generation, got.Hash, got.RevisionID, got.CreatedAt, got.UpdatedAt, a2.Hash(), rev2)
	}
	if _, err := s.GetObject(ctx, spec.KindCertificate, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted object: got err %v, want ErrNotFound", err)
	}
	assertHashes(t, s, v2)

	revs, err := s.ListRevisions(ctx, 10, 0)
	if err != nil {
		t.Fatalf("ListRevisions: %v", err)
	}
	if len(revs) != 2 || revs[0].ID != rev2 || revs[1].ID != rev1 {
		t.Fatalf("ListRevisions ids = %v, want [%d %d]", revisionIDs(revs), rev2, rev1)
	}
	if diff := cmp.Diff(revs[0].Actions, wantActions); diff != "" {
		t.Errorf("revision actions (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(revs[0].Revision, revision("2")); diff != "" {
		t.Errorf("revision (-got +want):\n%s", diff)
	}
	if revs[0].Outcome != state.OutcomeApplied || revs[0].AppliedAt.IsZero() {
		t.Errorf("revision outcome %q applied at %v, want applied, set", revs[0].Outcome, revs[0].AppliedAt)
	}
	if older, err := s.ListRevisions(ctx, 10, rev2); err != nil || len(older) != 1 || older[0].ID != rev1 {
		t.Errorf("ListRevisions before %d = %v, %v; want [%d]", rev2, revisionIDs(older), err, rev1)
	}
}

func TestReapplyChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	desired := fleet(20, 5)
	converge(t, s, "1", desired)
	before := listAll(t, s)

	plan, _ := converge(t, s, "2", desired)
	if !plan.Empty() {
		t.Fatalf("re-planning the applied state gives %d changes, want none", len(plan.Changes))
	}
	if diff := cmp.Diff(listAll(t, s), before); diff != "" {
		t.Errorf("applying an empty plan changed objects (-got +want):\n%s", diff)
	}
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := revision("2").String(); st.LastAppliedRevision != want {
		t.Errorf("status last applied = %q, want %q", st.LastAppliedRevision, want)
	}
}

// Every object written from a spec.Object and read back hashes the same,
// whatever its labels look like (nil, empty, set) and whatever its spec holds.
func TestContentHashRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	frac, ratio := 0.25, 0.1
	start := true
	objs := []*spec.Object{
		cert("nil-labels", nil, "x.example.com"),
		cert("empty-labels", map[string]string{}, "y.example.com"),
		{Kind: spec.KindCertificate, Name: "annotated", Labels: map[string]string{"a": "1", "b": ""},
			Annotations: map[string]string{"note": "<html> & \"quotes\" ü \u2028"}, Spec: &spec.CertificateSpec{IssuerRef: "x"}},
		{Kind: spec.KindAlertPolicy, Name: "alerts", Spec: &spec.AlertPolicySpec{
			CertificateExpiring: &spec.ExpiryThresholds{Warning: &spec.ExpiryThreshold{Remaining: "720h", RemainingFraction: &frac}},
			JobFailureRatio:     &spec.FailureRatio{Ratio: ratio, Window: "1h", MinJobs: 3},
			Notify:              []string{"ops"},
		}},
		{Kind: spec.KindNotificationChannel, Name: "ops", Spec: &spec.NotificationChannelSpec{
			SMTP: &spec.SMTPChannel{Host: "mail", Port: 587, From: "a@b", To: []string{"c@d"}, StartTLS: &start},
		}},
		{Kind: spec.KindBackupPolicy, Name: "nightly", Annotations: map[string]string{},
			Spec: &spec.BackupPolicySpec{Schedule: "0 3 * * *", Retention: spec.BackupRetention{Count: 7}}},
		{Kind: spec.KindIssuer, Name: "nil-spec"},
	}
	desired := desiredOf(objs...)
	converge(t, s, "1", desired)
	assertHashes(t, s, desired)

	stored, _, err := s.ContentHashes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if plan := reconcile.Compute(desired, stored); !plan.Empty() {
		t.Errorf("plan against content hashes after apply: %d changes, want none", len(plan.Changes))
	}
}

func TestApplyFailureLeavesPreviousStateWhole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	v1 := fleet(30, 5)
	converge(t, s, "1", v1)
	objsBefore := listAll(t, s)
	revsBefore, _ := s.ListRevisions(ctx, 10, 0)
	statusBefore, _ := s.Status(ctx)

	v2 := fleet(20, 8) // deletes, creates and (below) updates
	ca := issuer("internal-ca")
	ca.Spec = &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{CertFile: "/etc/ca2/tls.crt", KeyFile: "/etc/ca2/tls.key"}}
	v2[ca.Key()] = ca
	injected := errors.New("injected failure")
	store.SetBeforeCommit(s, func(ctx context.Context, tx pgx.Tx) error {
		// The transaction did its work; it is only not committed.
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM objects").Scan(&n); err != nil {
			return err
		}
		if n != 29 {
			t.Errorf("inside the failing transaction: %d objects, want 29", n)
		}
		return injected
	})
	stored, _ := s.StoredHashes(ctx)
	plan := reconcile.Compute(v2, stored)
	_, err := s.Apply(ctx, leader(t, s), revision("2"), plan, appliedStatus(revision("2")))
	if !errors.Is(err, injected) {
		t.Fatalf("Apply with injected failure: got %v, want it wrapped", err)
	}

	if diff := cmp.Diff(listAll(t, s), objsBefore); diff != "" {
		t.Errorf("objects changed by a failed apply (-got +want):\n%s", diff)
	}
	revsAfter, _ := s.ListRevisions(ctx, 10, 0)
	if diff := cmp.Diff(revsAfter, revsBefore); diff != "" {
		t.Errorf("revisions changed by a failed apply (-got +want):\n%s", diff)
	}
	statusAfter, _ := s.Status(ctx)
	if diff := cmp.Diff(statusAfter, statusBefore); diff != "" {
		t.Errorf("status changed by a failed apply (-got +want):\n%s", diff)
	}

	store.SetBeforeCommit(s, nil)
	if _, err := s.Apply(ctx, leader(t, s), revision("2"), plan, appliedStatus(revision("2"))); err != nil {
		t.Fatalf("Apply without the failure: %v", err)
	}
	assertHashes(t, s, v2)
}

func TestApplyRejectsMalformedPlan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	plan := state.Plan{Changes: []state.Change{
		{Action: state.ActionCreate, Key: spec.Key{Kind: spec.KindAgent, Name: "x"}, Object: agent("x", nil)},
		{Action: state.ActionUpdate, Key: spec.Key{Kind: spec.KindAgent, Name: "y"}},
	}}
	if _, err := s.Apply(ctx, leader(t, s), revision("1"), plan, state.Status{}); err == nil {
		t.Fatal("Apply of an update without object: got nil error")
	}
	if objs := listAll(t, s); len(objs) != 0 {
		t.Errorf("malformed plan wrote %d objects", len(objs))
	}
}

func TestRecordAttemptLeavesObjectsUntouched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	converge(t, s, "1", fleet(3, 2))
	before := listAll(t, s)

	rev := revision("bad")
	errs := spec.ErrorList{{File: "certs/a.yaml", Line: 4, Message: "spec.issuerRef: unknown issuer \"nope\""}}
	status := state.Status{
		LastAppliedRevision:   revision("1").String(),
		LastAttemptedRevision: rev.String(),
		Errors:                errs,
		Conditions:            []state.Condition{{Type: state.ConditionStalled, Status: "True", Reason: "Invalid"}},
	}
	id, err := s.RecordAttempt(ctx, leader(t, s), rev, state.OutcomeInvalid, errs, status)
	if err != nil {
		t.Fatalf("RecordAttempt: %v", err)
	}
	if diff := cmp.Diff(listAll(t, s), before); diff != "" {
		t.Errorf("RecordAttempt changed objects (-got +want):\n%s", diff)
	}
	revs, err := s.ListRevisions(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := state.RevisionRecord{ID: id, Revision: rev, Outcome: state.OutcomeInvalid, Errors: errs, Actions: []state.ActionRecord{}}
	if diff := cmp.Diff(revs, []state.RevisionRecord{want}, ignoreAppliedAt); diff != "" {
		t.Errorf("recorded attempt (-got +want):\n%s", diff)
	}
	got, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, status); diff != "" {
		t.Errorf("status (-got +want):\n%s", diff)
	}
	if _, err := s.RecordAttempt(ctx, leader(t, s), rev, state.OutcomeApplied, nil, status); err == nil {
		t.Error("RecordAttempt with outcome applied: got nil error")
	}
}

func TestContentHashesDetectOutOfBandEdit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	desired := fleet(5, 2)
	converge(t, s, "1", desired)

	conn := adminPool(t, s)
	_, err := conn.Exec(ctx, `UPDATE objects SET spec = jsonb_set(spec, '{commonName}', '"evil.example.com"')
		WHERE kind = 'Certificate' AND name = 'svc-00003'`)
	if err != nil {
		t.Fatal(err)
	}
	key := spec.Key{Kind: spec.KindCertificate, Name: "svc-00003"}

	stored, err := s.StoredHashes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stored[key] != desired[key].Hash() {
		t.Errorf("stored hash changed by an edit of spec only")
	}
	content, drifted, err := s.ContentHashes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if drifted != 1 {
		t.Errorf("ContentHashes: %d rows drifted, want 1", drifted)
	}
	plan := reconcile.Compute(desired, content)
	want := []state.ActionRecord{{Action: state.ActionUpdate, Kind: key.Kind, Name: key.Name}}
	if diff := cmp.Diff(actionsOf(plan), want); diff != "" {
		t.Fatalf("drift plan (-got +want):\n%s", diff)
	}

	// Applying the drift plan repairs the row although its hash column was right.
	if _, err := s.Apply(ctx, leader(t, s), revision("repair"), plan, state.Status{}); err != nil {
		t.Fatalf("Apply repair: %v", err)
	}
	assertHashes(t, s, desired)
	got, _ := s.GetObject(ctx, key.Kind, key.Name)
	if got.Generation != 2 {
		t.Errorf("repaired object generation = %d, want 2", got.Generation)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	got, err := s.Status(ctx)
	if err != nil {
		t.Fatalf("Status of a new database: %v", err)
	}
	if diff := cmp.Diff(got, state.Status{}); diff != "" {
		t.Errorf("Status before any write (-got +want):\n%s", diff)
	}

	t1 := time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)
	t2 := t1.Add(time.Minute)
	want := state.Status{
		LastAppliedRevision:   "main@sha1:" + fmt.Sprintf("%040d", 1),
		LastAppliedAt:         &t1,
		LastAttemptedRevision: "main@sha1:" + fmt.Sprintf("%040d", 2),
		LastAttemptedAt:       &t2,
		LastFetchAt:           &t2,
		Errors:                spec.ErrorList{{File: "a.yaml", Line: 1, Message: "bad"}},
		Conditions: []state.Condition{
			{Type: state.ConditionReady, Status: "False", Reason: "Invalid", Message: "1 error", LastTransitionTime: t2},
			{Type: state.ConditionStalled, Status: "True", Reason: "Invalid", Message: "fix the repo", LastTransitionTime: t2},
		},
	}
	for _, st := range []state.Status{want, {LastAppliedRevision: "x"}} {
		if err := s.SetStatus(ctx, leader(t, s), st); err != nil {
			t.Fatalf("SetStatus: %v", err)
		}
		got, err := s.Status(ctx)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		if diff := cmp.Diff(got, st); diff != "" {
			t.Errorf("status round trip (-got +want):\n%s", diff)
		}
	}
}

func TestListObjectsPagesAndFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	desired := fleet(25, 12)
	converge(t, s, "1", desired)

	var certNames []string
	for k := range desired {
		if k.Kind == spec.KindCertificate {
			certNames = append(certNames, k.Name)
		}
	}
	sort.Strings(certNames)

	// Pages of one kind.
	var got []string
	q := store.ObjectQuery{Kind: spec.KindCertificate, Limit: 10}
	pages := 0
	for {
		page, next, err := s.ListObjects(ctx, q)
		if err != nil {
			t.Fatalf("ListObjects: %v", err)
		}
		pages++
		got = append(got, namesOf(page)...)
		if next == "" {
			break
		}
		q.After = next
	}
	if diff := cmp.Diff(got, certNames); diff != "" || pages != 3 {
		t.Errorf("paged certificates in %d pages (want 3) (-got +want):\n%s", pages, diff)
	}

	// Pages across kinds.
	if all := listAllPaged(t, s, 7); len(all) != len(desired) {
		t.Errorf("paging across kinds returned %d objects, want %d", len(all), len(desired))
	}

	tests := []struct {
		name string
		q    store.ObjectQuery
		want []string
	}{
		{"label", store.ObjectQuery{Kind: spec.KindCertificate, Labels: map[string]string{"team": "team-3"}}, []string{"svc-00003"}},
		{"labels and kind", store.ObjectQuery{Kind: spec.KindAgent, Labels: map[string]string{"role": "web", "rack": "1"}}, []string{"web-00001"}},
		{"label, no match", store.ObjectQuery{Labels: map[string]string{"team": "nobody"}}, nil},
		{"prefix", store.ObjectQuery{Kind: spec.KindCertificate, NamePrefix: "svc-0001"},
			[]string{"svc-00010", "svc-00011", "svc-00012", "svc-00013", "svc-00014", "svc-00015", "svc-00016", "svc-00017", "svc-00018", "svc-00019"}},
		{"prefix and after", store.ObjectQuery{Kind: spec.KindCertificate, NamePrefix: "svc-0002", After: "svc-00022"},
			[]string{"svc-00023", "svc-00024"}},
		{"prefix across kinds", store.ObjectQuery{NamePrefix: "web-0001"}, []string{"web-00010", "web-00011"}},
		{"non-ASCII prefix", store.ObjectQuery{NamePrefix: "ü"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, next, err := s.ListObjects(ctx, tt.q)
			if err != nil {
				t.Fatalf("ListObjects: %v", err)
			}
			if diff := cmp.Diff(namesOf(page), tt.want); diff != "" || next != "" {
				t.Errorf("ListObjects(%+v) next %q (-got +want):\n%s", tt.q, next, diff)
			}
		})
	}

	if _, _, err := s.ListObjects(ctx, store.ObjectQuery{After: "no-kind"}); err == nil {
		t.Error("ListObjects with a kindless cursor and no kind: got nil error")
	}
}

func TestGetObjectNotFound(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	_, err := s.GetObject(context.Background(), spec.KindCertificate, "missing")
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetObject of a missing object: got %v, want ErrNotFound", err)
	}
}

func TestListRevisionsBoundsActions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	converge(t, s, "1", fleet(store.MaxActionsPerRevision+100, 0))
	revs, err := s.ListRevisions(ctx, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 1 || len(revs[0].Actions) != store.MaxActionsPerRevision {
		t.Fatalf("got %d revisions, the first with %d actions; want 1 with %d",
			len(revs), len(revs[0].Actions), store.MaxActionsPerRevision)
	}
	if first := revs[0].Actions[0]; first.Kind != spec.KindIssuer {
		t.Errorf("first action %+v, want the issuer (plan order)", first)
	}
}

func TestLeaderLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.DB(t)
	opt := store.Options{LeaseTTL: time.Second}
	s1, s2 := openStoreWith(t, url, opt), openStoreWith(t, url, opt)

	l1, ok, err := s1.TryLeader(ctx)
	if err != nil || !ok {
		t.Fatalf("first TryLeader = %v, %v; want leadership", ok, err)
	}
	if _, ok, err := s2.TryLeader(ctx); err != nil || ok {
		t.Fatalf("second TryLeader while the first leads = %v, %v; want refused", ok, err)
	}
	// The lease is renewed: it outlives its TTL while its holder is alive.
	admin := adminPool(t, s1)
	waitRenewed(t, admin)
	waitRenewed(t, admin)
	select {
	case <-l1.Done():
		t.Fatal("a renewed lease ended")
	default:
	}
	if _, ok, err := s2.TryLeader(ctx); err != nil || ok {
		t.Fatalf("TryLeader after the TTL of a renewed lease = %v, %v; want refused", ok, err)
	}
	l1.Release()
	l1.Release() // idempotent
	waitClosed(t, l1.Done(), "released lease")

	// A release frees the lease at once, and the new term has a higher epoch.
	l2, ok, err := s2.TryLeader(ctx)
	if err != nil || !ok {
		t.Fatalf("TryLeader after release = %v, %v; want leadership", ok, err)
	}
	if l2.Fence().Epoch <= l1.Fence().Epoch || l2.Fence().Holder == l1.Fence().Holder {
		t.Fatalf("fences %v then %v: want another holder and a higher epoch", l1.Fence(), l2.Fence())
	}
	// Cutting the leader's connections is no loss of leadership: the next
	// renewal reconnects.
	if _, err := admin.Exec(ctx,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		 WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	waitRenewed(t, admin)
	select {
	case <-l2.Done():
		t.Fatal("a lease ended after its connections were cut, though renewals can reconnect")
	default:
	}

	// A leader whose renewals stop (a frozen process) loses the lease once it
	// expires: here the renewal is overtaken by ageing the lease directly.
	if _, err := admin.Exec(ctx, "UPDATE leader_lease SET expires_at = clock_timestamp()"); err != nil {
		t.Fatal(err)
	}
	// s1's pooled connections were cut too: the first use of each fails.
	var l3 *store.Lease
	for range 10 {
		if l3, ok, err = s1.TryLeader(ctx); err == nil {
			break
		}
	}
	if err != nil || !ok {
		t.Fatalf("TryLeader after the lease expired = %v, %v; want leadership", ok, err)
	}
	waitClosed(t, l2.Done(), "lease taken over by another replica")
	l2.Release()

	leaderCtx, cancel := context.WithCancel(ctx)
	l3.Release()
	l4, ok, err := s1.TryLeader(leaderCtx)
	if err != nil || !ok {
		t.Fatalf("TryLeader after release = %v, %v; want leadership", ok, err)
	}
	cancel()
	waitClosed(t, l4.Done(), "lease whose context ended")
	if l, ok, err := s2.TryLeader(ctx); err != nil || !ok {
		t.Fatalf("TryLeader after the context ended = %v, %v; want leadership", ok, err)
	} else {
		l.Release()
	}
}

// waitRenewed waits until the lease's expiry moves forward: a renewal.
func waitRenewed(t *testing.T, admin *pgxpool.Pool) {
	t.Helper()
	expiry := func() time.Time {
		var at time.Time
		// The admin pool's own connections may have been cut: retry.
		for range 3 {
			if err := admin.QueryRow(context.Background(), "SELECT expires_at FROM leader_lease").Scan(&at); err == nil {
				return at
			}
		}
		t.Fatal("read the lease")
		return at
	}
	first := expiry()
	testkit.WaitFor(t, 10*time.Second, "a renewal of the lease", func() bool { return expiry().After(first) })
}

// TestStaleLeaderIsFenced: every write of desired state made with the fence
// of a lost lease fails with ErrFenced and changes nothing.
func TestStaleLeaderIsFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.DB(t)
	s1, s2 := openStore(t, url), openStore(t, url)
	old, ok, err := s1.TryLeader(ctx)
	if err != nil || !ok {
		t.Fatalf("TryLeader = %v, %v", ok, err)
	}
	stale := old.Fence()
	desired := fleet(3, 1)
	plan := reconcile.Compute(desired, nil)
	if _, err := s1.Apply(ctx, stale, revision("1"), plan, appliedStatus(revision("1"))); err != nil {
		t.Fatalf("Apply as the leader: %v", err)
	}
	old.Release()
	now, ok, err := s2.TryLeader(ctx)
	if err != nil || !ok {
		t.Fatalf("TryLeader = %v, %v", ok, err)
	}
	defer now.Release()
	before := listAll(t, s1)
	statusBefore, err := s1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := reconcile.Compute(fleet(5, 2), hashesOf(desired))
	writes := map[string]func() error{
		"Apply": func() error {
			_, err := s1.Apply(ctx, stale, revision("2"), next, appliedStatus(revision("2")))
			return err
		},
		"RecordAttempt": func() error {
			_, err := s1.RecordAttempt(ctx, stale, revision("3"), state.OutcomeInvalid,
				spec.ErrorList{{File: "a.yaml", Line: 1, Message: "bad"}}, appliedStatus(revision("3")))
			return err
		},
		"SetStatus": func() error { return s1.SetStatus(ctx, stale, appliedStatus(revision("4"))) },
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, store.ErrFenced) {
			t.Errorf("%s with a stale fence: got %v, want ErrFenced", name, err)
		}
	}
	if diff := cmp.Diff(before, listAll(t, s1)); diff != "" {
		t.Errorf("objects changed by fenced writes (-before +after):\n%s", diff)
	}
	statusAfter, err := s1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(statusBefore, statusAfter); diff != "" {
		t.Errorf("status changed by fenced writes:\n%s", diff)
	}
	if revs, err := s1.ListRevisions(ctx, 10, 0); err != nil || len(revs) != 1 {
		t.Errorf("revisions after fenced writes: %d (%v), want 1", len(revs), err)
	}
}

// TestFrozenApplyCannotCommitAfterTakeover: a leader frozen inside its apply
// transaction, after the fence check, holds the lease row; the session
// timeout ends its transaction, the other replica takes over, and the frozen
// transaction's commit fails without writing anything.
func TestFrozenApplyCannotCommitAfterTakeover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.DB(t)
	opt := store.Options{LeaseTTL: time.Second, IdleInTransactionTimeout: time.Second, LockTimeout: 500 * time.Millisecond}
	s1, s2 := openStoreWith(t, url, opt), openStoreWith(t, url, opt)
	l1, ok, err := s1.TryLeader(ctx)
	if err != nil || !ok {
		t.Fatalf("TryLeader = %v, %v", ok, err)
	}
	frozen, thaw := make(chan struct{}), make(chan struct{})
	store.SetBeforeCommit(s1, func(context.Context, pgx.Tx) error {
		close(frozen)
		<-thaw
		return nil
	})
	applied := make(chan error, 1)
	go func() {
		_, err := s1.Apply(ctx, l1.Fence(), revision("1"), reconcile.Compute(fleet(3, 1), nil), appliedStatus(revision("1")))
		applied <- err
	}()
	<-frozen
	l1.Release() // stands for the renewals a frozen process does not make
	var l2 *store.Lease
	testkit.WaitFor(t, 10*time.Second, "a takeover from the frozen apply", func() bool {
		l, ok, err := s2.TryLeader(ctx)
		l2 = l
		return err == nil && ok
	})
	defer l2.Release()
	close(thaw)
	if err := <-applied; err == nil {
		t.Fatal("the frozen apply committed after another replica took the lease")
	}
	if objs := listAll(t, s2); len(objs) != 0 {
		t.Errorf("%d objects written by the frozen apply, want none", len(objs))
	}
}

// assertHashes checks that both hash views of the store equal the desired hashes.
func assertHashes(t *testing.T, s *store.Store, desired map[spec.Key]*spec.Object) {
	t.Helper()
	want := make(map[spec.Key]string, len(desired))
	for k, o := range desired {
		want[k] = o.Hash()
	}
	stored, err := s.StoredHashes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stored, want); diff != "" {
		t.Errorf("StoredHashes (-got +want):\n%s", diff)
	}
	content, drifted, err := s.ContentHashes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(content, want); diff != "" {
		t.Errorf("ContentHashes (-got +want):\n%s", diff)
	}
	if drifted != 0 {
		t.Errorf("ContentHashes: %d rows drifted, want 0", drifted)
	}
}

// adminPool is a separate connection pool on the store's database, for
// out-of-band edits.
func adminPool(t testing.TB, s *store.Store) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), store.URL(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Done not closed", what)
	}
}

func actionsOf(p state.Plan) []state.ActionRecord {
	var out []state.ActionRecord
	for _, c := range p.Changes {
		out = append(out, state.ActionRecord{Action: c.Action, Kind: c.Key.Kind, Name: c.Key.Name})
	}
	return out
}

func namesOf(objs []store.StoredObject) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Name)
	}
	return out
}

func revisionIDs(revs []state.RevisionRecord) []int64 {
	var out []int64
	for _, r := range revs {
		out = append(out, r.ID)
	}
	return out
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return cmp.Equal(x, y)
}

var ignoreAppliedAt = cmp.FilterPath(func(p cmp.Path) bool {
	return p.Last().String() == ".AppliedAt"
}, cmp.Ignore())
