package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/testkit"
	"github.com/certops/certops/textlimit"
)

func TestFirstIssuanceInstallsTheSet(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	e.sync(a)

	reports, issued, _, bodies := e.srv.snapshot()
	if len(issued) != 1 {
		t.Fatalf("issued %d certificates, want 1", len(issued))
	}
	iss := issued[0]
	if len(reports) != 1 || reports[0].Result != agentproto.ResultInstalled || reports[0].Serial != iss.Serial ||
		reports[0].SpecHash != "spec-1" || reports[0].Certificate != "shop" {
		t.Errorf("reports = %+v, want one installed report for serial %s", reports, iss.Serial)
	}
	for _, b := range bodies {
		if strings.Contains(b, "PRIVATE KEY") {
			t.Fatalf("a request body carries a private key: %.200s", b)
		}
	}

	got := e.fileSet()
	if got["cert.pem"] != iss.CertPEM {
		t.Errorf("cert.pem = %q, want the issued leaf", got["cert.pem"])
	}
	if got["chain.pem"] != iss.ChainPEM || got["chain.pem"] != e.srv.caPEM {
		t.Errorf("chain.pem = %q, want the CA", got["chain.pem"])
	}
	if got["fullchain.pem"] != iss.CertPEM+iss.ChainPEM {
		t.Errorf("fullchain.pem = %q, want leaf + chain", got["fullchain.pem"])
	}
	key, err := pki.ParseKeyPEM([]byte(got["key.pem"]))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(iss.CertPEM))
	leaf, _ := x509.ParseCertificate(block.Bytes)
	if !pki.SamePublicKey(leaf.PublicKey, key.Public()) {
		t.Error("key.pem does not match cert.pem")
	}
	for name, want := range map[string]os.FileMode{"cert.pem": 0o644, "chain.pem": 0o644, "fullchain.pem": 0o644, "key.pem": 0o600} {
		fi, err := os.Stat(filepath.Join(e.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	if got, want := e.dirEntries(), []string{"cert.pem", "chain.pem", "fullchain.pem", "key.pem"}; !slices.Equal(got, want) {
		t.Errorf("target dir = %v, want %v (no temps or backups left)", got, want)
	}
	if n := e.reloadCount(); n != 1 {
		t.Errorf("reloaded %d times, want 1", n)
	}

	var st state
	b, err := os.ReadFile(filepath.Join(e.stateDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	cs := st.Certificates["shop"]
	if cs == nil || cs.Serial != iss.Serial || cs.SHA256 != iss.SHA256 || cs.SpecHash != "spec-1" ||
		cs.KeyFile != filepath.Join(e.stateDir, "keys", "shop.key") || cs.InstalledAt.IsZero() {
		t.Errorf("state = %+v", cs)
	}
	for path, want := range map[string]os.FileMode{
		e.stateDir: 0o700, filepath.Join(e.stateDir, "keys"): 0o700, cs.KeyFile: 0o600, e.dir: 0o755,
		filepath.Join(e.stateDir, "state.json"): 0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	if _, err := os.Stat(filepath.Join(e.stateDir, "keys", "shop.pending.key")); !os.IsNotExist(err) {
		t.Errorf("pending key left behind: %v", err)
	}
}

func TestUnchangedPollDoesNoWork(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	e.sync(a)
	e.sync(a) // the assignments now carry Current: a 200 that needs nothing
	before := e.fileSet()
	fi0, _ := os.Stat(e.files.Cert)
	_, _, requests0, _ := e.srv.snapshot()

	e.sync(a)
	reports, issued, requests, _ := e.srv.snapshot()
	if got, want := requests[len(requests0):], []string{"GET /agent/v1/assignments -> 304"}; !slices.Equal(got, want) {
		t.Errorf("second pass requests = %q, want %q", got, want)
	}
	if len(issued) != 1 || len(reports) != 1 || e.reloadCount() != 1 {
		// (the first pass made one of each)
		t.Errorf("second pass did work: %d issued, %d reports, %d reloads", len(issued), len(reports), e.reloadCount())
	}
	fi1, _ := os.Stat(e.files.Cert)
	if !os.SameFile(fi0, fi1) || !maps.Equal(before, e.fileSet()) {
		t.Error("files were rewritten")
	}
}

func TestRenewsAtRenewAt(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	e.sync(a)
	first := e.fileSet()
	var renewAt time.Time
	e.srv.edit("shop", func(as *agentproto.Assignment) { renewAt = as.RenewAt })

	e.clock.Set(renewAt.Add(-time.Second))
	e.sync(a)
	if _, issued, _, _ := e.srv.snapshot(); len(issued) != 1 {
		t.Fatalf("renewed before RenewAt: %d issued", len(issued))
	}

	e.clock.Set(renewAt)
	e.sync(a)
	_, issued, _, _ := e.srv.snapshot()
	if len(issued) != 2 {
		t.Fatalf("issued %d certificates, want 2 after RenewAt", len(issued))
	}
	got := e.fileSet()
	if got["cert.pem"] != issued[1].CertPEM {
		t.Error("cert.pem is not the renewed certificate")
	}
	if got["key.pem"] == first["key.pem"] {
		t.Error("rotationPolicy Always kept the old key")
	}
	if r := e.srv.lastReport(t); r.Result != agentproto.ResultInstalled || r.Serial != issued[1].Serial {
		t.Errorf("last report = %+v", r)
	}
}

func TestRespectsNotBefore(t *testing.T) {
	e := newEnv(t)
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.NotBefore = e.clock.Now().Add(time.Hour) })
	a := e.newAgent()
	e.sync(a)
	if _, issued, _, _ := e.srv.snapshot(); len(issued) != 0 {
		t.Fatalf("issued before NotBefore")
	}
	e.clock.Set(e.clock.Now().Add(time.Hour))
	e.sync(a)
	if _, issued, _, _ := e.srv.snapshot(); len(issued) != 1 {
		t.Fatalf("did not issue after NotBefore")
	}
}

func TestSpecChangeReissues(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	e.sync(a)
	e.srv.edit("shop", func(as *agentproto.Assignment) {
		as.SpecHash = "spec-2"
		as.DNSNames = append(as.DNSNames, "api.shop.example.com")
		as.Current, as.RenewAt = nil, time.Time{}
	})
	e.sync(a)
	_, issued, _, _ := e.srv.snapshot()
	if len(issued) != 2 {
		t.Fatalf("issued %d, want 2", len(issued))
	}
	block, _ := pem.Decode([]byte(e.fileSet()["cert.pem"]))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(leaf.DNSNames, "api.shop.example.com") {
		t.Errorf("installed names = %v, want the new name", leaf.DNSNames)
	}
	if r := e.srv.lastReport(t); r.SpecHash != "spec-2" || r.Result != agentproto.ResultInstalled {
		t.Errorf("last report = %+v", r)
	}
}

func TestRotationNeverKeepsTheKey(t *testing.T) {
	e := newEnv(t)
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Key.RotationPolicy = "Never" })
	a := e.newAgent()
	e.sync(a)
	first := e.fileSet()
	var renewAt time.Time
	e.srv.edit("shop", func(as *agentproto.Assignment) { renewAt = as.RenewAt })
	e.clock.Set(renewAt)
	e.sync(a)
	second := e.fileSet()
	if second["cert.pem"] == first["cert.pem"] {
		t.Fatal("not renewed")
	}
	if second["key.pem"] != first["key.pem"] {
		t.Error("rotationPolicy Never changed the key")
	}

	// A new key type cannot reuse the key.
	e.srv.edit("shop", func(as *agentproto.Assignment) {
		as.SpecHash, as.Key.Algorithm, as.Key.Size, as.Current = "spec-rsa", "RSA", 2048, nil
	})
	e.sync(a)
	key, err := pki.ParseKeyPEM([]byte(e.fileSet()["key.pem"]))
	if err != nil {
		t.Fatal(err)
	}
	if !pki.KeyMatches(key.Public(), agentproto.KeySpec{Algorithm: "RSA", Size: 2048}) {
		t.Errorf("key is %T, want RSA 2048", key)
	}
	_, _, _, bodies := e.srv.snapshot()
	for _, b := range bodies {
		if strings.Contains(b, "PRIVATE KEY") {
			t.Fatal("a request body carries a private key")
		}
	}
}

// A new spec.reissue value is a forced rotation: even with rotationPolicy
// Never, the next certificate has a new key, and the one after it keeps
// that new key again.
func TestReissueRotatesTheKeyDespiteNever(t *testing.T) {
	e := newEnv(t)
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Key.RotationPolicy = "Never" })
	a := e.newAgent()
	e.sync(a)
	first := e.fileSet()
	e.srv.edit("shop", func(as *agentproto.Assignment) {
		as.SpecHash, as.Reissue, as.Current, as.RenewAt = "spec-reissued", "2026-12-05 key compromise", nil, time.Time{}
	})
	e.sync(a)
	second := e.fileSet()
	if second["cert.pem"] == first["cert.pem"] {
		t.Fatal("a new reissue value did not reissue")
	}
	if second["key.pem"] == first["key.pem"] {
		t.Fatal("a new reissue value kept the old key under rotationPolicy Never")
	}
	var renewAt time.Time
	e.srv.edit("shop", func(as *agentproto.Assignment) { renewAt = as.RenewAt })
	e.clock.Set(renewAt)
	e.sync(a)
	if third := e.fileSet(); third["cert.pem"] == second["cert.pem"] || third["key.pem"] != second["key.pem"] {
		t.Error("after the reissue, a renewal under rotationPolicy Never must keep the new key")
	}
}

