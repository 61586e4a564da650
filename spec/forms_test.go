package spec

import (
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// formsDoc is a Certificate whose deploy.files block is files (indented
// by six spaces), starting on line 11 of the document.
func formsDoc(name, agent, files string) string {
	return fmt.Sprintf(`---
apiVersion: certops/v1
kind: Certificate
metadata: {name: %s}
spec:
  issuerRef: ca
  commonName: x.example.com
  deploy:
    agents: [%s]
    files:
%s`, name, agent, files)
}

const formsAgents = `apiVersion: certops/v1
kind: Agent
metadata: {name: web-01}
spec: {tokenSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
---
apiVersion: certops/v1
kind: Agent
metadata: {name: web-02}
spec: {tokenSHA256: "2e199ceddcc5bb628881a5b4ea4bede9c64cf188af795bf8f5d9a2503e1b74e5"}
---
apiVersion: certops/v1
kind: Issuer
metadata: {name: ca}
spec: {localCA: {certFile: /ca.crt, keyFile: /ca.key}}
`

// loadForms loads the agents, the issuer and certs, and returns the
// errors as strings.
func loadForms(t *testing.T, certs string) []string {
	t.Helper()
	_, err := Load(fstest.MapFS{
		"agents.yaml": {Data: []byte(formsAgents)},
		"certs.yaml":  {Data: []byte(certs)},
	})
	errs, _ := err.(ErrorList)
	return errorStrings(t, errs)
}

func TestDeployForms(t *testing.T) {
	tests := []struct {
		name  string
		files string
		want  []string
	}{
		{"every form", `      combined: /etc/ssl/x/combined.pem
      der: /etc/ssl/x/cert.der
      pkcs12: /etc/ssl/x/keystore.p12
      pkcs12PasswordFile: /etc/certops/p12.pass
      pkcs12FriendlyName: Shop TLS (prod)
      jks: /etc/ssl/x/keystore.jks
      jksPasswordFile: /etc/certops/p12.pass
      jksAlias: x.example.com
      layout: symlink
`, nil},
		{"a key container alone", "      pkcs12: /srv/app/tls.p12\n      pkcs12PasswordFile: /etc/app/p12.pass\n", nil},
		{"no form", "      key: /etc/ssl/x/key.pem\n      chain: /etc/ssl/x/chain.pem\n", []string{
			`certs.yaml:10: spec.deploy.files: at least one of cert, fullchain, combined, der, pkcs12 or jks is required`,
		}},
		{"password files missing", "      pkcs12: /etc/ssl/x/x.p12\n      jks: /etc/ssl/x/x.jks\n", []string{
			`certs.yaml:10: spec.deploy.files.jksPasswordFile: required with jks: the path of a file on the agent host that holds the jks password (never the password itself)`,
			`certs.yaml:10: spec.deploy.files.pkcs12PasswordFile: required with pkcs12: the path of a file on the agent host that holds the pkcs12 password (never the password itself)`,
		}},
		{"password and alias without their form", "      der: /etc/ssl/x/x.der\n      pkcs12PasswordFile: /etc/p\n      jksPasswordFile: /etc/p\n      jksAlias: web\n", []string{
			`certs.yaml:12: spec.deploy.files.pkcs12PasswordFile: is set, but pkcs12 is not: drop it or set pkcs12`,
			`certs.yaml:13: spec.deploy.files.jksPasswordFile: is set, but jks is not: drop it or set jks`,
			`certs.yaml:14: spec.deploy.files.jksAlias: is set, but jks is not: drop it or set jks`,
		}},
		{"bad paths", "      combined: etc/combined.pem\n      der: /etc/ssl/../x.der\n      pkcs12: /etc/ssl/x.p12\n      pkcs12PasswordFile: hunter2\n", []string{
			`certs.yaml:11: spec.deploy.files.combined: "etc/combined.pem" is not an absolute path`,
			`certs.yaml:12: spec.deploy.files.der: "/etc/ssl/../x.der" must not contain ".."`,
			`certs.yaml:14: spec.deploy.files.pkcs12PasswordFile: is not an absolute path; give the path of the file that holds the secret, not the secret itself (value not shown: it may be a secret)`,
		}},
		{"the same path twice", "      cert: /etc/ssl/x.pem\n      combined: /etc/ssl/x.pem\n      jks: /etc/ssl/x.jks\n      jksPasswordFile: /etc/ssl/x.jks\n", []string{
			`certs.yaml:12: spec.deploy.files.combined: "/etc/ssl/x.pem" is also the cert path`,
			`certs.yaml:14: spec.deploy.files.jksPasswordFile: "/etc/ssl/x.jks" is also the jks path, which the agent writes`,
		}},
		{"friendly name without pkcs12", "      der: /etc/ssl/x/x.der\n      pkcs12FriendlyName: shop\n", []string{
			`certs.yaml:12: spec.deploy.files.pkcs12FriendlyName: is set, but pkcs12 is not: drop it or set pkcs12`,
		}},
		{"bad friendly name", "      pkcs12: /etc/ssl/x.p12\n      pkcs12PasswordFile: /etc/p\n      pkcs12FriendlyName: \"key \\U0001F511\"\n", []string{
			`certs.yaml:13: spec.deploy.files.pkcs12FriendlyName: "key 🔑" is not a friendly name: 1 to 64 printable characters of the Basic Multilingual Plane`,
		}},
		{"bad alias", "      jks: /etc/ssl/x.jks\n      jksPasswordFile: /etc/jks.pass\n      jksAlias: Web Server\n", []string{
			`certs.yaml:13: spec.deploy.files.jksAlias: "Web Server" is not a keystore alias: lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 (keytool shows aliases lowercased)`,
		}},
		{"symlink across directories", "      combined: /etc/haproxy/x.pem\n      der: /etc/ssl/x.der\n      layout: symlink\n", []string{
			`certs.yaml:13: spec.deploy.files.layout: symlink needs every file in one directory, but /etc/ssl/x.der is not in /etc/haproxy/`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := loadForms(t, formsDoc("x", "web-01", tt.files))
			if diff := cmp.Diff(got, tt.want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}

// TestDeployFormsSharedOnAnAgent checks that the new forms count in the
// check that no two Certificates write one file on an agent.
func TestDeployFormsSharedOnAnAgent(t *testing.T) {
	a := formsDoc("a", "web-01", "      cert: /etc/ssl/a.pem\n      combined: /etc/haproxy/site.pem\n")
	b := formsDoc("b", "web-01", "      pkcs12: /etc/haproxy/site.pem\n      pkcs12PasswordFile: /etc/p\n")
	want := []string{
		`certs.yaml:12: spec.deploy.files.combined: "/etc/haproxy/site.pem" is also the pkcs12 path of Certificate "b" (certs.yaml:23) on Agent "web-01"; the two would overwrite each other there`,
		`certs.yaml:23: spec.deploy.files.pkcs12: "/etc/haproxy/site.pem" is also the combined path of Certificate "a" (certs.yaml:12) on Agent "web-01"; the two would overwrite each other there`,
	}
	if diff := cmp.Diff(loadForms(t, a+b), want); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}
	// On different agents the same path is fine.
	b = formsDoc("b", "web-02", "      pkcs12: /etc/haproxy/site.pem\n      pkcs12PasswordFile: /etc/p\n")
	if got := loadForms(t, a+b); len(got) != 0 {
		t.Errorf("errors %q, want none", got)
	}
}
