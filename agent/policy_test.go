package agent

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/examples"
)

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(`
allowedDirs: [/etc/ssl/shop, /var/www/acme]
allowedReloads:
  - [systemctl, reload, nginx]
  - [/usr/sbin/nginx, -s, reload]
maxFileMode: "0644"
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.AllowedDirs) != 2 || len(p.AllowedReloads) != 2 || p.maxMode != 0o644 {
		t.Errorf("policy = %+v", p)
	}
	for _, bad := range []string{
		"allowedDir: [/etc/ssl]\n",                    // unknown field
		"allowedDirs: [etc/ssl]\n",                    // relative
		"allowedDirs: [/etc/ssl/]\n",                  // unclean
		"allowedReloads: [[]]\n",                      // empty argv
		"allowedReloads: [['*']]\n",                   // any command
		"maxFileMode: \"0999\"\n",                     // not octal
		"maxFileMode: \"01777\"\n",                    // beyond permissions
		"allowedDirs: [/a]\n---\nallowedDirs: [/b]\n", // two documents
	} {
		if _, err := ParsePolicy([]byte(bad)); err == nil {
			t.Errorf("ParsePolicy(%q) succeeded, want an error", bad)
		}
	}
}

func TestReloadAllowed(t *testing.T) {
	allowed := [][]string{{"systemctl", "reload", "nginx"}, {"/usr/sbin/nginx", "-s", "reload"}, {"/usr/local/bin/hook", "*"}}
	for _, c := range []struct {
		argv []string
		want bool
	}{
		{[]string{"systemctl", "reload", "nginx"}, true},
		{[]string{"systemctl", "reload", "nginx", "extra"}, false},
		{[]string{"systemctl", "reload"}, false},
		{[]string{"systemctl", "restart", "nginx"}, false},
		{[]string{"/usr/sbin/nginx", "-s", "reload"}, true},
		{[]string{"/usr/local/bin/hook"}, true},
		{[]string{"/usr/local/bin/hook", "a", "b"}, true},
		{[]string{"/usr/local/bin/hookx"}, false},
		{[]string{"bash", "-c", "systemctl reload nginx"}, false},
		{[]string{"*"}, false},
	} {
		if got := reloadAllowed(allowed, c.argv); got != c.want {
			t.Errorf("reloadAllowed(%q) = %v, want %v", c.argv, got, c.want)
		}
	}
	if reloadAllowed(nil, []string{"true"}) {
		t.Error("an empty allowedReloads allowed a reload")
	}
}

// Paths must resolve inside an allowed directory: lexically, and through
// every existing directory on the way (a symlink out of it is refused).
func TestAllowedPaths(t *testing.T) {
	root := t.TempDir()
	allowed := filepath.Join(root, "ssl")
	outside := filepath.Join(root, "outside")
	for _, d := range []string{allowed, outside, filepath.Join(allowed, "real")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(allowed, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(allowed, "inner")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside", filepath.Join(allowed, "real", "up")); err != nil {
		t.Fatal(err)
	}
	a := &Agent{dirs: []string{allowed, filepath.Join(root, "missing")}}
	for _, c := range []struct {
		path string
		ok   bool
	}{
		{filepath.Join(allowed, "cert.pem"), true},
		{filepath.Join(allowed, "new", "sub", "cert.pem"), true},     // created by the install
		{filepath.Join(allowed, "inner", "cert.pem"), true},          // a symlink that stays inside
		{filepath.Join(allowed, "escape"), true},                     // the last element is replaced, not followed
		{filepath.Join(allowed, "escape", "cert.pem"), false},        // a symlink out
		{filepath.Join(allowed, "escape", "new", "cert.pem"), false}, // through it, to a missing dir
		{filepath.Join(allowed, "real", "up", "cert.pem"), false},    // a relative symlink out
		{filepath.Join(allowed, "inner", "up", "cert.pem"), false},
		{filepath.Join(outside, "cert.pem"), false},
		{allowed, false},
		{"/etc/passwd", false},
		{filepath.Join(root, "missing", "x", "cert.pem"), true}, // a directory not there yet holds no symlink
	} {
		err := a.allowed(c.path)
		if (err == nil) != c.ok {
			t.Errorf("allowed(%s) = %v, want ok=%v", c.path, err, c.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "HostPolicyRefused: path "+c.path+" is outside allowedDirs [") {
			t.Errorf("allowed(%s) = %q, want the HostPolicyRefused rule", c.path, err)
		}
	}
	if err := (&Agent{}).allowed("/etc/passwd"); err != nil {
		t.Errorf("no allowed directories: %v, want any path allowed", err)
	}
}

func TestCapMode(t *testing.T) {
	none := &Agent{}
	if got := none.capMode(0o644, true); got != 0o600 {
		t.Errorf("key 0644 without a policy: %o, want 600", got)
	}
	if got := none.capMode(0o640, true); got != 0o600 {
		t.Errorf("key 0640: %o, want 600", got)
	}
	if got := none.capMode(0o400, true); got != 0o400 {
		t.Errorf("key 0400: %o, want 400", got)
	}
	if got := none.capMode(0o666, false); got != 0o666 {
		t.Errorf("cert 0666 without a policy: %o, want 666", got)
	}
	p, err := ParsePolicy([]byte(`maxFileMode: "0640"`))
	if err != nil {
		t.Fatal(err)
	}
	with := &Agent{cfg: Config{Policy: p}}
	if got := with.capMode(0o666, false); got != 0o640 {
		t.Errorf("cert 0666 under maxFileMode 0640: %o, want 640", got)
	}
	if got := with.capMode(0o644, true); got != 0o600 {
		t.Errorf("key 0644 under maxFileMode 0640: %o, want 600", got)
	}
}

// Even without a policy, files.mode 0644 leaves the key at 0600.
func TestKeyModeCappedWithoutPolicy(t *testing.T) {
	e := newEnv(t)
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files.Mode = "0644" })
	e.sync(e.newAgent())
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{e.files.Key, 0o600}, {e.files.Cert, 0o644}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.want {
			t.Errorf("%s: mode %o, want %o", c.path, fi.Mode().Perm(), c.want)
		}
	}
}

// An assignment outside the host policy is refused before issuance:
// reported failed at stage policy with the rule, nothing issued or
// written, no reload run; an assignment inside it still installs.
func TestHostPolicyRefusesAssignment(t *testing.T) {
	for _, c := range []struct {
		name   string
		edit   func(e *env, as *agentproto.Assignment)
		policy func(e *env) *Policy
		want   string
	}{
		{"reload", func(e *env, as *agentproto.Assignment) { as.Reload = []string{"bash", "-c", "touch " + e.reloads} },
			func(e *env) *Policy {
				return &Policy{AllowedDirs: []string{e.dir}, AllowedReloads: [][]string{{e.reloadScript()}}}
			},
			`HostPolicyRefused: reload ["bash" "-c" "touch `},
		{"path", func(e *env, as *agentproto.Assignment) { as.Files.Key = "/etc/passwd" },
			func(e *env) *Policy {
				return &Policy{AllowedDirs: []string{e.dir}, AllowedReloads: [][]string{{e.reloadScript()}}}
			},
			"HostPolicyRefused: files.key: path /etc/passwd is outside allowedDirs ["},
		{"symlink", func(e *env, as *agentproto.Assignment) {
			out := filepath.Join(e.t.TempDir(), "outside")
			if err := os.MkdirAll(out, 0o755); err != nil {
				e.t.Fatal(err)
			}
			if err := os.MkdirAll(e.dir, 0o755); err != nil {
				e.t.Fatal(err)
			}
			if err := os.Symlink(out, filepath.Join(e.dir, "live")); err != nil {
				e.t.Fatal(err)
			}
			as.Files.Key = filepath.Join(e.dir, "live", "key.pem")
		}, func(e *env) *Policy {
			return &Policy{AllowedDirs: []string{e.dir}, AllowedReloads: [][]string{{e.reloadScript(), "*"}}}
		}, "HostPolicyRefused: files.key: path "},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.cfg.Policy = c.policy(e)
			e.srv.assignments[0].Reload = []string{e.cfg.Policy.AllowedReloads[0][0]}
			good := *e.srv.assignments[0]
			e.srv.edit("shop", func(as *agentproto.Assignment) { c.edit(e, as) })
			a := e.newAgent()
			if err := a.SyncOnce(t.Context()); err == nil {
				t.Fatal("SyncOnce succeeded with an assignment outside the host policy")
			}
			r := e.srv.lastReport(t)
			if r.Result != agentproto.ResultFailed || r.Stage != agentproto.StagePolicy || r.Serial != "" || !strings.HasPrefix(r.Error, c.want) {
				t.Errorf("report = %+v, want failed at stage policy with %q", r, c.want)
			}
			if _, issued, _, _ := e.srv.snapshot(); len(issued) != 0 {
				t.Errorf("%d certificates issued for a refused assignment, want 0", len(issued))
			}
			for name, data := range e.fileSet() {
				if data != "" {
					t.Errorf("%s written for a refused assignment", name)
				}
			}
			if _, err := os.Stat(e.reloads); err == nil {
				t.Error("a reload ran for a refused assignment")
			}
			// The same assignment inside the policy installs.
			e.srv.edit("shop", func(as *agentproto.Assignment) { *as = good; as.SpecHash = "spec-2" })
			e.clock.Set(e.clock.Now().Add(2 * time.Hour))
			e.sync(a)
			if e.fileSet()["cert.pem"] == "" || e.reloadCount() != 1 {
				t.Errorf("in-policy assignment: cert written %v, %d reloads, want installed and 1", e.fileSet()["cert.pem"] != "", e.reloadCount())
			}
			if r := e.srv.lastReport(t); r.Result != agentproto.ResultInstalled {
				t.Errorf("in-policy report = %+v, want installed", r)
			}
		})
	}
}

