package spec

import (
	"testing"

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
