package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadDirValid(t *testing.T) {
	s, err := LoadDir("testdata/valid")
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	var got []string
	for _, o := range s.Sorted() {
		got = append(got, o.Key().String())
	}
	want := []string{
		"Issuer/cloudflare", "Issuer/internal-ca", "Issuer/letsencrypt", "Issuer/pebble-dns",
		"Agent/web-01",
		"Certificate/api", "Certificate/shop-frontend",
		"AlertPolicy/default",
		"NotificationChannel/ops-hook", "NotificationChannel/ops-mail", "NotificationChannel/ops-slack",
		"BackupPolicy/nightly",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("objects (-got +want):\n%s", diff)
	}

	shop := s.Get(KindCertificate, "shop-frontend").Certificate()
	if shop == nil || shop.Deploy.Files.Mode != "0600" || shop.PrivateKey.Size != 256 {
		t.Errorf("shop-frontend spec = %+v", shop)
	}
	if got := s.Get(KindCertificate, "api").Certificate().Usages; !cmp.Equal(got, []string{"digital signature", "key encipherment", "server auth", "client auth"}) {
		t.Errorf("api usages not normalised: %q", got)
	}
	if s.Get(KindAlertPolicy, "default").AlertPolicy() == nil || s.Get(KindBackupPolicy, "nightly").BackupPolicy() == nil {
		t.Error("AlertPolicy/BackupPolicy accessors returned nil")
	}
	if s.Get(KindAgent, "web-01").Certificate() != nil {
		t.Error("Certificate() of an Agent is not nil")
	}
}

// TestDefaultsNormalised checks that omitted defaults and spelled-out
// defaults give the same spec and hash.
func TestDefaultsNormalised(t *testing.T) {
	parse := func(extra string) *Object {
		t.Helper()
		objs, errs := ParseFile("c.yaml", []byte("apiVersion: certops/v1\nkind: Certificate\nmetadata: {name: c}\nspec:\n  issuerRef: ca\n  commonName: a.example.com\n"+extra))
		if len(errs) != 0 || len(objs) != 1 {
			t.Fatalf("ParseFile: %v", errs)
		}
		return objs[0]
	}
	implicit := parse("")
	explicit := parse("  duration: 2160h\n  privateKey: {algorithm: ECDSA, size: 256, rotationPolicy: Always}\n")
	if diff := cmp.Diff(implicit.Spec, explicit.Spec); diff != "" {
		t.Errorf("specs differ (-implicit +explicit):\n%s", diff)
	}
	if implicit.Hash() != explicit.Hash() {
		t.Error("hashes differ")
	}
	rsa := parse("  privateKey: {algorithm: RSA}\n").Certificate().PrivateKey
	if diff := cmp.Diff(rsa, PrivateKey{Algorithm: "RSA", Size: 2048, RotationPolicy: "Always"}); diff != "" {
		t.Errorf("RSA defaults (-got +want):\n%s", diff)
	}
}

