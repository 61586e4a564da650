package agentapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

func bundleObj(name string, sources ...spec.TrustSource) *spec.Object {
	return &spec.Object{Kind: spec.KindTrustBundle, Name: name, Spec: &spec.TrustBundleSpec{
		Sources: sources,
		Deploy: spec.TrustBundleDeploy{AgentSelector: &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}},
			Files:  spec.BundleFiles{Bundle: "/etc/ssl/" + name + ".pem", Mode: "0644"},
			Reload: []string{"nginx", "-s", "reload"}},
	}}
}

// derOf is the DER of every CERTIFICATE block of text.
func derOf(t *testing.T, text string) []string {
	t.Helper()
	var out []string
	rest := []byte(text)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		out = append(out, hex.EncodeToString(b.Bytes))
	}
}

func (e *env) bundles(agent string) (map[string]agentproto.Bundle, string) {
	e.t.Helper()
	a, etag := e.assignments(agent)
	out := map[string]agentproto.Bundle{}
	for _, b := range a.Bundles {
		out[b.Name] = b
	}
	return out, etag
}

// TestBundleAssignments: the agents a TrustBundle targets get its PEM,
// computed from the sources (the local CA's certificate, committed PEM),
// each certificate once; a change of the sources changes the bundle and
// the ETag of exactly its agents.
func TestBundleAssignments(t *testing.T) {
	e := newEnv(t, envOptions{}, append(fleetObjs(), bundleObj("roots", spec.TrustSource{Issuer: "internal-ca"}))...)
	caDER := derOf(t, string(e.caCert))

	got, etag1 := e.bundles("web-01")
	b, ok := got["roots"]
	if !ok {
		t.Fatalf("web-01 has no bundle roots: %+v", got)
	}
	if diff := cmp.Diff(derOf(t, b.PEM), caDER); diff != "" {
		t.Errorf("bundle certificates (-got +want):\n%s", diff)
	}
	sum := sha256.Sum256([]byte(b.PEM))
	if b.SHA256 != hex.EncodeToString(sum[:]) || b.Files.Bundle != "/etc/ssl/roots.pem" || b.Files.Mode != "0644" ||
		!cmp.Equal(b.Reload, []string{"nginx", "-s", "reload"}) {
		t.Errorf("bundle = %+v", b)
	}
	if got, _ := e.bundles("db-01"); len(got) != 0 {
		t.Errorf("db-01 (not role=web) got bundles %+v", got)
	}
	_, dbTag := e.assignments("db-01")

	// A CA rotation, step 1: a new CA beside the old one (and the old one
	// committed as PEM too: it appears once).
	newCA, _, err := pki.NewCA(pki.CAOptions{CommonName: "New Root"})
	if err != nil {
		t.Fatal(err)
	}
	e.apply(bundleObj("roots", spec.TrustSource{Issuer: "internal-ca"}, spec.TrustSource{PEM: string(newCA)},
		spec.TrustSource{PEM: string(e.caCert)}))
	e.refresh()
	got, etag2 := e.bundles("web-01")
	if diff := cmp.Diff(derOf(t, got["roots"].PEM), append(caDER, derOf(t, string(newCA))...)); diff != "" {
		t.Errorf("after adding the new CA (-got +want):\n%s", diff)
	}
	if etag2 == etag1 {
		t.Error("the ETag did not change with a new source")
	}
	if _, tag := e.assignments("db-01"); tag != dbTag {
		t.Errorf("db-01's ETag changed (%s → %s) though its assignments did not", dbTag, tag)
	}

	// Step 2: the old CA removed.
	e.apply(bundleObj("roots", spec.TrustSource{PEM: string(newCA)}))
	e.refresh()
	got, etag3 := e.bundles("web-02")
	if diff := cmp.Diff(derOf(t, got["roots"].PEM), derOf(t, string(newCA))); diff != "" {
		t.Errorf("after removing the old CA (-got +want):\n%s", diff)
	}
	if etag3 == etag2 {
		t.Error("the ETag did not change when a source was removed")
	}

	// Deleted: the agents lose it.
	e.remove(spec.Key{Kind: spec.KindTrustBundle, Name: "roots"})
	e.refresh()
	if got, _ := e.bundles("web-01"); len(got) != 0 {
		t.Errorf("after deletion web-01 still has %+v", got)
	}
}

