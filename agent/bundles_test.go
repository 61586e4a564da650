package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certops/certops/agentproto"
)

// bundleOf is a bundle as the server sends it.
func bundleOf(name, path string, reload []string, pems ...string) agentproto.Bundle {
	text := strings.Join(pems, "")
	sum := sha256.Sum256([]byte(text))
	return agentproto.Bundle{Name: name, PEM: text, SHA256: hex.EncodeToString(sum[:]),
		Files: agentproto.BundleFiles{Bundle: path, Mode: "0644"}, Reload: reload}
}

// opensslVerify runs `openssl verify -CAfile bundle cert` and reports
// whether it verified.
func opensslVerify(t *testing.T, bundle, cert string) bool {
	t.Helper()
	out, err := exec.Command("openssl", "verify", "-CAfile", bundle, cert).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "error") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	return err == nil && strings.Contains(string(out), ": OK")
}

// otherCA makes, with openssl, a CA and a leaf it signed; it returns the
// CA's PEM and the leaf's file.
func otherCA(t *testing.T) (caPEM, leafFile string) {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
		"-subj", "/CN=Other Root", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
	run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
		"-subj", "/CN=other.example.com")
	run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.pem", "-days", "1")
	b, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b), filepath.Join(dir, "leaf.pem")
}

// TestBundleInstallVerifiesWithOpenSSL: the agent installs the bundle, and
// openssl verifies with it the certificate its CA signed (the one the agent
// installed for "shop") and refuses one of another CA; a CA rotation (both
// CAs, then only the new one) is installed step by step, each reloaded
// and reported.
func TestBundleInstallVerifiesWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required for this test")
	}
	e := newEnv(t)
	path := filepath.Join(filepath.Dir(e.dir), "trust", "roots.pem")
	reload := []string{e.reloadScript()}
	e.srv.set(func(s *protoServer) { s.bundles = []agentproto.Bundle{bundleOf("roots", path, reload, e.srv.caPEM)} })
	a := e.newAgent()
	e.sync(a)

	got, err := os.ReadFile(path)
	if err != nil || string(got) != e.srv.caPEM {
		t.Fatalf("bundle file = %q, %v; want the CA", got, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("bundle mode = %o, want 0644", fi.Mode().Perm())
	}
	r := e.srv.lastReport(t)
	if r.Bundle != "roots" || r.Result != agentproto.ResultInstalled || r.SHA256 != bundleOf("roots", path, reload, e.srv.caPEM).SHA256 || r.Certificate != "" {
		t.Errorf("last report = %+v, want roots installed", r)
	}
	st, err := ReadStatus(e.stateDir)
	if err != nil || len(st.Bundles) != 1 || st.Bundles[0].Name != "roots" || st.Bundles[0].SHA256 != r.SHA256 || st.Bundles[0].Path != path ||
		st.LastReport == nil || st.LastReport.Bundle != "roots" {
		t.Errorf("ReadStatus = %+v, %v; want roots installed and its report last", st, err)
	}
	otherPEM, otherLeaf := otherCA(t)
	if !opensslVerify(t, path, e.files.Cert) {
		t.Error("openssl verify -CAfile BUNDLE fails for the leaf its CA signed")
	}
	if opensslVerify(t, path, otherLeaf) {
		t.Error("openssl verify -CAfile BUNDLE accepts a leaf of another CA")
	}
	reloads := e.reloadCount()

	// Unchanged: nothing written, run or reported.
	reports0, _, _, _ := e.srv.snapshot()
	e.sync(a)
	if reports1, _, _, _ := e.srv.snapshot(); len(reports1) != len(reports0) || e.reloadCount() != reloads {
		t.Errorf("an unchanged bundle was installed again (reports %d → %d)", len(reports0), len(reports1))
	}

	// Rotation, step 1: both CAs.
	e.srv.set(func(s *protoServer) {
		s.bundles = []agentproto.Bundle{bundleOf("roots", path, reload, e.srv.caPEM, otherPEM)}
	})
	e.sync(a)
	if !opensslVerify(t, path, e.files.Cert) || !opensslVerify(t, path, otherLeaf) {
		t.Error("with both CAs, a leaf of either does not verify")
	}
	if e.reloadCount() != reloads+1 {
		t.Errorf("reloads = %d, want %d", e.reloadCount(), reloads+1)
	}
	// Step 2: the old CA removed.
	e.srv.set(func(s *protoServer) { s.bundles = []agentproto.Bundle{bundleOf("roots", path, reload, otherPEM)} })
	e.sync(a)
	if opensslVerify(t, path, e.files.Cert) || !opensslVerify(t, path, otherLeaf) {
		t.Error("after removing the old CA: want only the new CA's leaf to verify")
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("leftovers next to the bundle: %v", ents)
	}

	// Removed from the assignments: the file stays (the agent removes nothing).
	e.srv.set(func(s *protoServer) { s.bundles = nil })
	e.sync(a)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the bundle file was removed: %v", err)
	}
}