func TestValidate(t *testing.T) {
	files := fstest.MapFS{
		"issuers.yaml": {Data: []byte(`apiVersion: certops/v1
kind: Issuer
metadata: {name: ca}
spec:
  localCA: {certFile: /ca.crt, keyFile: /ca.key}
---
apiVersion: certops/v1
kind: Issuer
metadata: {name: le}
spec:
  acme:
    directoryURL: https://acme.example.com/dir
    accountKeyFile: /acme.key
    challenge: {http01: {webroot: /var/www}}
`)},
		"certs/a.yaml": {Data: []byte(`apiVersion: certops/v1
kind: Certificate
metadata: {name: shop}
spec:
  issuerRef: missing-ca
  commonName: shop.example.com
  deploy:
    agents:
      - web-01
      - web-02
    files: {cert: /c.pem}
---
apiVersion: certops/v1
kind: Certificate
metadata: {name: no-deploy}
spec:
  issuerRef: le
  commonName: x.example.com
`)},
		"certs/b.yaml": {Data: []byte(`apiVersion: certops/v1
kind: Certificate
metadata:
  name: shop
spec:
  issuerRef: ca
  commonName: shop.example.com
---
apiVersion: certops/v1
kind: Agent
metadata: {name: web-01}
spec: {tokenSHA256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
`)},
		"alerts.yaml": {Data: []byte(`apiVersion: certops/v1
kind: AlertPolicy
metadata: {name: one}
spec:
  notify: [nobody]
---
apiVersion: certops/v1
kind: AlertPolicy
metadata: {name: two}
spec: {}
---
apiVersion: certops/v1
kind: BackupPolicy
metadata: {name: one}
spec: {schedule: "@daily", retention: {count: 1}, destination: {directory: /b}}
---
apiVersion: certops/v1
kind: BackupPolicy
metadata: {name: two}
spec: {schedule: "@daily", retention: {count: 1}, destination: {directory: /b}}
`)},
	}
	_, err := Load(files)
	want := []string{
		`alerts.yaml:5: spec.notify[0]: NotificationChannel "nobody" does not exist`,
		`alerts.yaml:9: metadata.name: only one AlertPolicy is allowed, another is defined at alerts.yaml:3`,
		`alerts.yaml:19: metadata.name: only one BackupPolicy is allowed, another is defined at alerts.yaml:14`,
		`certs/a.yaml:5: spec.issuerRef: Issuer "missing-ca" does not exist`,
		`certs/a.yaml:10: spec.deploy.agents[1]: Agent "web-02" does not exist`,
		`certs/a.yaml:17: spec.issuerRef: Issuer "le" answers http-01 challenges on the deploying agents, so spec.deploy is required`,
		`certs/b.yaml:4: metadata.name: Certificate "shop" is already defined at certs/a.yaml:3`,
	}
	var errs ErrorList
	if err != nil {
		errs = err.(ErrorList)
	}
	if diff := cmp.Diff(errorStrings(t, errs), want); diff != "" {
		t.Errorf("Load errors (-got +want):\n%s", diff)
	}
}

