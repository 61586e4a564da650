package spec

import (
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Lexical checks shared by the per-kind validation.

func isAlnum(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
}

// isDNSLabel reports whether s is an RFC 1123 label in lowercase: object names.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-') {
			return false
		}
	}
	return true
}

// isDNSName reports whether s is a host name of RFC 1123 labels, at most 253
// characters, with no trailing dot. A wildcard is allowed only as the whole
// leftmost label of a name with at least two more labels (*.example.com).
func isDNSName(s string, wildcard bool) bool { return dnsNameProblem(s, wildcard) == "" }

// dnsNameProblem says which rule of isDNSName s breaks, or returns "".
func dnsNameProblem(s string, wildcard bool) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > 253:
		return fmt.Sprintf("it is %d characters long, more than 253", len(s))
	case strings.HasSuffix(s, ".") && len(s) > 1:
		return "it ends with a dot (write it without the trailing dot)"
	}
	labels := strings.Split(s, ".")
	if wildcard && labels[0] == "*" {
		if len(labels) < 3 {
			return "a wildcard needs at least two labels after it (*.example.com)"
		}
		labels = labels[1:]
	}
	for _, l := range labels {
		name := fmt.Sprintf("label %q", l)
		if len(labels) == 1 {
			name = "it" // the label is the whole name, already quoted
		}
		if msg := hostLabelProblem(name, l, wildcard); msg != "" {
			return msg
		}
	}
	return ""
}

// hostLabelProblem says which rule of a DNS name's label l, called name in
// the message, breaks, or returns "".
func hostLabelProblem(name, l string, wildcard bool) string {
	switch {
	case l == "":
		return "it has an empty label (a leading dot or two dots in a row)"
	case len(l) > 63:
		return fmt.Sprintf("%s is %d characters long, more than 63", name, len(l))
	case strings.Contains(l, "*") && wildcard:
		return "a wildcard is allowed only as the whole leftmost label (*.example.com)"
	case l[0] == '-':
		return name + " starts with a hyphen"
	case l[len(l)-1] == '-':
		return name + " ends with a hyphen"
	}
	for _, r := range l {
		if !(r < utf8.RuneSelf && (isAlnum(byte(r)) || r == '-')) {
			return fmt.Sprintf("%s contains %q (only letters, digits and '-' are allowed)", name, r)
		}
	}
	return ""
}

// isLabelValue reports whether s is a Kubernetes-style label value (or the name part of a key).
func isLabelValue(s string) bool {
	if len(s) == 0 || len(s) > 63 || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; !isAlnum(b) && b != '-' && b != '_' && b != '.' {
			return false
		}
	}
	return true
}

// isQualifiedName reports whether s is a label key: [DNS-subdomain "/"] name.
func isQualifiedName(s string) bool {
	prefix, name, ok := strings.Cut(s, "/")
	if !ok {
		return isLabelValue(s)
	}
	return isDNSName(strings.ToLower(prefix), false) && isLabelValue(name)
}

// absPathProblem describes what is wrong with a file path, or returns "".
func absPathProblem(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "is not an absolute path"
	case slices.Contains(strings.Split(p, "/"), ".."):
		return `must not contain ".."`
	case strings.ContainsRune(p, 0):
		return "must not contain a NUL byte"
	case path.Clean(p) != p:
		return "is not a clean path (want " + strconv.Quote(path.Clean(p)) + ")"
	}
	return ""
}

// parsePositiveDuration parses a Go duration that must be positive.
func parsePositiveDuration(s string) (time.Duration, string) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, `is not a valid duration (use Go syntax such as "720h" or "90m")`
	}
	if d <= 0 {
		return 0, "must be positive"
	}
	return d, ""
}

// isEmail reports whether s is a bare addr-spec such as ops@example.com.
func isEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return false
	}
	_, domain, _ := strings.Cut(s, "@")
	return isDNSName(domain, false) || strings.HasPrefix(domain, "[")
}

// httpURLProblem describes what is wrong with an http(s) URL, or returns "".
// It quotes no more of the URL than its scheme and host name, as the rest
// (userinfo, path, query) may hold credentials.
func httpURLProblem(s string, loopbackHTTP bool) string {
	const want = " (want https://host/path; value not shown: a URL may hold credentials)"
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a valid absolute URL" + want
	case u.Scheme == "":
		return "is not a valid absolute URL: it has no scheme" + want
	case u.Host == "" || u.Opaque != "":
		return "is not a valid absolute URL: it has no host" + want
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && !loopbackHTTP:
		return ""
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return ""
	case u.Scheme == "http":
		return fmt.Sprintf("must use https: http is allowed only for loopback hosts, and %q is not one", u.Hostname())
	}
	return fmt.Sprintf("must be an http or https URL, not %s", u.Scheme)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// hostPortProblem describes what is wrong with a host:port address, or returns "".
func hostPortProblem(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return `is not a valid host:port address (e.g. "127.0.0.1:443")`
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "has an invalid port (want 1-65535)"
	}
	if _, err := netip.ParseAddr(host); err != nil && !isDNSName(host, false) {
		return "has an invalid host"
	}
	return ""
}

// isOwner reports whether s is a POSIX user or group name or a numeric id.
func isOwner(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	if _, err := strconv.ParseUint(s, 10, 32); err == nil {
		return true
	}
	if !('a' <= s[0] && s[0] <= 'z' || s[0] == '_') {
		return false
	}
	for i := 1; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '_' || b == '-' || b == '.' || b == '$' && i == len(s)-1) {
			return false
		}
	}
	return true
}

// isEnvName reports whether s is a portable environment variable name.
func isEnvName(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; !isAlnum(b) && b != '_' {
			return false
		}
	}
	return true
}

// isToken reports whether s is a short identifier of letters, digits and ._- (provider and profile names).
func isToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; !isAlnum(b) && b != '_' && b != '-' && b != '.' {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// flowList renders argv as a YAML flow sequence, quoting the elements YAML
// would not read back as the same plain string.
func flowList(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		parts[i] = a
		if !isPlainWord(a) {
			parts[i] = strconv.Quote(a)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// isPlainWord reports whether s reads back from YAML as the plain string s:
// letters, digits and /._=+- only, not starting like a number, and not a
// word YAML gives another type.
func isPlainWord(s string) bool {
	rest := strings.TrimLeft(s, "-")
	if rest == "" || '0' <= rest[0] && rest[0] <= '9' || rest[0] == '.' && s == rest && len(s) > 1 && '0' <= s[1] && s[1] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; !isAlnum(b) && !strings.ContainsRune("/._=+-", rune(b)) {
			return false
		}
	}
	switch strings.ToLower(s) {
	case "true", "false", "null", "yes", "no", "on", "off", "y", "n":
		return false
	}
	return true
}
