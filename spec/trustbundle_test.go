package spec

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testCertPEM makes a self-signed certificate: a CA when ca is true.
func testCertPEM(t *testing.T, cn string, ca bool, notAfter time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter,
		BasicConstraintsValid: true, IsCA: ca,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// indent indents a PEM text for a YAML block scalar.
func indent(s, by string) string {
	return by + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+by)
}

func TestTrustBundleValid(t *testing.T) {
	ca := testCertPEM(t, "Old Root", true, time.Now().Add(24*time.Hour))
	files := fstest.MapFS{"trust.yaml": {Data: []byte(`apiVersion: certops/v1
kind: Issuer
metadata: {name: internal-ca}
spec:
  localCA: {certFile: /ca.crt, keyFile: /ca.key}
---
apiVersion: certops/v1
kind: Agent
metadata: {name: web-01, labels: {role: web}}
spec: {tokenSHA256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
---
apiVersion: certops/v1
kind: TrustBundle
metadata: {name: corp}
spec:
  sources:
    - issuer: internal-ca
    - pem: |
` + indent(ca, "        ") + `
  deploy:
    agentSelector: {matchLabels: {role: web}}
    files: {bundle: /etc/ssl/corp.pem, mode: "0644"}
    reload: [systemctl, reload, nginx]
`)}}
	st, err := Load(files)
	if err != nil {
		t.Fatal(err)
	}
	o := st.Get(KindTrustBundle, "corp")
	if o == nil || o.TrustBundle() == nil {
		t.Fatal("TrustBundle corp not loaded")
	}
	s := o.TrustBundle()
	if got := s.Deploy.Targeting().Selects("web-01", map[string]string{"role": "web"}); !got {
		t.Error("the bundle's targeting does not select web-01 by its label")
	}
	if len(s.Sources) != 2 || s.Sources[0].Issuer != "internal-ca" || !strings.Contains(s.Sources[1].PEM, "BEGIN CERTIFICATE") {
		t.Errorf("sources = %+v", s.Sources)
	}
}