// TestBundleReloadFailureRollsBack: a failed reload restores the previous
// bundle, reloads again and reports rolled-back; the same content is
// retried only after the backoff.
func TestBundleReloadFailureRollsBack(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(filepath.Dir(e.dir), "trust", "roots.pem")
	reload := []string{e.reloadScript()}
	e.srv.set(func(s *protoServer) { s.bundles = []agentproto.Bundle{bundleOf("roots", path, reload, e.srv.caPEM)} })
	a := e.newAgent()
	e.sync(a)
	otherPEM, _ := otherCA(t)
	e.srv.set(func(s *protoServer) {
		s.bundles = []agentproto.Bundle{bundleOf("roots", path, reload, e.srv.caPEM, otherPEM)}
	})
	e.flag(failNext)
	if err := a.SyncOnce(t.Context()); err == nil || !strings.Contains(err.Error(), "trust bundle roots") {
		t.Fatalf("SyncOnce = %v, want the bundle's reload failure", err)
	}
	if got, _ := os.ReadFile(path); string(got) != e.srv.caPEM {
		t.Errorf("after rollback the bundle is %q, want the previous one", got)
	}
	r := e.srv.lastReport(t)
	if r.Bundle != "roots" || r.Result != agentproto.ResultRolledBack || r.Stage != agentproto.StageReload {
		t.Errorf("report = %+v, want rolled-back at reload", r)
	}
	reports0, _, _, _ := e.srv.snapshot()
	e.sync(a)
	if reports1, _, _, _ := e.srv.snapshot(); len(reports1) != len(reports0) {
		t.Error("a failed bundle was retried at once")
	}
	e.clock.Set(e.clock.Now().Add(2 * e.cfg.PollInterval))
	e.sync(a)
	if got, _ := os.ReadFile(path); string(got) != e.srv.caPEM+otherPEM {
		t.Error("the bundle was not installed after the backoff")
	}
}

// TestBundleOutsideAllowedDirsIsRefused: the host policy bounds bundles as
// it bounds certificates: nothing written, the refusal reported.
func TestBundleOutsideAllowedDirsIsRefused(t *testing.T) {
	e := newEnv(t)
	e.cfg.AllowedDirs = []string{e.dir}
	path := filepath.Join(filepath.Dir(e.dir), "trust", "roots.pem")
	e.srv.set(func(s *protoServer) {
		s.bundles = []agentproto.Bundle{bundleOf("roots", path, []string{e.reloadScript()}, e.srv.caPEM)}
	})
	a := e.newAgent()
	if err := a.SyncOnce(t.Context()); err == nil || !strings.Contains(err.Error(), ReasonHostPolicyRefused) {
		t.Fatalf("SyncOnce = %v, want a host policy refusal", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("a refused bundle was written")
	}
	r := e.srv.lastReport(t)
	if r.Bundle != "roots" || r.Result != agentproto.ResultFailed || r.Stage != agentproto.StagePolicy || !strings.HasPrefix(r.Error, ReasonHostPolicyRefused+": ") {
		t.Errorf("report = %+v, want failed at policy", r)
	}
}