// A suspended assignment is left alone: not issued when new, not renewed
// when due, its files kept; resuming it renews at once.
func TestSuspendedAssignmentIsLeftAlone(t *testing.T) {
	e := newEnv(t)
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Suspended = true })
	a := e.newAgent()
	e.sync(a)
	if _, issued, _, _ := e.srv.snapshot(); len(issued) != 0 {
		t.Fatalf("issued %d certificates for a suspended assignment", len(issued))
	}
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Suspended = false })
	e.sync(a)
	installed := e.fileSet()
	if installed["cert.pem"] == "" {
		t.Fatal("not installed once resumed")
	}
	var renewAt time.Time
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Suspended, renewAt = true, as.RenewAt })
	e.clock.Set(renewAt.Add(time.Hour))
	e.sync(a)
	if _, issued, _, _ := e.srv.snapshot(); len(issued) != 1 {
		t.Fatalf("issued %d certificates; a suspended assignment due for renewal must not be renewed", len(issued))
	}
	if got := e.fileSet(); got["cert.pem"] != installed["cert.pem"] || got["key.pem"] != installed["key.pem"] {
		t.Fatal("a suspended assignment's files changed")
	}
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Suspended = false })
	e.sync(a)
	if _, issued, _, _ := e.srv.snapshot(); len(issued) != 2 {
		t.Fatalf("issued %d certificates; resuming an assignment due for renewal renews it", len(issued))
	}
}