// The example policy decodes and allows every reload and path of the
// example config repository's certificates.
func TestExamplePolicy(t *testing.T) {
	p, err := LoadPolicy("../examples/agent-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{Policy: p}, dirs: p.AllowedDirs}
	n := 0
	err = fs.WalkDir(examples.Config(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(examples.Config(), path)
		if err != nil {
			return err
		}
		for _, m := range reloadLine.FindAllStringSubmatch(string(b), -1) {
			n++
			var argv []string
			for _, s := range strings.Split(m[1], ",") {
				argv = append(argv, strings.TrimSpace(s))
			}
			if err := a.reloadAllowed(argv); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		for _, m := range pathLine.FindAllStringSubmatch(string(b), -1) {
			if err := a.allowed(filepath.Join(m[1], "x")); err != nil { // a webroot is the parent of the files
				t.Errorf("%s: %v", path, err)
			}
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("walk: %v, %d reloads found", err, n)
	}
}

var (
	reloadLine = regexp.MustCompile(`(?m)^\s*reload: \[(.*)\]`)
	pathLine   = regexp.MustCompile(`(?m)^\s*(?:cert|chain|fullchain|key|combined|der|pkcs12|jks|webroot): (/\S+)`)
)

// After a refusal, the failure backoff (kept in state.json) holds while the
// policy refuses; an agent restarted with a policy that allows the
// assignment installs it at once, same spec, no clock advance.
func TestWidenedPolicyInstallsAtOnce(t *testing.T) {
	e := newEnv(t)
	e.cfg.Policy = &Policy{AllowedDirs: []string{e.dir}}
	if err := e.newAgent().SyncOnce(t.Context()); err == nil {
		t.Fatal("SyncOnce succeeded with a reload outside the policy")
	}
	a := e.newAgent() // restarted with the same policy: still refused, quietly, within the backoff
	e.sync(a)
	if reports, _, _, _ := e.srv.snapshot(); len(reports) != 1 {
		t.Errorf("%d reports, want the one refusal (then waiting for the backoff)", len(reports))
	}
	e.cfg.Policy.AllowedReloads = [][]string{e.srv.assignments[0].Reload}
	e.sync(e.newAgent())
	if e.fileSet()["cert.pem"] == "" || e.reloadCount() != 1 {
		t.Errorf("after widening the policy: cert written %v, %d reloads", e.fileSet()["cert.pem"] != "", e.reloadCount())
	}
}

// Under the symlink layout the files go to D/.certops.NAME/: a symlink
// there leading out of the allowed directory is refused too.
func TestSymlinkLayoutVersionsDirMustStayInside(t *testing.T) {
	e := newEnv(t)
	e.cfg.Policy = &Policy{AllowedDirs: []string{e.dir}, AllowedReloads: [][]string{e.srv.assignments[0].Reload}}
	out := t.TempDir()
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(out, filepath.Join(e.dir, versionsPrefix+"shop")); err != nil {
		t.Fatal(err)
	}
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files.Layout = layoutSymlink })
	if err := e.newAgent().SyncOnce(t.Context()); err == nil {
		t.Fatal("SyncOnce succeeded through a versions directory leading out")
	}
	if r := e.srv.lastReport(t); r.Stage != agentproto.StagePolicy || !strings.HasPrefix(r.Error, "HostPolicyRefused: files.cert: path "+filepath.Join(e.dir, versionsPrefix+"shop")) {
		t.Errorf("report = %+v", r)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("%d entries written outside the allowed directory", len(ents))
	}
}