// TestBundleReports: an agent reports its bundles; a report for a bundle
// not assigned to it, or without what it must carry, is refused.
func TestBundleReports(t *testing.T) {
	e := newEnv(t, envOptions{}, append(fleetObjs(), bundleObj("roots", spec.TrustSource{Issuer: "internal-ca"}))...)
	got, _ := e.bundles("web-01")
	sum := got["roots"].SHA256
	for _, tc := range []struct {
		name   string
		agent  string
		report agentproto.Report
		status int
	}{
		{"installed", "web-01", agentproto.Report{Bundle: "roots", SHA256: sum, Result: agentproto.ResultInstalled}, http.StatusNoContent},
		{"rolled back", "web-01", agentproto.Report{Bundle: "roots", SHA256: sum, Result: agentproto.ResultRolledBack, Stage: agentproto.StageReload, Error: "exit 1"}, http.StatusNoContent},
		{"not assigned", "db-01", agentproto.Report{Bundle: "roots", SHA256: sum, Result: agentproto.ResultInstalled}, http.StatusNotFound},
		{"unknown", "web-01", agentproto.Report{Bundle: "nope", SHA256: sum, Result: agentproto.ResultInstalled}, http.StatusNotFound},
		{"no sha256", "web-01", agentproto.Report{Bundle: "roots", Result: agentproto.ResultInstalled}, http.StatusBadRequest},
		{"with a serial", "web-01", agentproto.Report{Bundle: "roots", Serial: "01", SHA256: sum, Result: agentproto.ResultInstalled}, http.StatusBadRequest},
		{"bad result", "web-01", agentproto.Report{Bundle: "roots", SHA256: sum, Result: "done"}, http.StatusBadRequest},
	} {
		if r := e.do("POST", agentproto.PathReports, tokenOf(tc.agent), tc.report); r.status != tc.status {
			t.Errorf("%s: got %d %s, want %d", tc.name, r.status, r.body, tc.status)
		}
	}
}

// TestBundleACMERoot: an ACME issuer's source is the last certificate of
// the chain of the newest certificate issued through it; nothing before
// the first issuance.
func TestBundleACMERoot(t *testing.T) {
	acme := &spec.Object{Kind: spec.KindIssuer, Name: "public", Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{
		DirectoryURL: "https://acme.invalid/directory", AccountKeyFile: filepath.Join(t.TempDir(), "account.key"),
		Challenge: spec.ACMEChallenge{DNS01: &spec.DNS01Challenge{PresentScript: "/bin/true"}}}}}
	www := certObj("www", []string{"web-01"}, nil)
	www.Certificate().IssuerRef = "public"
	e := newEnv(t, envOptions{}, append(fleetObjs(), acme, www, bundleObj("public-roots", spec.TrustSource{Issuer: "public"}))...)
	if got, _ := e.bundles("web-01"); len(got) != 0 {
		t.Fatalf("before any ACME issuance web-01 got %+v", got)
	}
	issue := func(serial string, notBefore time.Time, chain ...string) {
		t.Helper()
		v := state.CertificateVersion{Certificate: "www", Agent: "web-01", SpecHash: assign.SpecHash(www.Certificate()),
			Serial: serial, SHA256: strings.Repeat(serial, 64/len(serial)), NotBefore: notBefore, NotAfter: notBefore.Add(90 * 24 * time.Hour),
			CertPEM: "leaf", ChainPEM: strings.Join(chain, ""), Issuer: "public", IssuedAt: notBefore}
		if _, err := e.st.RecordIssuance(context.Background(), store.Issuance{Version: v, RenewAt: notBefore.Add(60 * 24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		e.refresh()
	}
	ca := func(name string) string {
		p, _, err := pki.NewCA(pki.CAOptions{CommonName: name})
		if err != nil {
			t.Fatal(err)
		}
		return string(p)
	}
	intermediate, root, root2 := ca("Intermediate"), ca("Root X1"), ca("Root X2")
	now := time.Now().UTC().Truncate(time.Second)
	issue("0a", now, intermediate, root)
	got, etag1 := e.bundles("web-01")
	if diff := cmp.Diff(derOf(t, got["public-roots"].PEM), derOf(t, root)); diff != "" {
		t.Errorf("bundle after the first issuance (-got +want):\n%s", diff)
	}
	issue("0b", now.Add(time.Hour), intermediate, root2)
	got, etag2 := e.bundles("web-01")
	if diff := cmp.Diff(derOf(t, got["public-roots"].PEM), derOf(t, root2)); diff != "" {
		t.Errorf("bundle after a newer chain (-got +want):\n%s", diff)
	}
	if etag1 == etag2 {
		t.Error("the ETag did not change with the ACME root")
	}
}