// renewWith installs a first certificate, then makes renewal due and runs
// one more pass with prepare applied; it returns the first set and the
// pass's error.
func renewWith(t *testing.T, e *env, a *Agent, prepare func()) (map[string]string, error) {
	t.Helper()
	e.sync(a)
	old := e.fileSet()
	var renewAt time.Time
	e.srv.edit("shop", func(as *agentproto.Assignment) { renewAt = as.RenewAt })
	e.clock.Set(renewAt)
	prepare()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return old, a.SyncOnce(ctx)
}

func TestReloadFailureRollsBack(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	old, err := renewWith(t, e, a, func() { e.flag(failNext) })
	if err == nil || !strings.Contains(err.Error(), "reload") {
		t.Fatalf("SyncOnce = %v, want a reload failure", err)
	}
	if !maps.Equal(e.fileSet(), old) {
		t.Error("files are not the previous set after rollback")
	}
	if got, want := e.dirEntries(), []string{"cert.pem", "chain.pem", "fullchain.pem", "key.pem"}; !slices.Equal(got, want) {
		t.Errorf("target dir = %v, want %v", got, want)
	}
	r := e.srv.lastReport(t)
	if r.Result != agentproto.ResultRolledBack || r.Stage != agentproto.StageReload || !strings.Contains(r.Error, "exit status 3") ||
		!strings.Contains(r.Error, "cannot load certificate") {
		t.Errorf("report = %+v, want rolled-back at reload with the command's error", r)
	}
	if n := e.reloadCount(); n != 2 {
		t.Errorf("successful reloads = %d, want 2 (first install, then after the rollback)", n)
	}

	// The failure is not retried on the next pass, but after its backoff.
	reports0, issued0, _, _ := e.srv.snapshot()
	e.sync(a)
	reports1, issued1, _, _ := e.srv.snapshot()
	if len(reports1) != len(reports0) || len(issued1) != len(issued0) {
		t.Error("a failed deployment was retried at once")
	}
	e.clock.Set(e.clock.Now().Add(2 * e.cfg.PollInterval))
	e.sync(a)
	_, issued2, _, _ := e.srv.snapshot()
	if r := e.srv.lastReport(t); r.Result != agentproto.ResultInstalled || r.Serial != issued2[len(issued2)-1].Serial {
		t.Errorf("retry after backoff: report = %+v", r)
	}
	if len(issued2) != len(issued1) {
		t.Errorf("retry issued again (%d → %d) instead of installing the held certificate", len(issued1), len(issued2))
	}
}