// TestTrustBundleErrors checks each bad input is reported at its FILE:LINE
// and the revision is refused.
func TestTrustBundleErrors(t *testing.T) {
	leaf := testCertPEM(t, "shop.example.com", false, time.Now().Add(24*time.Hour))
	expired := testCertPEM(t, "Old Root", true, time.Now().Add(-time.Hour))
	files := fstest.MapFS{
		"base.yaml": {Data: []byte(`apiVersion: certops/v1
kind: Issuer
metadata: {name: ca}
spec:
  localCA: {certFile: /ca.crt, keyFile: /ca.key}
---
apiVersion: certops/v1
kind: Agent
metadata: {name: web-01, labels: {role: web}}
spec: {tokenSHA256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
---
apiVersion: certops/v1
kind: Certificate
metadata: {name: shop}
spec:
  issuerRef: ca
  commonName: shop.example.com
  deploy:
    agents: [web-01]
    files: {cert: /etc/ssl/shop.pem}
`)},
		"trust.yaml": {Data: []byte(`apiVersion: certops/v1
kind: TrustBundle
metadata: {name: bad}
spec:
  sources:
    - issuer: nope
    - pem: "not pem at all"
    - pem: |
` + indent(leaf, "        ") + `
    - pem: |
` + indent(expired, "        ") + `
    - pem: |
        -----BEGIN PRIVATE KEY-----
        AAAA
        -----END PRIVATE KEY-----
    - {}
  deploy:
    agentSelector: {matchLabels: {role: web}}
    files: {bundle: /etc/ssl/shop.pem, mode: "999"}
    reload: []
---
apiVersion: certops/v1
kind: TrustBundle
metadata: {name: empty}
spec:
  sources: []
  deploy:
    agents: [web-01, ghost]
    files: {bundle: relative.pem}
`)},
	}
	_, err := Load(files)
	if err == nil {
		t.Fatal("Load accepted a broken revision")
	}
	// Lines: the leaf's source is at line 8, the expired CA's one
	// line after the leaf's last, the key's one after the CA's last.
	lines := func(pem string) int { return strings.Count(strings.TrimSpace(pem), "\n") + 1 }
	expiredAt := 8 + lines(leaf) + 1
	keyAt := expiredAt + lines(expired) + 1
	bundleAt := keyAt + 7
	got := errorStrings(t, err.(ErrorList))
	for i, g := range got { // the expiry date varies
		if before, _, ok := strings.Cut(g, " expired on "); ok {
			got[i] = before + " expired on DATE"
		}
	}
	want := []string{
		`base.yaml:20: spec.deploy.files.cert: "/etc/ssl/shop.pem" is also the bundle path of TrustBundle "bad" (trust.yaml:` + strconv.Itoa(bundleAt) + `) on Agent "web-01"; the two would overwrite each other there`,
		`trust.yaml:6: spec.sources[0].issuer: Issuer "nope" does not exist`,
		`trust.yaml:7: spec.sources[1].pem: block 1: text that is not a PEM block (want only "-----BEGIN CERTIFICATE-----" blocks)`,
		`trust.yaml:8: spec.sources[2].pem: block 1 (CN=shop.example.com) is not a CA certificate (no basicConstraints CA:TRUE); a trust bundle holds CA certificates only`,
		`trust.yaml:` + strconv.Itoa(expiredAt) + `: spec.sources[3].pem: block 1 (CN=Old Root) expired on DATE`,
		`trust.yaml:` + strconv.Itoa(keyAt) + `: spec.sources[4].pem: block 1 is a private key (PRIVATE KEY): never commit keys; a trust bundle holds CA certificates only`,
		`trust.yaml:` + strconv.Itoa(keyAt+4) + `: spec.sources[5]: one of issuer, pem is required`,
		`trust.yaml:` + strconv.Itoa(bundleAt) + `: spec.deploy.files.bundle: "/etc/ssl/shop.pem" is also the cert path of Certificate "shop" (base.yaml:20) on Agent "web-01"; the two would overwrite each other there`,
		`trust.yaml:` + strconv.Itoa(bundleAt) + `: spec.deploy.files.mode: "999" is not an octal file mode up to "0777" (e.g. "0644")`,
		`trust.yaml:` + strconv.Itoa(bundleAt+1) + `: spec.deploy.reload: must be a non-empty argv list whose first element is the command`,
		`trust.yaml:` + strconv.Itoa(bundleAt+7) + `: spec.sources: at least one source is required`,
		`trust.yaml:` + strconv.Itoa(bundleAt+9) + `: spec.deploy.agents[1]: Agent "ghost" does not exist`,
		`trust.yaml:` + strconv.Itoa(bundleAt+10) + `: spec.deploy.files.bundle: "relative.pem" is not an absolute path`,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Load errors (-got +want):\n%s", diff)
	}
	for _, g := range got {
		if strings.Contains(g, "AAAA") {
			t.Errorf("an error shows the private key block: %s", g)
		}
	}
}

func TestParseCACertificates(t *testing.T) {
	a := testCertPEM(t, "A", true, time.Now().Add(time.Hour))
	b := testCertPEM(t, "B", true, time.Now().Add(time.Hour))
	certs, err := ParseCACertificates(a+"\n"+b, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range certs {
		names = append(names, c.Subject.CommonName)
	}
	if diff := cmp.Diff(names, []string{"A", "B"}); diff != "" {
		t.Errorf("names (-got +want):\n%s", diff)
	}
	if _, err := ParseCACertificates(a+"trailing junk", time.Now()); err == nil || !strings.Contains(err.Error(), "block 2") {
		t.Errorf("trailing junk: err = %v, want block 2 refused", err)
	}
	if _, err := ParseCACertificates("  \n", time.Now()); err == nil {
		t.Error("empty text accepted")
	}
}
