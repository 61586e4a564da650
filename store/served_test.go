package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// served reads the Served block of shop@web-01 as the read API does.
func served(t *testing.T, s *store.Store) *state.Served {
	t.Helper()
	deps, err := s.CertificateDeployments(context.Background(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deps {
		if d.Agent == "web-01" {
			return d.Served
		}
	}
	t.Fatal("no deployment shop@web-01")
	return nil
}

// TestServedMismatchLifecycle: the served columns record what the agent
// saw; the mismatch starts at the first check serving another serial than
// the installed one, stays through further mismatching and failed checks,
// and ends when the installed serial is served again, or when a new
// installation is reported.
func TestServedMismatchLifecycle(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	install := func(serial string, at time.Time) {
		t.Helper()
		if _, err := s.RecordIssuance(ctx, store.Issuance{Version: version("shop", "web-01", serial, at), RenewAt: at}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RecordReport(ctx, store.DeploymentReport{Certificate: "shop", Agent: "web-01", SpecHash: "h1", Serial: serial,
			Result: state.DeploymentInstalled, At: at}); err != nil {
			t.Fatal(err)
		}
	}
	record := func(c store.ServedCheck) int {
		t.Helper()
		c.Certificate = "shop"
		n, err := s.RecordServed(ctx, "web-01", []store.ServedCheck{c})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	install("01", now)
	if got := served(t, s); got != nil {
		t.Fatalf("served before any check = %+v, want nil", got)
	}
	old := store.ServedCheck{Serial: "01", NotBefore: now, NotAfter: now.Add(time.Hour)}

	old.CheckedAt = now.Add(time.Minute)
	record(old)
	if got := served(t, s); got.Serial != "01" || !got.NotAfter.Equal(now.Add(time.Hour)) || !got.CheckedAt.Equal(old.CheckedAt) ||
		!got.MismatchSince.IsZero() || got.Error != "" {
		t.Fatalf("served = %+v, want 01 without mismatch", got)
	}

	install("02", now.Add(2*time.Minute)) // renewed on disk; the service keeps serving 01
	old.CheckedAt = now.Add(10 * time.Minute)
	record(old)
	if got := served(t, s); got.Serial != "01" || !got.MismatchSince.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("served = %+v, want a mismatch since 10m", got)
	}
	old.CheckedAt = now.Add(20 * time.Minute)
	record(old)
	record(store.ServedCheck{Error: "dial tcp: connection refused", CheckedAt: now.Add(30 * time.Minute)})
	if got := served(t, s); got.Serial != "01" || got.Error != "dial tcp: connection refused" ||
		!got.CheckedAt.Equal(now.Add(30*time.Minute)) || !got.MismatchSince.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("served = %+v, want the mismatch since 10m kept through later checks, with the error", got)
	}
	// A check older than the one recorded changes nothing.
	if n := record(store.ServedCheck{Serial: "02", NotBefore: now, NotAfter: now.Add(time.Hour), CheckedAt: now.Add(25 * time.Minute)}); n != 0 {
		t.Errorf("an older check updated %d rows", n)
	}
	if got := served(t, s); got.Serial != "01" || got.MismatchSince.IsZero() {
		t.Fatalf("served after an older check = %+v", got)
	}

	cur := store.ServedCheck{Serial: "02", NotBefore: now, NotAfter: now.Add(2 * time.Hour), CheckedAt: now.Add(40 * time.Minute)}
	record(cur)
	if got := served(t, s); got.Serial != "02" || !got.MismatchSince.IsZero() || got.Error != "" || !got.NotAfter.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("served = %+v, want 02 matching", got)
	}

	// A new mismatch is cleared by the next installation.
	old.CheckedAt = now.Add(50 * time.Minute)
	record(old)
	install("03", now.Add(55*time.Minute))
	if got := served(t, s); !got.MismatchSince.IsZero() || got.Serial != "01" {
		t.Fatalf("served after installing 03 = %+v, want the mismatch cleared", got)
	}

	// Checks of certificates without a deployment, or of another agent's,
	// change nothing.
	n, err := s.RecordServed(ctx, "web-02", []store.ServedCheck{{Certificate: "shop", Serial: "09", CheckedAt: now.Add(time.Hour),
		NotBefore: now, NotAfter: now}})
	if err != nil || n != 0 {
		t.Errorf("RecordServed for web-02 = %d, %v; want 0 rows", n, err)
	}
	if got := served(t, s); got.Serial != "01" {
		t.Errorf("another agent's check changed web-01's: %+v", got)
	}
}

// TestServedChecksTakeNoChangeSeq: the agent API's snapshot follows
// change_seq; a served check must not make every replica re-read the row.
func TestServedChecksTakeNoChangeSeq(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	d, err := s.RecordIssuance(ctx, store.Issuance{Version: version("shop", "web-01", "01", now), RenewAt: now})
	if err != nil {
		t.Fatal(err)
	}
	_, mark, err := s.DeploymentsSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordServed(ctx, "web-01", []store.ServedCheck{{Certificate: "shop", Serial: "01", NotBefore: now, NotAfter: now,
		CheckedAt: now}}); err != nil {
		t.Fatal(err)
	}
	rows, _, err := s.DeploymentsSince(ctx, mark)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.ChangeSeq != d.ChangeSeq {
			t.Errorf("after a served check the row's change_seq is %d, was %d", r.ChangeSeq, d.ChangeSeq)
		}
	}
}
