package agent

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/testkit"
)

// The passwords of the key containers in these tests, kept in files on the
// "host" like an operator would.
const (
	testPKCS12Password = "p12-s3cret-Pa55"
	testJKSPassword    = "jks-s3cret-Pa55"
)

// withForms adds every form to the env's assignment: combined, der, pkcs12
// and jks next to cert, chain, fullchain and key, all in e.dir, with their
// password files outside it.
func (e *env) withForms() {
	e.t.Helper()
	pwDir := filepath.Join(filepath.Dir(e.reloads), "passwords")
	e.files.Combined = filepath.Join(e.dir, "combined.pem")
	e.files.DER = filepath.Join(e.dir, "cert.der")
	e.files.PKCS12 = filepath.Join(e.dir, "keystore.p12")
	e.files.PKCS12PasswordFile = filepath.Join(pwDir, "p12.pass")
	e.files.PKCS12FriendlyName = "Shop TLS"
	e.files.JKS = filepath.Join(e.dir, "keystore.jks")
	e.files.JKSPasswordFile = filepath.Join(pwDir, "jks.pass")
	writeFile(e.t, e.files.PKCS12PasswordFile, testPKCS12Password+"\n", 0o600)
	writeFile(e.t, e.files.JKSPasswordFile, testJKSPassword+"\n", 0o600)
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files = e.files })
}

// formPaths are the files of every form of the env's set.
func (e *env) formPaths() []string {
	f := e.files
	return []string{f.Cert, f.Chain, f.Fullchain, f.Key, f.Combined, f.DER, f.PKCS12, f.JKS}
}

// formSet is the content of every file of every form ("" when missing).
func (e *env) formSet() map[string]string {
	set := map[string]string{}
	for _, p := range e.formPaths() {
		b, _ := os.ReadFile(p)
		set[filepath.Base(p)] = string(b)
	}
	return set
}

