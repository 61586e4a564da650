package spec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMessagesNeverEchoSecrets covers fields that may hold a secret by
// mistake (a raw token instead of its hash, a secret instead of the path of
// the file holding it) or carry one (a URL with userinfo or a token in its
// query): each gives its FILE:LINE error, and no error shows the secret.
func TestMessagesNeverEchoSecrets(t *testing.T) {
	const (
		agent   = "apiVersion: certops/v1\nkind: Agent\nmetadata: {name: a}\nspec:\n"
		channel = "apiVersion: certops/v1\nkind: NotificationChannel\nmetadata: {name: n}\nspec:\n"
		smtp    = channel + "  smtp:\n    port: 587\n    from: certops@example.com\n    to: [ops@example.com]\n"
		acme    = "apiVersion: certops/v1\nkind: Issuer\nmetadata: {name: le}\nspec:\n  acme:\n    accountKeyFile: /acme.key\n    challenge: {http01: {webroot: /srv/www}}\n"
		backup  = "apiVersion: certops/v1\nkind: BackupPolicy\nmetadata: {name: b}\nspec:\n  schedule: \"@daily\"\n  retention: {count: 7}\n  destination:\n    s3:\n      bucket: certops-backups\n"
		cert    = "apiVersion: certops/v1\nkind: Certificate\nmetadata: {name: c}\nspec:\n  issuerRef: ca\n  commonName: c.example.com\n"
		notAbs  = "is not an absolute path; give the path of the file that holds the secret, not the secret itself (value not shown: it may be a secret)"
		urlHint = "(want https://host/path; value not shown: a URL may hold credentials)"
	)
	hashHint := `; put the SHA-256 of the agent's token here (printf %s "$TOKEN" | sha256sum), never the token itself (value not shown: it may be the token)`
	for _, tt := range []struct {
		name, doc string
		secrets   []string
		want      []string
	}{
		{"raw token instead of its hash",
			agent + "  tokenSHA256: \"my-super-secret-agent-token-XYZ\"\n",
			[]string{"my-super-secret-agent-token-XYZ", "super-secret"},
			[]string{`x.yaml:5: spec.tokenSHA256: is not a SHA-256 in hex: it is 31 characters long, not 64` + hashHint}},
		{"raw 64-character token instead of its hash",
			agent + "  tokenSHA256: " + strings.Repeat("tokenSECRET-", 5) + "tokn\n",
			[]string{"tokenSECRET"},
			[]string{`x.yaml:5: spec.tokenSHA256: is not a SHA-256 in hex: it has characters other than 0-9 and a-f` + hashHint}},
		{"hash with what sha256sum prints after it",
			agent + "  tokenSHA256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  -\n",
			nil,
			[]string{`x.yaml:5: spec.tokenSHA256: has more after its 64 hex digits (the "  -" sha256sum prints after the hash?); keep only the 64 hex digits`}},
		{"numeric token instead of its hash",
			agent + "  tokenSHA256: 8675309123456789\n",
			[]string{"8675309123456789"},
			[]string{`x.yaml:5: spec.tokenSHA256: expected a string, got an integer (value not shown: it may be a secret)`}},
		{"ACME directory URL with credentials over http",
			acme + "    directoryURL: http://acct:S3CRETPW@acme.example.com/dir?token=S3CRETTOK\n",
			[]string{"S3CRET", "acct"},
			[]string{`x.yaml:8: spec.acme.directoryURL: must use https: http is allowed only for loopback hosts, and "acme.example.com" is not one`}},
		{"webhook URL with credentials and another scheme",
			channel + "  webhook: {url: \"ftp://user:S3CRETPW@hooks.example.com/x?access_token=S3CRETTOK\"}\n",
			[]string{"S3CRET", "user"},
			[]string{`x.yaml:5: spec.webhook.url: must be an http or https URL, not ftp`}},
		{"webhook URL without a scheme",
			channel + "  webhook: {url: hooks.example.com/services/T0/B0/S3CRETPATH}\n",
			[]string{"S3CRET"},
			[]string{`x.yaml:5: spec.webhook.url: is not a valid absolute URL: it has no scheme ` + urlHint}},
		{"S3 endpoint whose password has a slash",
			backup + "      endpoint: https://AKIAEXAMPLE:S3CRET/KEY@minio.example.com\n",
			[]string{"S3CRET", "AKIAEXAMPLE"},
			[]string{`x.yaml:10: spec.destination.s3.endpoint: is not a valid absolute URL ` + urlHint}},
		{"Slack webhook URL instead of its file",
			channel + "  slack: {webhookURLFile: \"https://hooks.slack.com/services/T0/B0/S3CRETSLACK\"}\n",
			[]string{"S3CRET", "hooks.slack.com"},
			[]string{`x.yaml:5: spec.slack.webhookURLFile: ` + notAbs}},
		{"SMTP password instead of its file",
			smtp + "    host: smtp.example.com\n    username: certops\n    passwordFile: hunter2-S3CRET\n",
			[]string{"S3CRET"},
			[]string{`x.yaml:11: spec.smtp.passwordFile: ` + notAbs}},
		{"SMTP URL with credentials as host",
			smtp + "    host: \"smtp://certops:S3CRET@smtp.example.com:587\"\n",
			[]string{"S3CRET"},
			[]string{`x.yaml:9: spec.smtp.host: must be a bare host name or IP address, not a URL or user@host; set port, username and passwordFile on their own (value not shown: it may hold credentials)`}},
		{"webhook HMAC key instead of its file",
			channel + "  webhook:\n    url: https://hooks.example.com/certops\n    hmacSecretFile: S3CRET-hmac-key\n",
			[]string{"S3CRET"},
			[]string{`x.yaml:7: spec.webhook.hmacSecretFile: ` + notAbs}},
		{"EAB HMAC key in base64 instead of its file",
			acme + "    directoryURL: https://acme.example.com/dir\n    eab: {keyID: kid-1, hmacFile: \"/S3CRET//hmac+key==\"}\n",
			[]string{"S3CRET"},
			[]string{`x.yaml:9: spec.acme.eab.hmacFile: is not a clean path (no "//", "." elements or trailing "/")`}},
		{"EAB HMAC key of digits instead of its file",
			acme + "    directoryURL: https://acme.example.com/dir\n    eab: {keyID: kid-1, hmacFile: 31415926535}\n",
			[]string{"31415926535"},
			[]string{`x.yaml:9: spec.acme.eab.hmacFile: expected a string, got an integer (value not shown: it may be a secret)`}},
		{"CA key instead of its file",
			"apiVersion: certops/v1\nkind: Issuer\nmetadata: {name: ca}\nspec:\n  localCA:\n    certFile: /ca.crt\n    keyFile: \"-----BEGIN PRIVATE KEY-----S3CRET\"\n",
			[]string{"S3CRET", "BEGIN"},
			[]string{`x.yaml:7: spec.localCA.keyFile: ` + notAbs}},
		{"DNS provider credentials instead of the env file",
			"apiVersion: certops/v1\nkind: Issuer\nmetadata: {name: le}\nspec:\n  acme:\n    directoryURL: https://acme.example.com/dir\n    accountKeyFile: /acme.key\n    challenge: {dns01: {provider: cloudflare, envFile: CF_DNS_API_TOKEN=S3CRET}}\n",
			[]string{"S3CRET"},
			[]string{`x.yaml:8: spec.acme.challenge.dns01.envFile: ` + notAbs}},
		{"S3 credentials instead of their file",
			backup + "      credentialsFile: \"aws_secret_access_key = S3CRET\"\n",
			[]string{"S3CRET"},
			[]string{`x.yaml:10: spec.destination.s3.credentialsFile: ` + notAbs}},
		{"URI SAN with credentials",
			cert + "  uris: [\"https://user:S3CRET@svc.example.com/a b?token=S3CRET2&x=1\"]\n",
			[]string{"S3CRET", "user"},
			[]string{`x.yaml:7: spec.uris[0]: "https://REDACTED@svc.example.com/a%20b?token=REDACTED&x=1" is not an absolute URI with a scheme`}},
		{"reload command line with a URL with credentials",
			cert + "  deploy:\n    agents: [a]\n    files: {cert: /c.pem}\n    reload: [\"curl -fsS https://admin:S3CRET@127.0.0.1:8080/reload?key=S3CRET2\"]\n",
			[]string{"S3CRET", "admin"},
			[]string{`x.yaml:10: spec.deploy.reload[0]: "curl -fsS https://REDACTED@127.0.0.1:8080/reload?key=REDACTED" is a whole command line in one element, but reload is an argv list run without a shell, so no program of that name exists; write [curl, -fsS, "https://REDACTED@127.0.0.1:8080/reload?key=REDACTED"]`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := ParseFile("x.yaml", []byte(tt.doc))
			got := errorStrings(t, errs)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
			for _, e := range got {
				for _, s := range tt.secrets {
					if strings.Contains(e, s) {
						t.Errorf("error shows the secret %q: %s", s, e)
					}
				}
			}
		})
	}
}

// TestMaskURL checks the masking of URLs that messages quote.
func TestMaskURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"spiffe://example.org/ns/a/sa/b", "spiffe://example.org/ns/a/sa/b"},
		{"https://u:S3CRET@h/x", "https://REDACTED@h/x"},
		{"https://ghp_S3CRET@h/x", "https://REDACTED@h/x"},
		{"https://h/x?sig=S3CRET&ref=main&code=S3CRET2", "https://h/x?sig=REDACTED&ref=main&code=REDACTED"},
		{"https://h/x#access_token=S3CRET", "https://h/x#REDACTED"},
		{"https://u:S3CRET@h:bad port/x", "https://REDACTED@h:bad port/x"},
		{"not a url", "not a url"},
		{"https://h/a b?x=1", "https://h/a b?x=1"},
	} {
		if got := RedactURL(c.in); got != c.want {
			t.Errorf("RedactURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
