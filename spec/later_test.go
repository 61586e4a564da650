package spec

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// TestCatchesWhatFailsLater covers the mistakes that used to validate and
// fail only once applied: each bad document gives its FILE:LINE error, and
// its valid neighbour gives none.
func TestCatchesWhatFailsLater(t *testing.T) {
	const agent = "apiVersion: certops/v1\nkind: Agent\nmetadata: {name: a}\nspec:\n"
	const cert = "apiVersion: certops/v1\nkind: Certificate\nmetadata: {name: c}\nspec:\n  issuerRef: ca\n  commonName: c.example.com\n"
	const deploy = cert + "  deploy:\n    agents: [a]\n    files: {cert: /c.pem}\n"
	const smtp = "apiVersion: certops/v1\nkind: NotificationChannel\nmetadata: {name: m}\nspec:\n  smtp:\n    host: smtp.example.com\n    port: 587\n    from: certops@example.com\n    to: [ops@example.com]\n"
	const alert = "apiVersion: certops/v1\nkind: AlertPolicy\nmetadata: {name: p}\nspec:\n  certificateExpiring:\n"
	const dns01 = "apiVersion: certops/v1\nkind: Issuer\nmetadata: {name: le}\nspec:\n  acme:\n    directoryURL: https://acme.example.com/dir\n    accountKeyFile: /acme.key\n    challenge:\n"
	for _, tt := range []struct {
		name, bad, good string
		want            []string
	}{
		{"reload command line in argv[0]",
			deploy + "    reload: [\"systemctl reload nginx\", --no-block]\n",
			deploy + "    reload: [systemctl, reload, nginx, --no-block]\n",
			[]string{`x.yaml:10: spec.deploy.reload[0]: "systemctl reload nginx" is a whole command line in one element, but reload is an argv list run without a shell, so no program of that name exists; write [systemctl, reload, nginx, --no-block]`}},
		{"reload split form quotes what YAML would not read as a string",
			deploy + "    reload: [\"sleep 1\"]\n",
			deploy + "    reload: [sleep, \"1\"]\n",
			[]string{`x.yaml:10: spec.deploy.reload[0]: "sleep 1" is a whole command line in one element, but reload is an argv list run without a shell, so no program of that name exists; write [sleep, "1"]`}},
		{"SMTP credentials without STARTTLS",
			smtp + "    startTLS: false\n    username: certops\n    passwordFile: /pw\n",
			smtp + "    startTLS: false\n",
			[]string{`x.yaml:10: spec.smtp.startTLS: false with username or passwordFile set: certops never sends credentials over a plain-text connection, so every delivery would be refused; set startTLS: true, or drop username and passwordFile for an unauthenticated relay`}},
		{"SMTP credentials with STARTTLS by default",
			smtp + "    startTLS: false\n    passwordFile: /pw\n",
			smtp + "    username: certops\n    passwordFile: /pw\n",
			[]string{`x.yaml:10: spec.smtp.startTLS: false with username or passwordFile set: certops never sends credentials over a plain-text connection, so every delivery would be refused; set startTLS: true, or drop username and passwordFile for an unauthenticated relay`}},
		{"warning duration not longer than critical",
			alert + "    warning: {remaining: 72h}\n    critical: {remaining: 72h}\n",
			alert + "    warning: {remaining: 73h}\n    critical: {remaining: 72h}\n",
			[]string{`x.yaml:6: spec.certificateExpiring.warning.remaining: 72h is not longer than critical.remaining 72h, so the warning can never fire before the critical alert`}},
		{"warning fraction smaller than critical",
			alert + "    warning: {remaining: 336h, remainingFraction: 0.1}\n    critical: {remainingFraction: 0.2}\n",
			alert + "    warning: {remaining: 336h, remainingFraction: 0.3}\n    critical: {remaining: 72h, remainingFraction: 0.2}\n",
			[]string{`x.yaml:6: spec.certificateExpiring.warning.remainingFraction: 0.1 is not larger than critical.remainingFraction 0.2, so the warning can never fire before the critical alert`}},
		{"an invalid threshold is reported once",
			alert + "    warning: {remaining: 1 day}\n    critical: {remaining: 72h}\n",
			alert + "    warning: {remaining: 24h}\n",
			[]string{`x.yaml:6: spec.certificateExpiring.warning.remaining: "1 day" is not a valid duration (use Go syntax such as "720h" or "90m")`}},
		{"DNS provider not compiled in",
			dns01 + "      dns01: {provider: route53}\n",
			dns01 + "      dns01: {provider: cloudflare}\n",
			[]string{`x.yaml:9: spec.acme.challenge.dns01.provider: "route53" is not a DNS provider compiled into certops (want one of acmedns, cloudflare, exec, httpreq, pdns)`}},
		{"token hash of the empty string",
			agent + "  tokenSHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
			agent + "  tokenSHA256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n",
			[]string{`x.yaml:5: spec.tokenSHA256: is the SHA-256 of the empty string, so the token it was made from was empty (an empty token file?); hash the real token`}},
		{"key encipherment with ECDSA",
			cert + "  usages: [digital signature, key-encipherment, server auth]\n",
			cert + "  privateKey: {algorithm: RSA}\n  usages: [digital signature, key-encipherment, server auth]\n",
			[]string{`x.yaml:7: spec.usages[1]: "key-encipherment" contradicts the ECDSA key, which cannot encipher (RFC 8813); use "digital signature"`}},
		{"key encipherment with Ed25519",
			cert + "  privateKey: {algorithm: Ed25519}\n  usages: [key encipherment, key agreement]\n",
			cert + "  privateKey: {algorithm: Ed25519}\n  usages: [digital signature]\n",
			[]string{
				`x.yaml:8: spec.usages[0]: "key encipherment" contradicts the Ed25519 key, which can only sign (RFC 8410, section 5); use "digital signature"`,
				`x.yaml:8: spec.usages[1]: "key agreement" contradicts the Ed25519 key, which can only sign (RFC 8410, section 5); use "digital signature"`,
			}},
		{"key agreement with RSA",
			cert + "  privateKey: {algorithm: RSA}\n  usages: [digital signature, key-agreement, server auth]\n",
			cert + "  privateKey: {algorithm: RSA}\n  usages: [digital signature, content commitment, key encipherment, data encipherment, server auth]\n",
			[]string{`x.yaml:8: spec.usages[1]: "key-agreement" contradicts the RSA key, which can sign and encipher but not agree keys (RFC 3279, section 2.3.1); use "key encipherment" or "digital signature"`}},
		{"encipher only and decipher only with RSA",
			cert + "  privateKey: {algorithm: RSA, size: 3072}\n  usages: [key encipherment, encipher only, decipher-only]\n",
			cert + "  privateKey: {algorithm: RSA, size: 3072}\n  usages: [key encipherment]\n",
			[]string{
				`x.yaml:8: spec.usages[1]: "encipher only" contradicts the RSA key: it restricts key agreement, which an RSA key cannot do (RFC 3279, section 2.3.1); drop it`,
				`x.yaml:8: spec.usages[2]: "decipher-only" contradicts the RSA key: it restricts key agreement, which an RSA key cannot do (RFC 3279, section 2.3.1); drop it`,
			}},
		{"encipher only without key agreement with ECDSA",
			cert + "  usages: [digital signature, encipher only]\n",
			cert + "  usages: [digital signature, key agreement, encipher only]\n",
			[]string{`x.yaml:7: spec.usages[1]: "encipher only" only restricts "key agreement", which spec.usages does not list, so it means nothing on its own (RFC 5280, 4.2.1.3); add "key agreement" or drop it`}},
		{"decipher only without key agreement with ECDSA",
			cert + "  privateKey: {algorithm: ECDSA}\n  usages: [decipher-only]\n",
			cert + "  privateKey: {algorithm: ECDSA}\n  usages: [key-agreement, decipher-only]\n",
			[]string{`x.yaml:8: spec.usages[0]: "decipher-only" only restricts "key agreement", which spec.usages does not list, so it means nothing on its own (RFC 5280, 4.2.1.3); add "key agreement" or drop it`}},
		{"encipher only and decipher only together",
			cert + "  usages: [key agreement, encipher only, decipher only, encipher-only]\n",
			cert + "  usages: [key agreement, encipher only, encipher-only]\n",
			[]string{`x.yaml:7: spec.usages[2]: "decipher only" contradicts "encipher only" at spec.usages[1]: the key may be restricted to enciphering or to deciphering during key agreement, not both (RFC 5480, section 3); keep one of them`}},
		{"CA usages on a leaf",
			cert + "  usages: [digital signature, cert sign, crl-sign]\n",
			cert + "  usages: [digital signature, ocsp signing]\n",
			[]string{
				`x.yaml:7: spec.usages[1]: "cert sign" is for CA certificates; certops issues leaf certificates, which must not carry it (RFC 5280, 4.2.1.3)`,
				`x.yaml:7: spec.usages[2]: "crl-sign" is for CA certificates; certops issues leaf certificates, which must not carry it (RFC 5280, 4.2.1.3)`,
			}},
		{"DNS names say which rule they break",
			cert + "  dnsNames:\n    - a..example.com\n    - -a.example.com\n    - a-.example.com\n    - " + string(make64('x')) + ".example.com\n    - example.com.\n",
			cert + "  dnsNames: [a.example.com, a-b.example.com, \"*.example.com\"]\n",
			[]string{
				`x.yaml:8: spec.dnsNames[0]: "a..example.com" is not a valid DNS name: it has an empty label (a leading dot or two dots in a row)`,
				`x.yaml:9: spec.dnsNames[1]: "-a.example.com" is not a valid DNS name: label "-a" starts with a hyphen`,
				`x.yaml:10: spec.dnsNames[2]: "a-.example.com" is not a valid DNS name: label "a-" ends with a hyphen`,
				`x.yaml:11: spec.dnsNames[3]: "` + string(make64('x')) + `.example.com" is not a valid DNS name: label "` + string(make64('x')) + `" is 64 characters long, more than 63`,
				`x.yaml:12: spec.dnsNames[4]: "example.com." is not a valid DNS name: it ends with a dot (write it without the trailing dot)`,
			}},
		{"renewBefore shows the default duration as written",
			cert + "  renewBefore: 2160h\n",
			cert + "  renewBefore: 720h\n",
			[]string{`x.yaml:7: spec.renewBefore: 2160h must be shorter than the default duration 2160h`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := ParseFile("x.yaml", []byte(tt.bad))
			if diff := cmp.Diff(errorStrings(t, errs), tt.want); diff != "" {
				t.Errorf("bad: errors (-got +want):\n%s", diff)
			}
			if _, errs := ParseFile("x.yaml", []byte(tt.good)); len(errs) != 0 {
				t.Errorf("good: errors %q, want none", errorStrings(t, errs))
			}
		})
	}
}