func TestReloadTimeoutRollsBackAndKillsTheGroup(t *testing.T) {
	e := newEnv(t)
	e.cfg.ReloadTimeout = 300 * time.Millisecond
	a := e.newAgent()
	start := time.Now()
	old, err := renewWith(t, e, a, func() { e.flag(hangNext) })
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("SyncOnce = %v, want a reload timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	if !maps.Equal(e.fileSet(), old) {
		t.Error("files are not the previous set after rollback")
	}
	r := e.srv.lastReport(t)
	if r.Result != agentproto.ResultRolledBack || r.Stage != agentproto.StageReload {
		t.Errorf("report = %+v", r)
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(e.reloads), "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, fmt.Sprintf("the reload's child %d to end", pid), func() bool { return !processAlive(pid) })
}

// processAlive reports whether pid runs (zombies count as dead).
func processAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func TestVerifyMismatchRollsBack(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	old, err := renewWith(t, e, a, func() { e.tls.Freeze(t, e.files.Fullchain, e.files.Key) })
	if err == nil || !strings.Contains(err.Error(), "verify") {
		t.Fatalf("SyncOnce = %v, want a verify failure", err)
	}
	if !maps.Equal(e.fileSet(), old) {
		t.Error("files are not the previous set after rollback")
	}
	r := e.srv.lastReport(t)
	if r.Result != agentproto.ResultRolledBack || r.Stage != agentproto.StageVerify || !strings.Contains(r.Error, "served certificate sha256") {
		t.Errorf("report = %+v", r)
	}
}

func TestVerifyUnreachableRollsBack(t *testing.T) {
	e := newEnv(t)
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Verify.Address = testkit.ClosedAddr(t) })
	a := e.newAgent()
	err := a.SyncOnce(t.Context())
	if err == nil {
		t.Fatal("SyncOnce succeeded with nothing listening at the verify address")
	}
	if got := e.fileSet(); got["cert.pem"] != "" || got["key.pem"] != "" {
		t.Error("a first install that failed verification left files behind")
	}
	if r := e.srv.lastReport(t); r.Result != agentproto.ResultRolledBack || r.Stage != agentproto.StageVerify {
		t.Errorf("report = %+v", r)
	}
}

func TestFilesLostAreReinstalledWithoutReissue(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	e.sync(a)
	want := e.fileSet()
	os.Remove(e.files.Cert)
	os.Remove(e.files.Key)
	e.sync(a)
	if !maps.Equal(e.fileSet(), want) {
		t.Error("lost files were not restored")
	}
	if _, issued, _, _ := e.srv.snapshot(); len(issued) != 1 {
		t.Errorf("issued %d, want 1 (the key is held: reinstall Current)", len(issued))
	}
	if n := e.reloadCount(); n != 2 {
		t.Errorf("reloads = %d, want 2", n)
	}
}