// TestIncrementalMatchesLoad checks that parsing files one by one, as a
// reconciler does for changed files, and validating their union gives
// exactly what Load gives: the same errors for a broken tree, the same
// objects for a valid one.
func TestIncrementalMatchesLoad(t *testing.T) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		t.Run(dir, func(t *testing.T) {
			wantState, wantErr := LoadDir(dir)

			files := Files{}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				objs, errs := ParseFile(e.Name(), readTestdata(t, filepath.Join(dir, e.Name())))
				files[e.Name()] = ParsedFile{Objects: objs, Errors: errs}
			}
			gotState, gotErr := files.State()

			if diff := cmp.Diff(errString(gotErr), errString(wantErr)); diff != "" {
				t.Errorf("errors (-incremental +Load):\n%s", diff)
			}
			if diff := cmp.Diff(hashes(gotState), hashes(wantState)); diff != "" {
				t.Errorf("objects (-incremental +Load):\n%s", diff)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func hashes(s State) map[string]string {
	out := map[string]string{}
	for k, o := range s.Objects {
		out[k.String()] = o.Source.File + " " + o.Hash()
	}
	return out
}

func TestLoadDirSymlinks(t *testing.T) {
	dir := t.TempDir()
	valid := readTestdata(t, "testdata/valid/canonical.yaml")
	mustWrite(t, filepath.Join(dir, "conf", "canonical.yaml"), valid)
	mustWrite(t, filepath.Join(dir, "conf", ".git", "junk.yaml"), []byte("not: [valid"))
	mustWrite(t, filepath.Join(dir, "conf", "notes.txt"), []byte("ignored"))
	mustSymlink(t, "canonical.yaml", filepath.Join(dir, "conf", "again.yml"))         // inside: followed
	mustSymlink(t, "/etc/passwd", filepath.Join(dir, "conf", "passwd.yaml"))          // absolute, outside
	mustSymlink(t, "..", filepath.Join(dir, "conf", "sub", "up"))                     // parent directory, inside
	mustSymlink(t, "../..", filepath.Join(dir, "conf", "sub", "escape"))              // parent of the root
	mustSymlink(t, "../../outside.yaml", filepath.Join(dir, "conf", "sub", "o.yaml")) // relative, outside
	mustWrite(t, filepath.Join(dir, "outside.yaml"), valid)

	_, err := LoadDir(filepath.Join(dir, "conf"))
	errs, _ := err.(ErrorList)
	got := errorStrings(t, errs)
	// again.yml (first in file order) duplicates every object of
	// canonical.yaml: proof the symlink inside the tree was followed.
	want := []string{
		`canonical.yaml:3: metadata.name: Issuer "internal-ca" is already defined at again.yml:3`,
		`canonical.yaml:9: metadata.name: Agent "web-01" is already defined at again.yml:9`,
		`canonical.yaml:15: metadata.name: Certificate "shop-frontend" is already defined at again.yml:15`,
		`passwd.yaml: symlink points outside the repository`,
		`sub/escape: symlink points outside the repository`,
		`sub/o.yaml: symlink points outside the repository`,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("LoadDir errors (-got +want):\n%s", diff)
	}
}

func mustWrite(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, name); err != nil {
		t.Skipf("symlinks unsupported: %v", err)
	}
}

func TestReadFileTooLarge(t *testing.T) {
	fsys := fstest.MapFS{"big.yaml": {Data: []byte(strings.Repeat("#", MaxFileSize+1))}}
	_, err := Load(fsys)
	want := "big.yaml: file is larger than the limit of 1048576 bytes"
	if got := errString(err); got != want {
		t.Errorf("Load error = %q, want %q", got, want)
	}
}

func TestIsConfigFile(t *testing.T) {
	for name, want := range map[string]bool{
		"a.yaml": true, "dir/b.yml": true, "c.json": false, ".git/x.yaml": false,
		"dir/.hidden/y.yaml": false, ".z.yaml": false, "yaml": false,
	} {
		if got := IsConfigFile(name); got != want {
			t.Errorf("IsConfigFile(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestBillionLaughs checks that an alias bomb yields clear errors quickly
// instead of exhausting memory or time.
func TestBillionLaughs(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: certops/v1\nkind: Certificate\nmetadata: {name: lol}\nx:\n")
	b.WriteString(`  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]` + "\n")
	for i, c := range "bcdefghi" {
		prev := string("abcdefghi"[i])
		b.WriteString("  " + string(c) + ": &" + string(c) + " [" + strings.Repeat("*"+prev+",", 8) + "*" + prev + "]\n")
	}
	b.WriteString("spec:\n  issuerRef: ca\n  dnsNames: *i\n  usages: *i\n")

	start := time.Now()
	_, errs := ParseFile("lol.yaml", []byte(b.String()))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("ParseFile took %v", d)
	}
	got := errorStrings(t, errs)
	if len(got) == 0 || got[0] != `lol.yaml:4: unknown field "x"` {
		t.Errorf("errors = %q", got)
	}
	for _, e := range got[1:] {
		if !strings.Contains(e, "expected a string, got a list") {
			t.Errorf("unexpected error %q", e)
		}
	}
}

// TestAliasExpansionLimit checks the bound on nodes reached through aliases
// (the schema has no nested lists, so a bomb needs many list fields).
func TestAliasExpansionLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: certops/v1\nkind: Certificate\nmetadata:\n  name: c\n  annotations: {x: &n [")
	b.WriteString(strings.Repeat("a,", 400000))
	b.WriteString("a]}\nspec:\n  issuerRef: ca\n")
	for _, f := range []string{"dnsNames", "uris", "emailAddresses", "ipAddresses", "usages", "deploy"} {
		if f == "deploy" {
			b.WriteString("  deploy: {agents: *n, reload: *n, files: {cert: /c.pem}}\n")
			continue
		}
		b.WriteString("  " + f + ": *n\n")
	}
	data := []byte(b.String())
	if len(data) > MaxFileSize {
		t.Fatalf("test input is %d bytes", len(data))
	}
	_, errs := ParseFile("bomb.yaml", data)
	found := false
	for _, e := range errs {
		found = found || strings.Contains(e.Message, "document expands to more than 1048576 YAML nodes through aliases")
	}
	if !found || len(errs) > maxErrorsPerFile+1 {
		t.Errorf("got %d errors, want the alias limit reported: %v", len(errs), errs[:min(len(errs), 5)])
	}
}

func TestAliasesResolve(t *testing.T) {
	data := `apiVersion: certops/v1
kind: Certificate
metadata: {name: c, labels: &l {team: shop}}
spec:
  issuerRef: ca
  dnsNames: &names [a.example.com, b.example.com]
  deploy:
    agentSelector: {matchLabels: *l}
    files: {cert: /c.pem}
`
	objs, errs := ParseFile("a.yaml", []byte(data))
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	c := objs[0].Certificate()
	if !cmp.Equal(c.DNSNames, []string{"a.example.com", "b.example.com"}) || !c.Deploy.Selects("x", map[string]string{"team": "shop"}) {
		t.Errorf("aliases not resolved: %+v", c)
	}
}

func TestRenewal(t *testing.T) {
	pct := 10
	notBefore := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := notBefore.Add(90 * 24 * time.Hour)
	tests := []struct {
		name            string
		spec            CertificateSpec
		wantDuration    time.Duration
		wantRenewBefore time.Duration
		wantRenewal     time.Time
	}{
		{"defaults", CertificateSpec{}, 2160 * time.Hour, 720 * time.Hour, notBefore.Add(60 * 24 * time.Hour)},
		{"renewBefore", CertificateSpec{Duration: "240h", RenewBefore: "48h"}, 240 * time.Hour, 48 * time.Hour, notAfter.Add(-48 * time.Hour)},
		{"percentage", CertificateSpec{Duration: "100h", RenewBeforePercentage: &pct}, 100 * time.Hour, 10 * time.Hour, notAfter.Add(-216 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.spec.DurationValue(); got != tt.wantDuration {
				t.Errorf("DurationValue() = %v, want %v", got, tt.wantDuration)
			}
			if got := tt.spec.RenewBeforeValue(); got != tt.wantRenewBefore {
				t.Errorf("RenewBeforeValue() = %v, want %v", got, tt.wantRenewBefore)
			}
			if got := tt.spec.RenewalTime(notBefore, notAfter); !got.Equal(tt.wantRenewal) {
				t.Errorf("RenewalTime() = %v, want %v", got, tt.wantRenewal)
			}
		})
	}
}

func TestCron(t *testing.T) {
	valid := []string{"* * * * *", "*/5 * * * *", "0 3 * * *", "15 3 1,15 * mon-fri", "0 0 1 jan,jul *", "0-30/10 8-18 * * 1-5", "0 0 * * 7", "5/15 * * * *", "@daily", "@hourly", "@weekly", "@monthly", "@yearly"}
	for _, s := range valid {
		if err := checkCron(s); err != nil {
			t.Errorf("checkCron(%q) = %v", s, err)
		}
	}
	invalid := map[string]string{
		"* * * *":      "want 5 fields (minute hour day-of-month month day-of-week), got 4",
		"60 * * * *":   "minute: 60 is out of range 0-59",
		"* 24 * * *":   "hour: 24 is out of range 0-23",
		"* * 0 * *":    "day of month: 0 is out of range 1-31",
		"* * * 13 *":   "month: 13 is out of range 1-12",
		"* * * * 8":    "day of week: 8 is out of range 0-7",
		"*/0 * * * *":  `minute: invalid step "0"`,
		"5-1 * * * *":  "minute: range 5-1 is backwards",
		"* * * foo *":  `month: "foo" is not a number`,
		"1,,2 * * * *": "minute: empty value",
		"@reboot":      "unknown macro @reboot (want @hourly, @daily, @weekly, @monthly or @yearly)",
		"* * * * * *":  "want 5 fields (minute hour day-of-month month day-of-week), got 6",
	}
	for s, want := range invalid {
		err := checkCron(s)
		if got := errString(err); got != want {
			t.Errorf("checkCron(%q) = %q, want %q", s, got, want)
		}
	}
}

// TestErrorsHaveFileNames checks walk-level errors use slash paths relative to the root.
func TestErrorsHaveFileNames(t *testing.T) {
	fsys := fstest.MapFS{"a/b/c.yaml": {Data: []byte("kind: [")}}
	_, err := Load(fsys)
	errs, _ := err.(ErrorList)
	if len(errs) != 1 || errs[0].File != "a/b/c.yaml" {
		t.Errorf("errors = %v", errs)
	}
}
