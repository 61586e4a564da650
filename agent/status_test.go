package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/testkit"
)

// TestSyncNowEndsTheWait: with an hour between polls, only SyncNow can
// bring the next pass, and it does at once.
func TestSyncNowEndsTheWait(t *testing.T) {
	e := newEnv(t)
	e.cfg.PollInterval = time.Hour
	a := e.newAgent()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	polls := func() int { return len(e.srv.arrivalsOf("GET", agentproto.PathAssignments)) }
	testkit.WaitFor(t, 20*time.Second, "the first pass to install", func() bool {
		reports, _, _, _ := e.srv.snapshot()
		return len(reports) > 0 && reports[0].Result == agentproto.ResultInstalled
	})
	testkit.WaitFor(t, 10*time.Second, "the first pass to end", func() bool {
		st, err := ReadStatus(e.stateDir)
		return err == nil && st.LastSync != nil
	})
	before := polls()
	a.SyncNow()
	a.SyncNow() // joins the pending request
	testkit.WaitFor(t, 10*time.Second, "a poll after SyncNow", func() bool { return polls() > before })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

// TestReadStatus reads what a pass leaves in the state directory, and
// refuses a missing directory or a corrupt state file.
func TestReadStatus(t *testing.T) {
	e := newEnv(t)
	if err := os.MkdirAll(e.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(e.stateDir)
	if err != nil || len(st.Certificates) != 0 || st.LastSync != nil {
		t.Fatalf("before any pass: %+v, %v", st, err)
	}
	a := e.newAgent()
	e.sync(a)
	st, err = ReadStatus(e.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Certificates) != 1 {
		t.Fatalf("certificates: %+v", st.Certificates)
	}
	c := st.Certificates[0]
	if c.Name != "shop" || c.Serial == "" || c.NotAfter.Before(e.clock.Now()) || c.InstalledAt.IsZero() || c.Failures != 0 {
		t.Errorf("installed certificate: %+v", c)
	}
	if st.LastSync == nil || st.LastSync.Error != "" || !st.LastSync.At.Equal(e.clock.Now().UTC()) {
		t.Errorf("last sync: %+v", st.LastSync)
	}
	if st.LastReport == nil || st.LastReport.Certificate != "shop" || st.LastReport.Result != agentproto.ResultInstalled {
		t.Errorf("last report: %+v", st.LastReport)
	}
	if st.InterruptedInstall || len(st.PendingKeys) != 0 {
		t.Errorf("after a clean install: %+v", st)
	}

	// A failing pass is recorded with its error.
	e.srv.Close()
	_ = a.SyncOnce(t.Context())
	if st, _ = ReadStatus(e.stateDir); st.LastSync == nil || st.LastSync.Error == "" {
		t.Errorf("last sync after a failed pass: %+v", st.LastSync)
	}

	if _, err := ReadStatus(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing state dir: no error")
	}
	corrupt := t.TempDir()
	if err := os.WriteFile(filepath.Join(corrupt, "state.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStatus(corrupt); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("a corrupt state: %v", err)
	}
}