// TestCrashAtEveryPointOfInstall kills the install after each of its file
// system mutations in turn; a new Agent on the same state dir must find the
// old set or the new set, and then converge to the new one without asking
// for another certificate.
func TestCrashAtEveryPointOfInstall(t *testing.T) {
	for _, tc := range []struct {
		name        string
		firstIssue  bool // no previous set
		failReload  bool // crash inside the rollback instead
		wantOldOnly bool
		layout      string
	}{
		{name: "renewal"},
		{name: "first install", firstIssue: true},
		{name: "rollback after failed reload", failReload: true, wantOldOnly: true},
		{name: "renewal, symlink layout", layout: layoutSymlink},
		{name: "first install, symlink layout", firstIssue: true, layout: layoutSymlink},
		{name: "rollback after failed reload, symlink layout", failReload: true, wantOldOnly: true, layout: layoutSymlink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			points := 0
			for n := 1; n < 100; n++ {
				e := newEnv(t)
				e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files.Layout = tc.layout })
				a := e.newAgent()
				old := e.fileSet()
				if !tc.firstIssue {
					e.sync(a)
					old = e.fileSet()
					var renewAt time.Time
					e.srv.edit("shop", func(as *agentproto.Assignment) { renewAt = as.RenewAt })
					e.clock.Set(renewAt)
				}
				if tc.failReload {
					e.flag(failNext)
				}
				a.crashAt = n
				err := a.SyncOnce(t.Context())
				if !errors.Is(err, errCrash) {
					if points == 0 {
						t.Fatalf("no crash point was hit: %v", err)
					}
					break // past the last mutation
				}
				points++
				_, issued, _, _ := e.srv.snapshot()
				newCert := issued[len(issued)-1].CertPEM

				whole := func(got map[string]string, newOK bool) bool {
					return maps.Equal(got, old) || newOK && got["cert.pem"] == newCert && got["fullchain.pem"] == newCert+e.srv.caPEM &&
						got["chain.pem"] == e.srv.caPEM && keyFits(got["key.pem"], newCert)
				}
				if tc.layout == layoutSymlink && !tc.firstIssue && !whole(e.fileSet(), true) {
					// One rename flips the set: even before recovery it is whole.
					t.Errorf("crash at mutation %d: before recovery the files are a mix: %v", n, summarize(e.fileSet(), old, newCert))
				}

				b := e.newAgent() // recovers
				got := e.fileSet()
				switch {
				case whole(got, !tc.wantOldOnly):
				default:
					t.Fatalf("crash at mutation %d: after recovery the files are a mix: %v", n, summarize(got, old, newCert))
				}
				for _, name := range e.dirEntries() {
					if strings.Contains(name, ".certops-") {
						t.Errorf("crash at mutation %d: leftover %s", n, name)
					}
				}
				if _, err := os.Stat(filepath.Join(e.stateDir, "journal.json")); !os.IsNotExist(err) {
					t.Errorf("crash at mutation %d: journal left after recovery", n)
				}

				// The next pass converges, reusing the held key.
				if tc.failReload {
					os.Remove(filepath.Join(filepath.Dir(e.reloads), failNext)) // when the crash came before the reload
					e.clock.Set(e.clock.Now().Add(time.Hour))                   // past the failure backoff
				}
				e.sync(b)
				_, issued, _, _ = e.srv.snapshot()
				got = e.fileSet()
				if got["cert.pem"] != newCert || !keyFits(got["key.pem"], newCert) {
					t.Errorf("crash at mutation %d: the next pass did not install the new certificate", n)
				}
				if want := 1 + btoi(!tc.firstIssue); len(issued) != want {
					t.Errorf("crash at mutation %d: %d certificates issued, want %d (the pending key survives)", n, len(issued), want)
				}
				if tc.layout == layoutSymlink {
					if v := e.versionDirs(); len(v) != 1 {
						t.Errorf("crash at mutation %d: version directories %v after the next pass, want the current one only", n, v)
					}
				}
			}
			t.Logf("%d crash points", points)
		})
	}
}

func keyFits(keyPEM, certPEM string) bool {
	key, err := pki.ParseKeyPEM([]byte(keyPEM))
	if err != nil {
		return false
	}
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return false
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	return err == nil && pki.SamePublicKey(leaf.PublicKey, key.Public())
}

