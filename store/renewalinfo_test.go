package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// ariVersion is a version of cert for agent issued at now, valid for 90
// days, with the renewal window [start, end) (none when start is zero).
func ariVersion(cert, agent, serial string, now, start, end time.Time) state.CertificateVersion {
	v := version(cert, agent, serial, now)
	v.Issuer, v.NotAfter = "acme", now.Add(90*24*time.Hour)
	if !start.IsZero() {
		v.RenewalWindow = &state.RenewalWindow{Start: start, End: end}
	}
	return v
}

func issue(t *testing.T, s *store.Store, v state.CertificateVersion, renewAt time.Time) state.Deployment {
	t.Helper()
	d, err := s.RecordIssuance(context.Background(), store.Issuance{Version: v, RenewAt: renewAt})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func dueNames(t *testing.T, s *store.Store, now time.Time, limit int) []string {
	t.Helper()
	due, err := s.DueRenewalInfo(context.Background(), now, 24*time.Hour, limit)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range due {
		names = append(names, d.Certificate+"/"+d.Agent+"/"+d.Serial)
	}
	return names
}

// Due are the current, unexpired versions with a window, a day after
// their last check or at the next check recorded, longest overdue first,
// at most limit of them.
func TestDueRenewalInfo(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	start, end := t0.Add(60*24*time.Hour), t0.Add(62*24*time.Hour)

	issue(t, s, ariVersion("shop", "web-01", "01", t0, start, end), start)
	issue(t, s, ariVersion("shop", "web-02", "02", t0.Add(time.Hour), start, end), start)
	issue(t, s, ariVersion("local", "web-01", "03", t0, time.Time{}, time.Time{}), start) // no window
	expired := ariVersion("old", "web-01", "04", t0, t0.Add(time.Hour), t0.Add(2*time.Hour))
	expired.NotAfter = t0.Add(3 * time.Hour)
	issue(t, s, expired, t0.Add(time.Hour))
	issue(t, s, ariVersion("api", "web-01", "05", t0, start, end), start)
	replacement := issue(t, s, ariVersion("api", "web-01", "06", t0.Add(2*time.Hour), start, end), start) // 05 is no longer current

	if got := dueNames(t, s, t0.Add(23*time.Hour), 10); len(got) != 0 {
		t.Errorf("due after 23h: %v; want none (checked at issuance)", got)
	}
	want := []string{"shop/web-01/01", "shop/web-02/02", "api/web-01/06"}
	if got := dueNames(t, s, t0.Add(27*time.Hour), 10); !slices.Equal(got, want) {
		t.Errorf("due after 27h: %v; want %v (current, windowed, unexpired; oldest check first)", got, want)
	}
	if got := dueNames(t, s, t0.Add(27*time.Hour), 2); !slices.Equal(got, want[:2]) {
		t.Errorf("due after 27h, limit 2: %v; want %v", got, want[:2])
	}
	// A recorded next check wins over the day, earlier or later.
	if err := s.DeferRenewalInfo(ctx, replacement.Current.ID, t0.Add(4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := dueNames(t, s, t0.Add(5*time.Hour), 10); !slices.Equal(got, []string{"api/web-01/06"}) {
		t.Errorf("due after 5h: %v; want api's version, deferred to 4h", got)
	}
	if err := s.DeferRenewalInfo(ctx, replacement.Current.ID, t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := dueNames(t, s, t0.Add(27*time.Hour), 10); !slices.Equal(got, want[:2]) {
		t.Errorf("due after 27h once api's is deferred to 48h: %v; want %v", got, want[:2])
	}
	due, err := s.DueRenewalInfo(ctx, t0.Add(27*time.Hour), 24*time.Hour, 1)
	if err != nil || len(due) != 1 {
		t.Fatalf("DueRenewalInfo: %+v %v", due, err)
	}
	d := due[0]
	if d.Issuer != "acme" || d.CertPEM != "leaf" || !d.Window.Start.Equal(start) || !d.Window.End.Equal(end) ||
		!d.CheckedAt.Equal(t0) || !d.RenewAt.Equal(start) || d.VersionID == 0 {
		t.Errorf("due version: %+v", d)
	}
}

// Recording an unchanged window writes the version only: the deployment
// keeps its change_seq and the change feed has nothing new. A moved
// window moves renew_at with a new change_seq, seen through
// DeploymentsSince; a renewal already due is not put off; a version no
// longer current moves nothing.
func TestRecordRenewalInfo(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	start, end := t0.Add(60*24*time.Hour), t0.Add(62*24*time.Hour)
	renewAt := start.Add(time.Hour)
	d := issue(t, s, ariVersion("shop", "web-01", "01", t0, start, end), renewAt)
	_, mark, err := s.DeploymentsSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	changed := func() []state.Deployment {
		rows, _, err := s.DeploymentsSince(ctx, mark)
		if err != nil {
			t.Fatal(err)
		}
		return slices.DeleteFunc(rows, func(r state.Deployment) bool { return r.ChangeSeq == d.ChangeSeq })
	}

	now := t0.Add(25 * time.Hour)
	moved, err := s.RecordRenewalInfo(ctx, store.RenewalInfoCheck{VersionID: d.Current.ID,
		Window: state.RenewalWindow{Start: start, End: end}, CheckedAt: now, NextCheck: now.Add(6 * time.Hour)})
	if err != nil || moved {
		t.Fatalf("unchanged check: moved %v, %v", moved, err)
	}
	if rows := changed(); len(rows) != 0 {
		t.Errorf("an unchanged window wrote deployments: %+v", rows)
	}
	if got := dueNames(t, s, now.Add(5*time.Hour), 10); len(got) != 0 {
		t.Errorf("due 5h after a check asking for 6h: %v", got)
	}
	if got := dueNames(t, s, now.Add(6*time.Hour), 10); len(got) != 1 {
		t.Errorf("due 6h after a check asking for 6h: %v; want it", got)
	}

	// The CA moves the window earlier.
	newStart, newEnd := t0.Add(10*24*time.Hour), t0.Add(11*24*time.Hour)
	newRenew := newStart.Add(3 * time.Hour)
	moved, err = s.RecordRenewalInfo(ctx, store.RenewalInfoCheck{VersionID: d.Current.ID,
		Window: state.RenewalWindow{Start: newStart, End: newEnd}, CheckedAt: now, NextCheck: now.Add(24 * time.Hour), RenewAt: newRenew})
	if err != nil || !moved {
		t.Fatalf("moved window: moved %v, %v; want moved", moved, err)
	}
	rows := changed()
	if len(rows) != 1 || !rows[0].RenewAt.Equal(newRenew) || rows[0].ChangeSeq <= d.ChangeSeq ||
		rows[0].Current.RenewalWindow == nil || !rows[0].Current.RenewalWindow.Start.Equal(newStart) {
		t.Fatalf("change feed after a moved window: %+v; want shop with renew_at %s and a new change_seq", rows, newRenew)
	}
	d = rows[0]

	// A renewal already due stays due, whatever the new window says; the
	// new window is announced all the same (it decides whether the
	// renewal is exempt from the CA's rate limits).
	later := newRenew.Add(time.Hour)
	moved, err = s.RecordRenewalInfo(ctx, store.RenewalInfoCheck{VersionID: d.Current.ID,
		Window: state.RenewalWindow{Start: t0.Add(80 * 24 * time.Hour), End: end}, CheckedAt: later,
		NextCheck: later.Add(24 * time.Hour), RenewAt: t0.Add(81 * 24 * time.Hour)})
	if err != nil || moved {
		t.Fatalf("moving a due renewal later: moved %v, %v; want kept", moved, err)
	}
	ds, err := s.CertificateDeployments(ctx, "shop")
	if err != nil || len(ds) != 1 || !ds[0].RenewAt.Equal(newRenew) || ds[0].ChangeSeq <= d.ChangeSeq ||
		!ds[0].Current.RenewalWindow.Start.Equal(t0.Add(80*24*time.Hour)) {
		t.Fatalf("after a check of a due renewal: %+v %v; want renew_at kept at %s, the window recorded and announced", ds, err, newRenew)
	}

	// A version replaced meanwhile: its window is recorded, the
	// deployment (now the new version's) is not touched.
	old := d.Current.ID
	d = issue(t, s, ariVersion("shop", "web-01", "02", later, start, end), renewAt)
	moved, err = s.RecordRenewalInfo(ctx, store.RenewalInfoCheck{VersionID: old,
		Window: state.RenewalWindow{Start: newStart, End: newEnd}, CheckedAt: later, NextCheck: later.Add(time.Hour), RenewAt: later})
	if err != nil || moved {
		t.Fatalf("check of a replaced version: moved %v, %v; want nothing moved", moved, err)
	}
	if ds, _ := s.CertificateDeployments(ctx, "shop"); !ds[0].RenewAt.Equal(renewAt) || ds[0].ChangeSeq != d.ChangeSeq {
		t.Errorf("the deployment moved for a replaced version: %+v", ds[0])
	}
	// An unknown version records nothing and is no error.
	if moved, err := s.RecordRenewalInfo(ctx, store.RenewalInfoCheck{VersionID: 1 << 40, Window: state.RenewalWindow{Start: start, End: end},
		CheckedAt: later, NextCheck: later, RenewAt: later}); err != nil || moved {
		t.Errorf("unknown version: %v, %v", moved, err)
	}
}
