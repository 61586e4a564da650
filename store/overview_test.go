package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

func TestOverviewAggregatesTheFleet(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC) // a Wednesday
	converge(t, s, "1", desiredOf(issuer("internal-ca"),
		agent("web-01", nil), agent("web-02", nil), agent("web-03", nil),
		cert("shop", nil, "shop.example.com"), cert("blog", nil, "blog.example.com"),
		cert("api", nil, "api.example.com"), cert("idle", nil, "idle.example.com")))

	issue := func(certName, agentName, serial string, notAfter time.Time) {
		t.Helper()
		v := version(certName, agentName, serial, now.Add(-time.Hour))
		v.NotAfter = notAfter
		if _, err := s.RecordIssuance(ctx, store.Issuance{Version: v, RenewAt: notAfter.Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	report := func(certName, agentName, serial string, result state.DeploymentState, msg string) {
		t.Helper()
		if _, err := s.RecordReport(ctx, store.DeploymentReport{Certificate: certName, Agent: agentName, SpecHash: "h1",
			Serial: serial, Result: result, Error: msg, At: now}); err != nil {
			t.Fatal(err)
		}
	}
	// shop: installed on web-01 (ends in 3 days) and web-02 (in 20 days).
	issue("shop", "web-01", "01", now.Add(3*24*time.Hour))
	report("shop", "web-01", "01", state.DeploymentInstalled, "")
	issue("shop", "web-02", "02", now.Add(20*24*time.Hour))
	report("shop", "web-02", "02", state.DeploymentInstalled, "")
	// blog: installed on web-01, rolled back on web-02: worst is rolled-back.
	issue("blog", "web-01", "03", now.Add(60*24*time.Hour))
	report("blog", "web-01", "03", state.DeploymentInstalled, "")
	issue("blog", "web-02", "04", now.Add(60*24*time.Hour))
	report("blog", "web-02", "04", state.DeploymentRolledBack, "reload: exit status 1")
	// api: issued, not reported; its deployment on a removed agent is ignored.
	issue("api", "web-03", "05", now.Add(90*24*time.Hour))
	issue("api", "gone", "06", now.Add(24*time.Hour))
	report("api", "gone", "06", state.DeploymentFailed, "disk full")
	// idle: nothing (pending).
	if err := s.RecordAgentsSeen(ctx, []store.AgentSeen{{Name: "web-01", LastSeen: now}, {Name: "web-02", LastSeen: now.Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}

	ov, err := s.Overview(ctx, store.OverviewQuery{Now: now, ExpiringBefore: now.Add(30 * 24 * time.Hour),
		OfflineBefore: now.Add(-5 * time.Minute), Weeks: 4, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if ov.Certificates != 4 || ov.Agents != 3 {
		t.Errorf("counts = %d certificates, %d agents; want 4, 3", ov.Certificates, ov.Agents)
	}
	want := map[state.DeploymentState]int{"installed": 1, "rolled-back": 1, "issued": 1, "pending": 1}
	if len(ov.CertificatesByState) != len(want) {
		t.Errorf("by state = %v, want %v", ov.CertificatesByState, want)
	}
	for k, n := range want {
		if ov.CertificatesByState[k] != n {
			t.Errorf("by state = %v, want %v", ov.CertificatesByState, want)
		}
	}
	if ov.ExpiringTotal != 2 || len(ov.Expiring) != 2 || ov.Expiring[0].Agent != "web-01" || ov.Expiring[0].Serial != "01" ||
		ov.Expiring[1].Agent != "web-02" {
		t.Errorf("expiring = %d %+v", ov.ExpiringTotal, ov.Expiring)
	}
	if ov.FailingTotal != 1 || len(ov.Failing) != 1 || ov.Failing[0].Certificate != "blog" ||
		ov.Failing[0].State != state.DeploymentRolledBack || ov.Failing[0].LastError != "reload: exit status 1" {
		t.Errorf("failing = %d %+v", ov.FailingTotal, ov.Failing)
	}
	if ov.OfflineTotal != 2 || len(ov.Offline) != 2 || ov.Offline[0].Name != "web-03" || ov.Offline[0].LastSeen != nil ||
		ov.Offline[1].Name != "web-02" {
		t.Errorf("offline = %d %+v", ov.OfflineTotal, ov.Offline)
	}
	monday := time.Date(2029, 12, 31, 0, 0, 0, 0, time.UTC)
	if len(ov.Timeline) != 4 || !ov.Timeline[0].Week.Equal(monday) {
		t.Fatalf("timeline = %+v, want 4 weeks from %v", ov.Timeline, monday)
	}
	// shop on web-01 ends on Jan 5 (week 0), on web-02 on Jan 22 (week 3);
	// blog on web-02 was rolled back: nothing of it is installed.
	for i, n := range []int{1, 0, 0, 1} {
		if ov.Timeline[i].Count != n {
			t.Errorf("timeline week %d = %d, want %d (%+v)", i, ov.Timeline[i].Count, n, ov.Timeline)
		}
	}

	// A limit of one cuts the lists, not the totals.
	ov, err = s.Overview(ctx, store.OverviewQuery{Now: now, ExpiringBefore: now.Add(30 * 24 * time.Hour),
		OfflineBefore: now.Add(-5 * time.Minute), Weeks: 1, Limit: 1})
	if err != nil || len(ov.Expiring) != 1 || ov.ExpiringTotal != 2 || len(ov.Offline) != 1 || ov.OfflineTotal != 2 {
		t.Errorf("limit 1: %+v, %v", ov, err)
	}
}

func TestOverviewOfAnEmptyStore(t *testing.T) {
	ov, err := newStore(t).Overview(context.Background(), store.OverviewQuery{Now: time.Now(), Weeks: 2, Limit: 5})
	if err != nil || ov.Certificates != 0 || len(ov.CertificatesByState) != 0 || ov.Expiring == nil ||
		len(ov.Failing) != 0 || len(ov.Offline) != 0 || len(ov.Timeline) != 2 {
		t.Fatalf("empty overview = %+v, %v", ov, err)
	}
}

func TestCertificateVersionsNewestFirst(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, serial := range []string{"01", "02", "03"} {
		v := version("shop", "web-01", serial, now.Add(time.Duration(i)*time.Hour))
		if _, err := s.RecordIssuance(ctx, store.Issuance{Version: v, RenewAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RecordIssuance(ctx, store.Issuance{Version: version("blog", "web-01", "09", now), RenewAt: now}); err != nil {
		t.Fatal(err)
	}
	vs, err := s.CertificateVersions(ctx, "shop", 2)
	if err != nil || len(vs) != 2 || vs[0].Serial != "03" || vs[1].Serial != "02" || vs[0].CertPEM != "" ||
		vs[0].Agent != "web-01" || vs[0].Issuer != "internal-ca" {
		t.Fatalf("versions = %+v, %v", vs, err)
	}
	if vs, err := s.CertificateVersions(ctx, "nothing", 5); err != nil || len(vs) != 0 || vs == nil {
		t.Fatalf("versions of an unknown certificate = %#v, %v", vs, err)
	}
}