func summarize(got, old map[string]string, newCert string) map[string]string {
	out := map[string]string{}
	for k, v := range got {
		switch {
		case v == "":
			out[k] = "missing"
		case v == old[k]:
			out[k] = "old"
		case strings.HasPrefix(v, newCert) || keyFits(v, newCert):
			out[k] = "new"
		default:
			out[k] = "other"
		}
	}
	return out
}

func TestServerDownKeepsFiles(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	e.sync(a)
	want := e.fileSet()
	e.srv.Close()
	e.clock.Set(e.clock.Now().Add(365 * 24 * time.Hour)) // even with renewal long overdue
	err := a.SyncOnce(t.Context())
	if err == nil || !isServerTrouble(err) {
		t.Fatalf("SyncOnce = %v, want the server unreachable", err)
	}
	if !maps.Equal(e.fileSet(), want) {
		t.Error("files changed while the server was down")
	}
}

func TestRunRetriesUntilTheServerIsBack(t *testing.T) {
	e := newEnv(t)
	e.srv.set(func(s *protoServer) { s.down = true })
	a := e.newAgent()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	testkit.WaitFor(t, 10*time.Second, "dropped requests", func() bool {
		_, _, _, bodies := e.srv.snapshot()
		return len(bodies) >= 6
	})
	e.srv.set(func(s *protoServer) { s.down = false })
	testkit.WaitFor(t, 10*time.Second, "an installed report", func() bool {
		reports, _, _, _ := e.srv.snapshot()
		return len(reports) > 0 && reports[0].Result == agentproto.ResultInstalled
	})
	// The heartbeat follows the pass that installed.
	testkit.WaitFor(t, 10*time.Second, "a heartbeat", func() bool {
		var heartbeats int
		e.srv.set(func(s *protoServer) { heartbeats = s.heartbeats })
		return heartbeats > 0
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if e.fileSet()["cert.pem"] == "" {
		t.Error("nothing installed")
	}
}

func TestRetryDelayBacksOffWithCap(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	a.backoffBase = time.Second
	transport := &transportError{errors.New("connection refused")}
	prevMax := time.Duration(0)
	for n := 1; n <= 30; n++ {
		d := a.retryDelay(n, transport)
		ceil := min(time.Second<<min(n-1, 20), maxRetryBackoff)
		if d < ceil/2 || d > ceil {
			t.Errorf("failure %d: delay %s, want in [%s, %s]", n, d, ceil/2, ceil)
		}
		prevMax = max(prevMax, d)
	}
	if prevMax > maxRetryBackoff {
		t.Errorf("delay %s above the cap", prevMax)
	}
	if d := a.retryDelay(1, errUnauthorized); d < e.cfg.PollInterval {
		t.Errorf("401 delay %s, want at least the poll interval", d)
	}
	a.retryAt = e.clock.Now().Add(90 * time.Second)
	if d := a.retryDelay(1, transport); d < 90*time.Second {
		t.Errorf("delay %s ignores Retry-After", d)
	}
}

func TestRetryAfterIsRespected(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	e.srv.set(func(s *protoServer) { s.status, s.retryAfter = 503, "120" })
	if err := a.SyncOnce(t.Context()); err == nil {
		t.Fatal("SyncOnce succeeded against 503")
	}
	e.srv.set(func(s *protoServer) { s.status, s.retryAfter = 0, "" })
	_, _, requests0, _ := e.srv.snapshot()
	if err := a.SyncOnce(t.Context()); err == nil || !strings.Contains(err.Error(), "retry in") {
		t.Fatalf("SyncOnce within Retry-After = %v", err)
	}
	if _, _, requests, _ := e.srv.snapshot(); len(requests) != len(requests0) {
		t.Error("requests sent within Retry-After")
	}
	e.clock.Set(e.clock.Now().Add(121 * time.Second))
	e.sync(a)
}

func TestRejectedToken(t *testing.T) {
	e := newEnv(t)
	writeFile(t, e.cfg.TokenFile, "wrong-token\n", 0o600)
	var logs bytes.Buffer
	e.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	e.cfg.PollInterval = 200 * time.Millisecond
	a := e.newAgent()
	err := a.SyncOnce(t.Context())
	if !errors.Is(err, errUnauthorized) {
		t.Fatalf("SyncOnce = %v, want errUnauthorized", err)
	}
	if !strings.Contains(logs.String(), "token rejected") {
		t.Errorf("logs = %q, want \"token rejected\"", logs.String())
	}

	// Run does not spin on 401: between polls it waits at least the poll
	// interval (the backoff alone would be 10ms).
	before := len(e.srv.arrivalsOf("GET", agentproto.PathAssignments))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	const polls = 4
	var at []time.Time
	testkit.WaitFor(t, 10*time.Second, fmt.Sprint(polls, " polls with the rejected token"), func() bool {
		at = e.srv.arrivalsOf("GET", agentproto.PathAssignments)[before:]
		return len(at) >= polls
	})
	cancel()
	<-done
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < e.cfg.PollInterval {
			t.Errorf("poll %d came %v after the one before, want at least the poll interval %v", i+1, gap, e.cfg.PollInterval)
		}
	}
	if strings.Contains(logs.String(), "wrong-token") {
		t.Error("the token was logged")
	}
}

func TestTokenFileErrors(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, content, want string
	}{
		{"absent", "", "token file"},
		{"empty", " \n\t\n", "is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.cfg
			cfg.TokenFile = filepath.Join(t.TempDir(), "token")
			if tc.content != "" {
				writeFile(t, cfg.TokenFile, tc.content, 0o600)
			}
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestOwnerGroupAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	e := newEnv(t)
	e.srv.edit("shop", func(as *agentproto.Assignment) {
		as.Files.Owner, as.Files.Group, as.Files.Mode = "nobody", "nogroup", "0640"
	})
	a := e.newAgent()
	e.sync(a)
	for _, p := range []string{e.files.Cert, e.files.Chain, e.files.Fullchain, e.files.Key} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		want := os.FileMode(0o640)
		if p == e.files.Key {
			want = 0o600 // keys are capped at 0600 whatever files.mode says
		}
		if st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != want {
			t.Errorf("%s: uid %d gid %d mode %v, want nobody:nogroup %v", p, st.Uid, st.Gid, fi.Mode().Perm(), want)
		}
	}
}

func TestOwnerWithoutRootFailsClearly(t *testing.T) {
	e := newEnv(t)
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files.Owner = "root" })
	a := e.newAgent()
	a.geteuid = func() int { return 4242 }
	err := a.SyncOnce(t.Context())
	if err == nil || !strings.Contains(err.Error(), "not root") {
		t.Fatalf("SyncOnce = %v, want a clear not-root error", err)
	}
	if r := e.srv.lastReport(t); r.Result != agentproto.ResultFailed || r.Stage != agentproto.StageInstall {
		t.Errorf("report = %+v", r)
	}
	if names := e.dirEntries(); len(names) != 0 {
		t.Errorf("files written: %v", names)
	}
}

