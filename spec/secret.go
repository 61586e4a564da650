package spec

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Error messages go to CI logs and pull-request comments, so they never
// show a value that may be a secret. A field that should hold a reference
// to a secret (a hash, a file path) may hold the secret itself by mistake,
// and a URL may carry credentials. The URL rule here (RedactURL) is also
// the one package redact applies to the logs and errors of the rest of
// certops.

// secretFields are the field paths whose value may be a secret pasted in by
// mistake: the agent token instead of its hash, and the secret itself
// instead of the file holding it. Messages about them never show the value.
// The URL fields are here too: the decoder must not show a mistyped one,
// and the checker shows only their scheme and host.
var secretFields = map[string]bool{
	"spec.tokenSHA256":                    true,
	"spec.localCA.keyFile":                true,
	"spec.acme.accountKeyFile":            true,
	"spec.acme.eab.hmacFile":              true,
	"spec.acme.challenge.dns01.envFile":   true,
	"spec.slack.webhookURLFile":           true,
	"spec.smtp.passwordFile":              true,
	"spec.webhook.hmacSecretFile":         true,
	"spec.alertmanager.bearerTokenFile":   true,
	"spec.pagerduty.routingKeyFile":       true,
	"spec.teams.webhookURLFile":           true,
	"spec.destination.s3.credentialsFile": true,

	"spec.vault.auth.tokenFile":            true,
	"spec.vault.auth.appRole.secretIDFile": true,

	"spec.deploy.files.pkcs12PasswordFile": true,
	"spec.deploy.files.jksPasswordFile":    true,

	"spec.acme.directoryURL":       true,
	"spec.webhook.url":             true,
	"spec.alertmanager.url":        true,
	"spec.pagerduty.url":           true,
	"spec.destination.s3.endpoint": true,
}

// notShown ends a message that leaves out a value that may be a secret.
const notShown = "(value not shown: it may be a secret)"

// secretPathProblem is absPathProblem for a path naming a file that holds
// a secret, worded so that it never shows the value: a relative "path" may
// be the secret itself, and a clean path is not suggested.
func secretPathProblem(p string) string {
	switch msg := absPathProblem(p); {
	case msg == "":
		return ""
	case !strings.HasPrefix(p, "/"):
		return "is not an absolute path; give the path of the file that holds the secret, not the secret itself " + notShown
	case strings.HasPrefix(msg, "is not a clean path"): // its suggestion shows the path
		return `is not a clean path (no "//", "." elements or trailing "/")`
	default:
		return msg
	}
}

// tokenHashProblem says why s is not the lowercase hex SHA-256 of a token
// without quoting s, which may be the token itself, or returns "".
func tokenHashProblem(s string) string {
	const hint = "; put the SHA-256 of the agent's token here (printf %s \"$TOKEN\" | sha256sum), never the token itself (value not shown: it may be the token)"
	hex, upper := true, false
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case '0' <= b && b <= '9' || 'a' <= b && b <= 'f':
		case 'A' <= b && b <= 'F':
			upper = true
		default:
			hex = false
		}
	}
	switch {
	case len(s) > 64 && isLowerHex64(s[:64]):
		return "has more after its 64 hex digits (the \"  -\" sha256sum prints after the hash?); keep only the 64 hex digits"
	case utf8.RuneCountInString(s) != 64:
		return fmt.Sprintf("is not a SHA-256 in hex: it is %d characters long, not 64", utf8.RuneCountInString(s)) + hint
	case !hex:
		return "is not a SHA-256 in hex: it has characters other than 0-9 and a-f" + hint
	case upper:
		return "has uppercase hex digits; write the SHA-256 in lowercase"
	}
	return ""
}

// RedactMask replaces every secret RedactURL removes.
const RedactMask = "REDACTED"

// RedactURL returns raw with what may be credentials masked: the userinfo
// (a password, or a user name that may be a token; the user of an ssh URL
// without a password, as git@host, is kept) and the values of query
// parameters whose names suggest a secret (token, password, key,
// signature, ...). Text that does not parse as a URL with a scheme is
// returned as is, except that a userinfo after "://" is masked. A URL with
// nothing to mask is returned as written. It is the one rule for messages
// of this package and, through package redact, for logs and errors.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		if i := strings.Index(raw, "://"); i >= 0 {
			rest := raw[i+3:]
			if at := strings.LastIndexByte(rest, '@'); at >= 0 && !strings.ContainsAny(rest[:at], "/?#") {
				return raw[:i+3] + RedactMask + "@" + rest[at+1:]
			}
		}
		return raw
	}
	masked := false
	if u.User != nil {
		_, hasPass := u.User.Password()
		ssh := u.Scheme == "ssh" || strings.HasSuffix(u.Scheme, "+ssh")
		switch {
		case ssh && !hasPass:
		case ssh:
			u.User, masked = url.UserPassword(u.User.Username(), RedactMask), true
		default:
			u.User, masked = url.User(RedactMask), true
		}
	}
	if u.RawQuery != "" {
		params := strings.Split(u.RawQuery, "&")
		for i, p := range params {
			name, _, hasValue := strings.Cut(p, "=")
			if dec, err := url.QueryUnescape(name); err == nil {
				name = dec
			}
			if hasValue && secretParam(name) {
				params[i], masked = p[:strings.IndexByte(p, '=')+1]+RedactMask, true
			}
		}
		u.RawQuery = strings.Join(params, "&")
	}
	if strings.Contains(u.Fragment, "=") {
		u.Fragment, u.RawFragment, masked = RedactMask, "", true
	}
	if !masked {
		return raw // as written
	}
	return u.String()
}

// secretParam reports whether a query parameter's name suggests a secret.
func secretParam(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"token", "password", "passwd", "pwd", "secret", "key", "auth", "credential", "signature", "sig", "code"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// urlInText finds URLs with a scheme in free text, up to a space, a quote
// or an angle bracket.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>` + "`" + `]+`)

// RedactText returns s with every URL in it passed through RedactURL.
func RedactText(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, RedactURL)
}
