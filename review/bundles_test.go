package review

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
)

// caPEM makes a CA certificate and returns it with a reviewer's
// description of it ("CN=NAME (SHA-256 …, until DATE)").
func caPEM(t *testing.T, name string) (string, string) {
	t.Helper()
	certPEM, _, err := pki.NewCA(pki.CAOptions{CommonName: name})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.Raw)
	return string(certPEM), c.Subject.String() + " (SHA-256 " + hex.EncodeToString(sum[:]) + ", until " + c.NotAfter.UTC().Format("2006-01-02") + ")"
}

// TestPlanShowsBundleRotation: a CA rotation in two commits (the new CA
// added beside the old, then the old removed) shows in the plan as the
// bundle's changed sources, summarized per certificate, and "On the hosts"
// names the bundle's path and agents.
func TestPlanShowsBundleRotation(t *testing.T) {
	oldPEM, oldDesc := caPEM(t, "Old Root")
	newPEM, newDesc := caPEM(t, "New Root")
	agent := &spec.Object{Kind: spec.KindAgent, Name: "web-01", Labels: map[string]string{"role": "web"},
		Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("a", 64)}, Source: spec.Position{File: "agents.yaml", Line: 1}}
	bundle := func(pems ...string) *spec.Object {
		s := &spec.TrustBundleSpec{Deploy: spec.TrustBundleDeploy{
			AgentSelector: &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}},
			Files:         spec.BundleFiles{Bundle: "/etc/ssl/certs/corp-roots.pem"},
			Reload:        []string{"systemctl", "reload", "nginx"}}}
		for _, p := range pems {
			s.Sources = append(s.Sources, spec.TrustSource{PEM: p})
		}
		return &spec.Object{Kind: spec.KindTrustBundle, Name: "corp-roots", Spec: s, Source: spec.Position{File: "trust.yaml", Line: 1}}
	}
	text := func(r Report) string {
		var b bytes.Buffer
		if err := r.Text(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	hosts := "On the hosts (what the agents will write and run; each host's policy decides):\n" +
		"  TrustBundle/corp-roots (sources) on web-01\n" +
		"    files:  /etc/ssl/certs/corp-roots.pem\n" +
		"    reload: [\"systemctl\",\"reload\",\"nginx\"]\n"

	// Step 1: the new CA beside the old one.
	step1 := buildReport(t, "main", "add-new-root", objects(agent, bundle(oldPEM)), objects(agent, bundle(oldPEM, newPEM)))
	out := text(step1)
	for _, want := range []string{
		"TrustBundle", "corp-roots",
		"spec.sources[1].pem", newDesc,
		hosts,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("step 1 plan lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Errorf("the plan shows PEM text instead of a summary:\n%s", out)
	}
	if len(step1.Changes) != 1 || step1.Changes[0].Kind != spec.KindTrustBundle || len(step1.Changes[0].Fields) != 1 {
		t.Errorf("step 1 changes = %+v, want one TrustBundle update with one field", step1.Changes)
	}

	// Step 2: the old CA removed.
	step2 := buildReport(t, "main", "drop-old-root", objects(agent, bundle(oldPEM, newPEM)), objects(agent, bundle(newPEM)))
	out = text(step2)
	for _, want := range []string{"spec.sources[0].pem", oldDesc, newDesc, "spec.sources[1].pem", hosts} {
		if !strings.Contains(out, want) {
			t.Errorf("step 2 plan lacks %q:\n%s", want, out)
		}
	}
	var md bytes.Buffer
	if err := step2.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "TrustBundle/corp-roots (sources) on web-01") {
		t.Errorf("markdown lacks the bundle's host entry:\n%s", md.String())
	}

	// A new bundle: every host field, marked new.
	if got := changesOnHosts(objects(agent), objects(agent, bundle(newPEM))); len(got) != 1 || got[0].Bundle != "corp-roots" ||
		got[0].Changed[0] != "new" || got[0].Paths[0] != "/etc/ssl/certs/corp-roots.pem" {
		t.Errorf("new bundle host changes = %+v", got)
	}
}
