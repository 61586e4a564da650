package spec

import (
	"os"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// errorStrings renders errors as the CLI prints them.
func errorStrings(t *testing.T, errs ErrorList) []string {
	t.Helper()
	out := []string{}
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestParseFileErrors covers every class of bad input, one file per class in
// testdata/invalid, asserting the exact FILE:LINE: message of every error.
func TestParseFileErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"alert.yaml", []string{
			`alert.yaml:6: spec.certificateExpiring.warning.remainingFraction: 1.5 is out of range (0, 1)`,
			`alert.yaml:7: spec.certificateExpiring.critical: at least one of remaining or remainingFraction is required`,
			`alert.yaml:8: spec.agentOfflineAfter: "5 minutes" is not a valid duration (use Go syntax such as "720h" or "90m")`,
			`alert.yaml:9: spec.jobFailureRatio.ratio: 0 is out of range (0, 1]`,
			`alert.yaml:9: spec.jobFailureRatio.window: "0s" must be positive`,
			`alert.yaml:10: spec.issuanceFailures.count: must not be negative`,
			`alert.yaml:11: spec.notify[1]: duplicate of spec.notify[0]`,
			`alert.yaml:12: spec.servedMismatchAfter: "-5m" must be positive`,
		}},
		{"alias.yaml", []string{
			`alias.yaml:8: spec.deploy.<<: merge keys (<<) are not supported; alias the whole value instead`,
		}},
		{"apiversion.yaml", []string{
			`apiversion.yaml:1: apiVersion: "certops/v2" is not supported (want "certops/v1")`,
			`apiversion.yaml:5: apiVersion: required (want "certops/v1")`,
		}},
		{"backup.yaml", []string{
			`backup.yaml:5: spec.schedule: "61 * * * *" is not a valid cron schedule: minute: 61 is out of range 0-59`,
			`backup.yaml:6: spec.retention: at least one of count or maxAge is required`,
			`backup.yaml:7: spec.destination.directory: "backups" is not an absolute path`,
			`backup.yaml:7: spec.destination.s3.bucket: "b" is not a valid bucket name (3-63 lowercase letters, digits, '.' and '-')`,
			`backup.yaml:7: spec.destination: only one of directory, s3 may be set`,
			`backup.yaml:13: spec.schedule: "@often" is not a valid cron schedule: unknown macro @often (want @hourly, @daily, @weekly, @monthly or @yearly)`,
			`backup.yaml:14: spec.retention.count: must not be negative`,
			`backup.yaml:14: spec.retention.maxAge: "forever" is not a valid duration (use Go syntax such as "720h" or "90m")`,
			`backup.yaml:16: spec.destination.s3.accessKeyIDEnv: "1BAD" is not a valid environment variable name`,
			`backup.yaml:16: spec.destination.s3.bucket: "Bad_Bucket" is not a valid bucket name (3-63 lowercase letters, digits, '.' and '-')`,
			`backup.yaml:16: spec.destination.s3.endpoint: is not a valid absolute URL: it has no scheme (want https://host/path; value not shown: a URL may hold credentials)`,
			`backup.yaml:16: spec.destination.s3.prefix: "/x" must not start with '/'`,
			`backup.yaml:22: spec.schedule: "* * *" is not a valid cron schedule: want 5 fields (minute hour day-of-month month day-of-week), got 3`,
			`backup.yaml:24: spec.destination: one of directory, s3 is required`,
		}},
		{"cert.yaml", []string{
			`cert.yaml:8: spec.dnsNames[1]: "bad_name" is not a valid DNS name: it contains '_' (only letters, digits and '-' are allowed)`,
			`cert.yaml:10: spec.dnsNames[3]: "a.*.example.com" is not a valid DNS name: a wildcard is allowed only as the whole leftmost label (*.example.com)`,
			`cert.yaml:11: spec.dnsNames[4]: "*.com" is not a valid DNS name: a wildcard needs at least two labels after it (*.example.com)`,
			`cert.yaml:12: spec.dnsNames[5]: "10.0.0.1" is an IP address; list it under ipAddresses`,
			`cert.yaml:13: spec.dnsNames[6]: duplicate of spec.dnsNames[0]`,
			`cert.yaml:14: spec.ipAddresses[0]: "10.0.0.300" is not a valid IP address`,
			`cert.yaml:14: spec.ipAddresses[1]: "fe80::1%eth0" is not a valid IP address`,
			`cert.yaml:15: spec.uris[0]: "not-a-uri" is not an absolute URI with a scheme`,
			`cert.yaml:16: spec.emailAddresses[0]: "Ops <ops@example.com>" is not a valid email address`,
			`cert.yaml:16: spec.emailAddresses[1]: "plain" is not a valid email address`,
			`cert.yaml:17: spec.duration: "10x" is not a valid duration (use Go syntax such as "720h" or "90m")`,
			`cert.yaml:19: spec.usages[1]: "frobnicate" is not a known usage (e.g. "digital signature", "key encipherment", "server auth", "client auth")`,
			`cert.yaml:20: spec.subject.countries[0]: "Germany" is not a two-letter country code`,
			`cert.yaml:29: spec.renewBefore: 48h must be shorter than the duration 24h`,
			`cert.yaml:30: spec.privateKey.rotationPolicy: "Sometimes" is not supported (want Always or Never)`,
			`cert.yaml:30: spec.privateKey.size: 255 is not an ECDSA curve size (256, 384 or 521)`,
			`cert.yaml:35: spec: at least one of commonName, dnsNames, ipAddresses, uris or emailAddresses is required`,
			`cert.yaml:38: spec.renewBeforePercentage: set either renewBefore or renewBeforePercentage, not both`,
			`cert.yaml:39: spec.privateKey.size: must be omitted for Ed25519`,
			`cert.yaml:47: spec.renewBeforePercentage: 100 is out of range 1-99`,
			`cert.yaml:48: spec.privateKey.size: 1024 is not a valid RSA key size (2048 to 8192, a multiple of 8)`,
			`cert.yaml:56: spec.privateKey.algorithm: "DSA" is not supported (want ECDSA, RSA or Ed25519)`,
		}},
		{"channel.yaml", []string{
			`channel.yaml:4: spec: only one of slack, smtp, webhook, alertmanager, pagerduty, teams may be set`,
			`channel.yaml:5: spec.slack.webhookURLFile: is not an absolute path; give the path of the file that holds the secret, not the secret itself (value not shown: it may be a secret)`,
			`channel.yaml:12: spec.smtp.from: "nobody" is not a valid email address`,
			`channel.yaml:12: spec.smtp.host: "mail server" is not a valid host name or IP address: it contains ' ' (only letters, digits and '-' are allowed)`,
			`channel.yaml:12: spec.smtp.passwordFile: is not an absolute path; give the path of the file that holds the secret, not the secret itself (value not shown: it may be a secret)`,
			`channel.yaml:12: spec.smtp.port: 70000 is out of range 1-65535`,
			`channel.yaml:12: spec.smtp.to: at least one recipient is required`,
			`channel.yaml:18: spec.webhook.url: must be an http or https URL, not ftp`,
			`channel.yaml:23: spec: one of slack, smtp, webhook, alertmanager, pagerduty, teams is required`,
		}},
		{"oncall.yaml", []string{
			`oncall.yaml:5: spec.alertmanager.bearerTokenFile: is not an absolute path; give the path of the file that holds the secret, not the secret itself (value not shown: it may be a secret)`,
			`oncall.yaml:5: spec.alertmanager.caFile: "/etc/../ca.pem" must not contain ".."`,
			`oncall.yaml:5: spec.alertmanager.dashboardURL: must be an http or https URL, not ftp`,
			`oncall.yaml:5: spec.alertmanager.url: is not a valid absolute URL: it has no host (want https://host/path; value not shown: a URL may hold credentials)`,
			`oncall.yaml:11: spec.alertmanager.bearerTokenFile: set with a plain-http URL to a host that is not loopback: the token would travel unencrypted; use https`,
			`oncall.yaml:17: spec.alertmanager.url: required`,
			`oncall.yaml:23: spec.pagerduty.routingKeyFile: is not an absolute path; give the path of the file that holds the secret, not the secret itself (value not shown: it may be a secret)`,
			`oncall.yaml:23: spec.pagerduty.url: must use https: http is allowed only for loopback hosts, and "events.example.com" is not one`,
			`oncall.yaml:28: spec: only one of slack, smtp, webhook, alertmanager, pagerduty, teams may be set`,
			`oncall.yaml:29: spec.teams.webhookURLFile: is not an absolute path; give the path of the file that holds the secret, not the secret itself (value not shown: it may be a secret)`,
		}},
		{"deploy.yaml", []string{
			`deploy.yaml:8: spec.deploy.agents[1]: duplicate of spec.deploy.agents[0]`,
			`deploy.yaml:9: spec.deploy.files: at least one of cert, fullchain, combined, der, pkcs12 or jks is required`,
			`deploy.yaml:10: spec.deploy.files.chain: "etc/chain.pem" is not an absolute path`,
			`deploy.yaml:11: spec.deploy.files.key: "/etc/ssl/../key.pem" must not contain ".."`,
			`deploy.yaml:12: spec.deploy.files.mode: "1777" is not an octal file mode up to "0777" (e.g. "0600")`,
			`deploy.yaml:13: spec.deploy.files.owner: "root user" is not a valid user name or uid`,
			`deploy.yaml:14: spec.deploy.reload: must be a non-empty argv list whose first element is the command`,
			`deploy.yaml:15: spec.deploy.verify.address: "localhost" is not a valid host:port address (e.g. "127.0.0.1:443")`,
			`deploy.yaml:15: spec.deploy.verify.serverName: "bad name" is not a valid DNS name: it contains ' ' (only letters, digits and '-' are allowed)`,
			`deploy.yaml:23: spec.deploy: at least one of agents or agentSelector.matchLabels is required`,
			`deploy.yaml:25: spec.deploy.files.key: "/etc/x.pem" is also the cert path`,
			`deploy.yaml:25: spec.deploy.files.mode: "0800" is not an octal file mode up to "0777" (e.g. "0600")`,
			`deploy.yaml:26: spec.deploy.reload: must be a non-empty argv list whose first element is the command`,
			`deploy.yaml:27: spec.deploy.verify.address: "127.0.0.1:99999" has an invalid port (want 1-65535)`,
			"deploy.yaml:37: spec.deploy.files.layout: symlink needs every file in one directory, but /etc/ssl/y/key.pem is not in /etc/ssl/x/",
			`deploy.yaml:47: spec.deploy.files.layout: "links" is not one of files, symlink`,
		}},
		{"dup.yaml", []string{
			`dup.yaml:5: metadata.name: duplicate key (first at line 4)`,
			`dup.yaml:8: spec.tokenSHA256: duplicate key (first at line 7)`,
		}},
		{"issuer.yaml", []string{
			`issuer.yaml:4: spec: only one of localCA, acme, external, vault may be set`,
			`issuer.yaml:5: spec.localCA.certFile: "ca.crt" is not an absolute path`,
			`issuer.yaml:5: spec.localCA.keyFile: must not contain ".."`,
			`issuer.yaml:7: spec.acme.directoryURL: must use https: http is allowed only for loopback hosts, and "acme.example.com" is not one`,
			`issuer.yaml:8: spec.acme.email: "Ops <ops@example.com>" is not a valid email address`,
			`issuer.yaml:9: spec.acme.accountKeyFile: is not a clean path (no "//", "." elements or trailing "/")`,
			`issuer.yaml:10: spec.acme.challenge: only one of http01, dns01, dnsPersist01 may be set`,
			`issuer.yaml:17: spec: one of localCA, acme, external, vault is required`,
			`issuer.yaml:27: spec.acme.challenge.dns01: use either scripts (presentScript, cleanupScript, propagationWait) or a provider (provider, envFile), not both`,
			`issuer.yaml:34: spec.acme.directoryURL: must be an http or https URL, not ftp`,
			`issuer.yaml:36: spec.acme.eab.hmacFile: is not an absolute path; give the path of the file that holds the secret, not the secret itself (value not shown: it may be a secret)`,
			`issuer.yaml:36: spec.acme.eab.keyID: required`,
			`issuer.yaml:38: spec.acme.challenge.dns01.presentScript: required`,
			`issuer.yaml:38: spec.acme.challenge.dns01.propagationWait: "-5s" must be positive`,
		}},
		{"kind.yaml", []string{
			`kind.yaml:2: kind: unknown kind "Secret" (want one of Issuer, Agent, Certificate, AlertPolicy, NotificationChannel, BackupPolicy, TrustBundle, Revocation)`,
			`kind.yaml:5: kind: required (one of Issuer, Agent, Certificate, AlertPolicy, NotificationChannel, BackupPolicy, TrustBundle, Revocation)`,
			`kind.yaml:8: a document must be a mapping with apiVersion, kind, metadata and spec`,
		}},
		{"meta.yaml", []string{
			`meta.yaml:4: metadata.name: "Web_01" is not a valid name (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)`,
			`meta.yaml:6: metadata.labels["bad key!"]: "bad key!" is not a valid key (an optional DNS-subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)`,
			`meta.yaml:7: metadata.labels["team"]: "has space" is not a valid label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)`,
			`meta.yaml:10: spec.tokenSHA256: has uppercase hex digits; write the SHA-256 in lowercase`,
		}},
		{"required.yaml", []string{
			`required.yaml:3: metadata.name: required`,
			`required.yaml:6: spec.localCA.keyFile: required`,
			`required.yaml:9: spec: required`,
		}},
		{"syntax.yaml", []string{
			`syntax.yaml:4: invalid YAML: did not find expected key`,
		}},
		{"types.yaml", []string{
			`types.yaml:3: metadata.labels: expected a mapping, got a list`,
			`types.yaml:7: spec.privateKey.size: expected an integer, got string "big"`,
			`types.yaml:8: spec.dnsNames: expected a list, got string "a.example.com"`,
			`types.yaml:9: spec.renewBeforePercentage: expected an integer, got number 1.5`,
			`types.yaml:12: spec.deploy.files.mode: expected a string, got integer 0600 (quote it: "0600")`,
		}},
		{"unknown.yaml", []string{
			`unknown.yaml:9: spec.privateKey: unknown field "sise" (did you mean "size"?)`,
			`unknown.yaml:10: spec: unknown field "dnsName" (did you mean "dnsNames"?)`,
			`unknown.yaml:11: unknown field "extra"`,
		}},
		{"utf8.yaml", []string{
			`utf8.yaml:3: file is not valid UTF-8`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, errs := ParseFile(tt.file, readTestdata(t, path.Join("testdata/invalid", tt.file)))
			if diff := cmp.Diff(errorStrings(t, errs), tt.want); diff != "" {
				t.Errorf("ParseFile(%s) errors (-got +want):\n%s", tt.file, diff)
			}
		})
	}
}