// run runs a consumer and returns its combined output, failing the test
// when it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Every form is installed with its mode and read by its real consumer:
// openssl for DER and PKCS#12, keytool for JKS, haproxy for the combined
// PEM; in both layouts.
func TestFormsReadByTheirConsumers(t *testing.T) {
	for _, layout := range []string{layoutFiles, layoutSymlink} {
		t.Run(layout, func(t *testing.T) {
			e := newEnv(t)
			e.withForms()
			e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files.Layout = layout; as.Files.Mode = "0644" })
			e.sync(e.newAgent())
			if r := e.srv.lastReport(t); r.Result != agentproto.ResultInstalled {
				t.Fatalf("report = %+v, want installed", r)
			}
			set := e.formSet()
			certPEM, chainPEM, keyPEM := set["cert.pem"], set["chain.pem"], set["key.pem"]
			if certPEM == "" || chainPEM == "" {
				t.Fatal("no certificate or chain installed")
			}

			// Modes: the key and the key containers at 0600 whatever
			// files.mode says, the rest as files.mode says.
			for _, c := range []struct {
				path string
				want os.FileMode
			}{
				{e.files.Cert, 0o644}, {e.files.DER, 0o644}, {e.files.Key, 0o600},
				{e.files.Combined, 0o600}, {e.files.PKCS12, 0o600}, {e.files.JKS, 0o600},
			} {
				fi, err := os.Stat(c.path) // through the links of the symlink layout
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != c.want {
					t.Errorf("%s: mode %o, want %o", filepath.Base(c.path), fi.Mode().Perm(), c.want)
				}
				if layout == layoutSymlink {
					if li, err := os.Lstat(c.path); err != nil || li.Mode()&os.ModeSymlink == 0 {
						t.Errorf("%s is not a link under the symlink layout", c.path)
					}
				}
			}

			// combined: leaf, chain, key.
			if got, want := set["combined.pem"], certPEM+chainPEM+keyPEM; got != want {
				t.Errorf("combined.pem is not cert, chain and key:\n%s", got)
			}

			openssl := testkit.Program(t, "openssl", "openssl")
			dir := t.TempDir()

			// der: openssl reads it as the leaf.
			pemOfDER := run(t, openssl, "x509", "-inform", "der", "-in", e.files.DER, "-outform", "pem")
			if pemOfDER != certPEM {
				t.Errorf("openssl x509 -inform der gives\n%s\nwant the installed certificate\n%s", pemOfDER, certPEM)
			}

			// pkcs12: openssl opens it with the password file, finds the
			// modern algorithms, leaf and chain, and a key that fits.
			info := run(t, openssl, "pkcs12", "-info", "-in", e.files.PKCS12, "-passin", "file:"+e.files.PKCS12PasswordFile, "-nokeys")
			for _, want := range []string{"MAC: sha256", "PBES2, PBKDF2, AES-256-CBC", "PRF hmacWithSHA256"} {
				if !strings.Contains(info, want) {
					t.Errorf("openssl pkcs12 -info does not say %q:\n%s", want, info)
				}
			}
			if got := pemCerts(t, info); !slices.Equal(got, pemCerts(t, certPEM+chainPEM)) {
				t.Errorf("pkcs12 holds %d certificates that are not the leaf and chain:\n%s", len(got), info)
			}
			keyOut := filepath.Join(dir, "p12.key")
			run(t, openssl, "pkcs12", "-in", e.files.PKCS12, "-passin", "file:"+e.files.PKCS12PasswordFile, "-nocerts", "-nodes", "-out", keyOut)
			b, _ := os.ReadFile(keyOut)
			if !keyFits(string(b), certPEM) {
				t.Error("the key in the pkcs12 file does not fit the certificate")
			}
			if !strings.Contains(string(b), "friendlyName: Shop TLS\n") {
				t.Errorf("openssl shows no friendly name on the key:\n%s", b)
			}
			if out, err := exec.Command(openssl, "pkcs12", "-info", "-nokeys", "-in", e.files.PKCS12, "-passin", "pass:wrong").CombinedOutput(); err == nil {
				t.Errorf("openssl opened the pkcs12 file with a wrong password:\n%s", out)
			}

			// jks: keytool lists one private key entry named after the
			// certificate, with the leaf and the chain.
			keytool := testkit.Program(t, "keytool", "default-jre-headless")
			list := run(t, keytool, "-list", "-v", "-keystore", e.files.JKS, "-storetype", "JKS", "-storepass:file", e.files.JKSPasswordFile)
			for _, want := range []string{"Alias name: shop\n", "Entry type: PrivateKeyEntry\n", fmt.Sprintf("Certificate chain length: %d\n", 1+len(pemCerts(t, chainPEM)))} {
				if !strings.Contains(list, want) {
					t.Errorf("keytool -list does not say %q:\n%s", strings.TrimSpace(want), list)
				}
			}
			fp := sha256Colons(t, certPEM)
			if !strings.Contains(list, fp) {
				t.Errorf("keytool -list does not show the leaf's SHA-256 %s:\n%s", fp, list)
			}

			// pkcs12 again, as Java reads it: one private key entry, named
			// after the friendly name, with the chain.
			p12list := run(t, keytool, "-list", "-v", "-keystore", e.files.PKCS12, "-storetype", "PKCS12", "-storepass:file", e.files.PKCS12PasswordFile)
			for _, want := range []string{"Your keystore contains 1 entry", "Alias name: shop tls\n", "Entry type: PrivateKeyEntry\n", fmt.Sprintf("Certificate chain length: %d\n", 1+len(pemCerts(t, chainPEM))), fp} {
				if !strings.Contains(p12list, want) {
					t.Errorf("keytool -list of the pkcs12 file does not say %q:\n%s", strings.TrimSpace(want), p12list)
				}
			}

			// combined: haproxy loads it as a bind's crt, and refuses a
			// certificate without its key (so the check means something).
			haproxy := testkit.Program(t, "haproxy", "haproxy")
			if out, ok := haproxyCheck(t, haproxy, e.files.Combined); !ok {
				t.Errorf("haproxy -c refuses the combined file:\n%s", out)
			}
			if out, ok := haproxyCheck(t, haproxy, e.files.Cert); ok {
				t.Errorf("haproxy -c accepts a certificate without its key, so its check proves nothing:\n%s", out)
			}
		})
	}
}

// haproxyCheck runs haproxy -c on a configuration whose bind loads crt.
func haproxyCheck(t *testing.T, haproxy, crt string) (string, bool) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	writeFile(t, cfg, fmt.Sprintf(`global
	maxconn 16

defaults
	mode http
	timeout connect 1s
	timeout client 1s
	timeout server 1s

frontend shop
	bind 127.0.0.1:8443 ssl crt %s
	default_backend app

backend app
	server app1 127.0.0.1:8080
`, crt), 0o644)
	out, err := exec.Command(haproxy, "-c", "-f", cfg).CombinedOutput()
	return string(out), err == nil
}

// pemCerts is the DER of every certificate in the PEM text s (other text
// between the blocks is skipped).
func pemCerts(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		if b.Type == "CERTIFICATE" {
			out = append(out, string(b.Bytes))
		}
	}
}