func make64(b byte) []byte {
	out := make([]byte, 64)
	for i := range out {
		out[i] = b
	}
	return out
}

func TestFlowListReadsBack(t *testing.T) {
	argv := []string{"/usr/bin/x", "-s", "--no-block", "1", "-1", ".5", "true", "a b", "", "k=v", "a:b", "#x", "./run"}
	data := []byte("apiVersion: certops/v1\nkind: Certificate\nmetadata: {name: c}\nspec:\n  issuerRef: ca\n  commonName: c.example.com\n" +
		"  deploy:\n    agents: [a]\n    files: {cert: /c.pem}\n    reload: " + flowList(argv) + "\n")
	objs, errs := ParseFile("x.yaml", data)
	if len(errs) != 0 {
		t.Fatalf("errors: %q", errorStrings(t, errs))
	}
	if diff := cmp.Diff(objs[0].Certificate().Deploy.Reload, argv); diff != "" {
		t.Errorf("reload read back (-got +want):\n%s", diff)
	}
}

// TestValidateCatchesClashes covers the cross-object mistakes: agents
// sharing a token hash, certificates writing the same file on an agent
// (by name or through a selector), and an invalid reference reported once.
func TestValidateCatchesClashes(t *testing.T) {
	const agents = `apiVersion: certops/v1
kind: Agent
metadata: {name: web-01, labels: {role: web}}
spec: {tokenSHA256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
---
apiVersion: certops/v1
kind: Agent
metadata: {name: web-02, labels: {role: web}}
spec: {tokenSHA256: %s}
---
apiVersion: certops/v1
kind: Agent
metadata: {name: db-01, labels: {role: db}}
spec: {tokenSHA256: 60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752}
`
	const certs = `apiVersion: certops/v1
kind: Issuer
metadata: {name: ca}
spec: {localCA: {certFile: /ca.crt, keyFile: /ca.key}}
---
apiVersion: certops/v1
kind: Certificate
metadata: {name: shop}
spec:
  issuerRef: ca
  commonName: shop.example.com
  deploy:
    agents: [web-02]
    files:
      cert: /etc/ssl/shop.pem
      key: /etc/ssl/shop.key
---
apiVersion: certops/v1
kind: Certificate
metadata: {name: api}
spec:
  issuerRef: ca
  commonName: api.example.com
  deploy:
    agentSelector: {matchLabels: {role: %s}}
    files:
      fullchain: /etc/ssl/api.pem
      key: /etc/ssl/shop.key
`
	load := func(token, role string) []string {
		t.Helper()
		_, err := Load(fstest.MapFS{
			"agents.yaml": {Data: []byte(fmt.Sprintf(agents, token))},
			"certs.yaml":  {Data: []byte(fmt.Sprintf(certs, role))},
		})
		errs, _ := err.(ErrorList)
		return errorStrings(t, errs)
	}
	other := "2e199ceddcc5bb628881a5b4ea4bede9c64cf188af795bf8f5d9a2503e1b74e5"
	t.Run("valid neighbour", func(t *testing.T) {
		if got := load(other, "db"); len(got) != 0 {
			t.Errorf("errors %q, want none", got)
		}
	})
	t.Run("shared token", func(t *testing.T) {
		want := []string{
			`agents.yaml:4: spec.tokenSHA256: is also the token hash of Agent "web-02" at agents.yaml:9; neither agent would be let in until each has its own token`,
			`agents.yaml:9: spec.tokenSHA256: is also the token hash of Agent "web-01" at agents.yaml:4; neither agent would be let in until each has its own token`,
		}
		if diff := cmp.Diff(load("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "db"), want); diff != "" {
			t.Errorf("errors (-got +want):\n%s", diff)
		}
	})
	t.Run("shared file through a selector", func(t *testing.T) {
		want := []string{
			`certs.yaml:16: spec.deploy.files.key: "/etc/ssl/shop.key" is also the key path of Certificate "api" (certs.yaml:28) on Agent "web-02"; the two would overwrite each other there`,
			`certs.yaml:28: spec.deploy.files.key: "/etc/ssl/shop.key" is also the key path of Certificate "shop" (certs.yaml:16) on Agent "web-02"; the two would overwrite each other there`,
		}
		if diff := cmp.Diff(load(other, "web"), want); diff != "" {
			t.Errorf("errors (-got +want):\n%s", diff)
		}
	})
}

func TestValidateSharedFileOnManyAgents(t *testing.T) {
	var b strings.Builder
	for i := range 3 {
		fmt.Fprintf(&b, "---\napiVersion: certops/v1\nkind: Agent\nmetadata: {name: a%d, labels: {pool: p}}\nspec: {tokenSHA256: \"%064x\"}\n", i, i+1)
	}
	for _, name := range []string{"one", "two"} {
		fmt.Fprintf(&b, "---\napiVersion: certops/v1\nkind: Certificate\nmetadata: {name: %s}\nspec:\n  issuerRef: ca\n  commonName: x.example.com\n"+
			"  deploy:\n    agents: [a2, a0]\n    agentSelector: {matchLabels: {pool: p}}\n    files: {cert: /%s.pem, fullchain: /x.pem}\n", name, name)
	}
	b.WriteString("---\napiVersion: certops/v1\nkind: Issuer\nmetadata: {name: ca}\nspec: {localCA: {certFile: /ca.crt, keyFile: /ca.key}}\n")
	_, err := Load(fstest.MapFS{"x.yaml": {Data: []byte(b.String())}})
	errs, _ := err.(ErrorList)
	want := []string{
		`x.yaml:26: spec.deploy.files.fullchain: "/x.pem" is also the fullchain path of Certificate "two" (x.yaml:37) on Agent "a0" (and 2 more); the two would overwrite each other there`,
		`x.yaml:37: spec.deploy.files.fullchain: "/x.pem" is also the fullchain path of Certificate "one" (x.yaml:26) on Agent "a0" (and 2 more); the two would overwrite each other there`,
	}
	if diff := cmp.Diff(errorStrings(t, errs), want); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}
}

// TestInvalidReferenceReportedOnce checks that a reference that is not a
// valid name is not reported again as dangling.
func TestInvalidReferenceReportedOnce(t *testing.T) {
	_, err := Load(fstest.MapFS{"c.yaml": {Data: []byte(`apiVersion: certops/v1
kind: Certificate
metadata: {name: c}
spec:
  issuerRef: Bad_CA
  commonName: c.example.com
  deploy: {agents: [Web-01], files: {cert: /c.pem}}
`)}})
	errs, _ := err.(ErrorList)
	want := []string{
		`c.yaml:5: spec.issuerRef: "Bad_CA" is not a valid name (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)`,
		`c.yaml:7: spec.deploy.agents[0]: "Web-01" is not a valid name (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)`,
	}
	if diff := cmp.Diff(errorStrings(t, errs), want); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}
}