func TestParseFileTooLarge(t *testing.T) {
	data := []byte(strings.Repeat("#", MaxFileSize+1))
	_, errs := ParseFile("big.yaml", data)
	want := []string{"big.yaml: file is 1048577 bytes, larger than the limit of 1048576 bytes"}
	if diff := cmp.Diff(errorStrings(t, errs), want); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}
}

// TestParseFileCollectsAllErrors checks that independent mistakes in one
// document are all reported, not just the first.
func TestParseFileCollectsAllErrors(t *testing.T) {
	data := `apiVersion: certops/v1
kind: Certificate
metadata: {name: shop}
spec:
  issuerRef: internal-ca
  dnsNames: [shop.example.com, bad_name]
  duration: 90 days
  deploy:
    agents: [web-01]
    files: {cert: /etc/ssl/cert.pem}
    colour: blue
`
	_, errs := ParseFile("certs/shop.yaml", []byte(data))
	want := []string{
		`certs/shop.yaml:6: spec.dnsNames[1]: "bad_name" is not a valid DNS name: it contains '_' (only letters, digits and '-' are allowed)`,
		`certs/shop.yaml:7: spec.duration: "90 days" is not a valid duration (use Go syntax such as "720h" or "90m")`,
		`certs/shop.yaml:11: spec.deploy: unknown field "colour"`,
	}
	if diff := cmp.Diff(errorStrings(t, errs), want); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}
}

func TestParseFileEmptyDocumentsSkipped(t *testing.T) {
	objs, errs := ParseFile("empty.yaml", readTestdata(t, "testdata/invalid/empty.yaml"))
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.Key().String()+"@"+o.Source.File+":"+strconv.Itoa(o.Source.Line))
	}
	if diff := cmp.Diff(got, []string{"Agent/web-01@empty.yaml:5"}); diff != "" {
		t.Errorf("objects (-got +want):\n%s", diff)
	}
}