// sha256Colons is the leaf's SHA-256 fingerprint as keytool shows it.
func sha256Colons(t *testing.T, certPEM string) string {
	t.Helper()
	fp := strings.ToUpper(pki.Fingerprint([]byte(pemCerts(t, certPEM)[0])))
	var pairs []string
	for i := 0; i < len(fp); i += 2 {
		pairs = append(pairs, fp[i:i+2])
	}
	return strings.Join(pairs, ":")
}

// A failed reload puts every form back as it was, in both layouts: the
// key containers too, byte for byte.
func TestFormsRolledBackTogether(t *testing.T) {
	for _, layout := range []string{layoutFiles, layoutSymlink} {
		t.Run(layout, func(t *testing.T) {
			e := newEnv(t)
			e.withForms()
			e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files.Layout = layout })
			a := e.newAgent()
			e.sync(a)
			old := e.formSet()
			for name, data := range old {
				if data == "" {
					t.Fatalf("%s not installed", name)
				}
			}
			entries := e.dirEntries()
			_, err := renewWith(t, e, a, func() { e.flag(failNext) })
			if err == nil || !strings.Contains(err.Error(), "reload") {
				t.Fatalf("SyncOnce = %v, want a reload failure", err)
			}
			if r := e.srv.lastReport(t); r.Result != agentproto.ResultRolledBack {
				t.Fatalf("report = %+v, want rolled-back", r)
			}
			if got := e.formSet(); !maps.Equal(got, old) {
				for name := range old {
					if got[name] != old[name] {
						t.Errorf("%s is not the previous one after the rollback", name)
					}
				}
			}
			if got := e.dirEntries(); !slices.Equal(got, entries) {
				t.Errorf("target dir = %v, want %v (no temps or backups left)", got, entries)
			}
			if layout == layoutSymlink {
				if v := e.versionDirs(); len(v) != 1 {
					t.Errorf("version directories %v, want the previous one only", v)
				}
			}
		})
	}
}

// A missing password file fails the deployment at stage install, clearly,
// before any file is touched: on the first install nothing is written, and
// on a renewal the installed set stays as it was. The password is never in
// a report.
func TestFormsMissingPasswordFile(t *testing.T) {
	t.Run("first install", func(t *testing.T) {
		e := newEnv(t)
		e.withForms()
		if err := os.Remove(e.files.JKSPasswordFile); err != nil {
			t.Fatal(err)
		}
		if err := e.newAgent().SyncOnce(t.Context()); err == nil {
			t.Fatal("SyncOnce succeeded without the jks password file")
		}
		r := e.srv.lastReport(t)
		want := "files.jksPasswordFile: secret file " + e.files.JKSPasswordFile + " does not exist"
		if r.Result != agentproto.ResultFailed || r.Stage != agentproto.StageInstall || r.Error != want {
			t.Errorf("report = %+v, want failed at stage install with %q", r, want)
		}
		if ents := e.dirEntries(); len(ents) != 0 {
			t.Errorf("written: %v", ents)
		}
		if _, err := os.Stat(e.reloads); err == nil {
			t.Error("a reload ran")
		}
	})
	t.Run("renewal", func(t *testing.T) {
		e := newEnv(t)
		e.withForms()
		e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files.Layout = layoutSymlink })
		a := e.newAgent()
		e.sync(a)
		old, entries := e.formSet(), e.dirEntries()
		_, err := renewWith(t, e, a, func() { writeFile(t, e.files.PKCS12PasswordFile, " \n", 0o600) })
		if err == nil {
			t.Fatal("SyncOnce succeeded with an empty pkcs12 password file")
		}
		r := e.srv.lastReport(t)
		want := "files.pkcs12PasswordFile: secret file " + e.files.PKCS12PasswordFile + " is empty"
		if r.Result != agentproto.ResultFailed || r.Stage != agentproto.StageInstall || r.Error != want {
			t.Errorf("report = %+v, want failed at stage install with %q", r, want)
		}
		if !maps.Equal(e.formSet(), old) || !slices.Equal(e.dirEntries(), entries) {
			t.Error("the installed set changed")
		}
		if v := e.versionDirs(); len(v) != 1 {
			t.Errorf("version directories %v, want the installed one only", v)
		}
		if n := e.reloadCount(); n != 1 {
			t.Errorf("%d reloads, want the first install's only", n)
		}
		reports, _, _, bodies := e.srv.snapshot()
		for _, b := range append(bodies, fmt.Sprint(reports)) {
			if strings.Contains(b, testPKCS12Password) || strings.Contains(b, testJKSPassword) {
				t.Fatal("a password reached the server")
			}
		}
	})
}