func TestIssueRefusedIsReportedAndBackedOff(t *testing.T) {
	e := newEnv(t)
	e.srv.set(func(s *protoServer) { s.refuseCSR = true })
	a := e.newAgent()
	err := a.SyncOnce(t.Context())
	if err == nil || !strings.Contains(err.Error(), "422") {
		t.Fatalf("SyncOnce = %v, want the 422", err)
	}
	r := e.srv.lastReport(t)
	if r.Result != agentproto.ResultFailed || r.Stage != agentproto.StageIssue || !strings.Contains(r.Error, "csr_mismatch") {
		t.Errorf("report = %+v", r)
	}
	reports0, _, _, _ := e.srv.snapshot()
	e.sync(a)
	if reports, _, _, _ := e.srv.snapshot(); len(reports) != len(reports0) {
		t.Error("a refused issue was retried at once")
	}
	e.srv.set(func(s *protoServer) { s.refuseCSR = false })
	e.clock.Set(e.clock.Now().Add(e.cfg.PollInterval))
	e.sync(a)
	if r := e.srv.lastReport(t); r.Result != agentproto.ResultInstalled {
		t.Errorf("after the backoff: report = %+v", r)
	}
}

// A 429 on the issue route is the issuer's backoff for that certificate:
// the other certificates go on, and the agent asks again after Retry-After.
func TestIssueBackoffIsPerCertificate(t *testing.T) {
	e := newEnv(t)
	e.srv.set(func(s *protoServer) {
		api := *s.assignments[0]
		api.Name, api.SpecHash, api.Verify = "api", "spec-api", nil
		api.Files = agentproto.Files{Cert: filepath.Join(e.dir, "api.crt"), Key: filepath.Join(e.dir, "api.key")}
		s.assignments = append(s.assignments, &api)
		s.issueError = map[string]errAnswer{"shop": {http.StatusTooManyRequests, agentproto.CodeBackoff, "600"}}
	})
	a := e.newAgent()
	err := a.SyncOnce(t.Context())
	if err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("SyncOnce = %v, want shop's 429", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "api.crt")); err != nil {
		t.Errorf("api was not installed while shop was backed off: %v", err)
	}
	e.srv.set(func(s *protoServer) { s.issueError = nil })
	e.clock.Set(e.clock.Now().Add(5 * time.Minute))
	e.sync(a)
	if e.fileSet()["cert.pem"] != "" {
		t.Error("shop issued before its Retry-After")
	}
	e.clock.Set(e.clock.Now().Add(6 * time.Minute))
	e.sync(a)
	if e.fileSet()["cert.pem"] == "" {
		t.Error("shop not issued after its Retry-After")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// With AllowedDirs, a deploy path elsewhere is refused before any issue
// request, reported, and nothing is written.
func TestDeployOutsideAllowedDirsIsRefused(t *testing.T) {
	e := newEnv(t)
	e.cfg.AllowedDirs = []string{filepath.Join(t.TempDir(), "elsewhere")}
	a := e.newAgent()
	if err := a.SyncOnce(t.Context()); err == nil {
		t.Fatal("SyncOnce succeeded with a deploy path outside the allowed directories")
	}
	r := e.srv.lastReport(t)
	if r.Result != agentproto.ResultFailed || r.Stage != agentproto.StagePolicy || !strings.HasPrefix(r.Error, "HostPolicyRefused: files.cert: path ") || !strings.Contains(r.Error, "is outside allowedDirs") {
		t.Errorf("report = %+v, want a failed install naming the allowed directories", r)
	}
	if _, issued, _, _ := e.srv.snapshot(); len(issued) != 0 {
		t.Errorf("%d certificates issued for a refused deployment, want 0", len(issued))
	}
	if e.fileSet()["cert.pem"] != "" {
		t.Error("a file was written outside the allowed directories")
	}
	// Allowing the certificate directory's parent lets it through.
	e.cfg.AllowedDirs = []string{filepath.Dir(e.dir)}
	e.clock.Set(e.clock.Now().Add(2 * time.Hour))
	e.sync(e.newAgent())
	if e.fileSet()["cert.pem"] == "" {
		t.Error("not installed under an allowed directory")
	}
}

func TestAllowedDirsMustBeCleanAbsolute(t *testing.T) {
	e := newEnv(t)
	for _, d := range []string{"relative/dir", "/etc/../etc/ssl", "/etc/ssl/"} {
		e.cfg.AllowedDirs = []string{d}
		if _, err := New(e.cfg); err == nil {
			t.Errorf("AllowedDirs %q accepted, want an error", d)
		}
	}
}

// A reload that prints NUL, invalid UTF-8 and escapes is reported with
// its output made valid and bounded, so the server takes the report and
// the queue moves on.
func TestReloadOutputIsSanitizedInTheReport(t *testing.T) {
	e := newEnv(t)
	a := e.newAgent()
	if _, err := renewWith(t, e, a, func() { e.flag(garbageNext) }); err == nil {
		t.Fatal("SyncOnce succeeded, want a reload failure")
	}
	r := e.srv.lastReport(t)
	if r.Result != agentproto.ResultRolledBack || !strings.Contains(r.Error, "exit status 4") || !strings.Contains(r.Error, "nginx: bad") {
		t.Errorf("report = %+v", r)
	}
	if err := textlimit.Check(r.Error, agentproto.MaxReportError, true); err != nil {
		t.Errorf("report error %q: %v", r.Error, err)
	}
	if len(a.reports) != 0 {
		t.Errorf("%d reports still queued", len(a.reports))
	}
}