// The host policy bounds the new paths like the others (the password
// files read as well as the files written), and its maxFileMode caps DER
// while the key containers stay at 0600.
func TestFormsUnderHostPolicy(t *testing.T) {
	e := newEnv(t)
	e.withForms()
	passwords := filepath.Dir(e.files.JKSPasswordFile)
	e.cfg.Policy = &Policy{AllowedDirs: []string{e.dir, passwords}, AllowedReloads: [][]string{e.srv.assignments[0].Reload}, MaxFileMode: "0640", maxMode: 0o640}

	// A password file elsewhere (any secret of the host) is refused.
	elsewhere := filepath.Join(t.TempDir(), "shadow")
	writeFile(t, elsewhere, "not-for-keystores\n", 0o600)
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files.JKSPasswordFile = elsewhere })
	probe := e.newAgent()
	if err := probe.SyncOnce(t.Context()); err == nil {
		t.Fatal("SyncOnce succeeded with a jksPasswordFile outside allowedDirs")
	}
	if r := e.srv.lastReport(t); r.Stage != agentproto.StagePolicy || !strings.HasPrefix(r.Error, "HostPolicyRefused: files.jksPasswordFile: path "+elsewhere+" is outside allowedDirs [") {
		t.Errorf("report = %+v, want refused for the password file", r)
	}
	if ents := e.dirEntries(); len(ents) != 0 {
		t.Errorf("written: %v", ents)
	}
	e.srv.edit("shop", func(as *agentproto.Assignment) {
		as.Files.JKSPasswordFile = e.files.JKSPasswordFile
		as.SpecHash = "spec-pw"
	})

	outside := filepath.Join(t.TempDir(), "keystore.jks")
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files.JKS = outside; as.Files.Mode = "0664" })
	a := e.newAgent()
	if err := a.SyncOnce(t.Context()); err == nil {
		t.Fatal("SyncOnce succeeded with a jks path outside allowedDirs")
	}
	want := "HostPolicyRefused: files.jks: path " + outside + " is outside allowedDirs ["
	if r := e.srv.lastReport(t); r.Stage != agentproto.StagePolicy || !strings.HasPrefix(r.Error, want) {
		t.Errorf("report = %+v, want refused with %q", r, want)
	}
	if ents := e.dirEntries(); len(ents) != 0 {
		t.Errorf("written: %v", ents)
	}

	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files.JKS = e.files.JKS; as.SpecHash = "spec-2" })
	e.sync(a)
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{e.files.DER, 0o640}, {e.files.Cert, 0o640}, {e.files.Combined, 0o600}, {e.files.PKCS12, 0o600}, {e.files.JKS, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.want {
			t.Errorf("%s: mode %o, want %o", filepath.Base(c.path), fi.Mode().Perm(), c.want)
		}
	}
}

// The installed forms count in "is the current certificate installed":
// a DER or key container removed by hand is put back on the next pass.
func TestFormsMissingAreReinstalled(t *testing.T) {
	e := newEnv(t)
	e.withForms()
	a := e.newAgent()
	e.sync(a)
	for _, p := range []string{e.files.DER, e.files.JKS} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		e.sync(a)
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s not reinstalled: %v", filepath.Base(p), err)
		}
	}
	writeFile(t, e.files.DER, "not the certificate", 0o644)
	e.sync(a)
	if b, _ := os.ReadFile(e.files.DER); bytes.Equal(b, []byte("not the certificate")) {
		t.Error("a changed DER file was not reinstalled")
	}
	if _, issued, _, _ := e.srv.snapshot(); len(issued) != 1 {
		t.Errorf("%d certificates issued, want 1 (reinstalled with the held key)", len(issued))
	}
}

// The JKS password must be one keytool takes and the encoder gets right.
func TestJKSPasswordRules(t *testing.T) {
	for _, c := range []struct{ password, want string }{
		{"abc12", "shorter than 6 characters"},
		{"pässwort-lang", "is not ASCII"},
	} {
		e := newEnv(t)
		e.withForms()
		writeFile(t, e.files.JKSPasswordFile, c.password, 0o600)
		if err := e.newAgent().SyncOnce(t.Context()); err == nil {
			t.Fatalf("SyncOnce succeeded with the JKS password %q", c.password)
		}
		if r := e.srv.lastReport(t); r.Stage != agentproto.StageInstall || !strings.Contains(r.Error, c.want) || strings.Contains(r.Error, c.password) {
			t.Errorf("report = %+v, want failed at install with %q and without the password", r, c.want)
		}
	}
}
