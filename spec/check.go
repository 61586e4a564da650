package spec

import (
	"fmt"
	"strings"

	yaml "sigs.k8s.io/yaml/goyaml.v3"
)

// checker validates one decoded document's semantics, reporting each
// problem at the line of the offending field path.
type checker struct {
	p    *fileParser
	root *yaml.Node
	// bad are paths the decoder already reported; errors on, above or below
	// them are suppressed so one mistake is reported once.
	bad map[string]bool
}

func (c *checker) errorf(path, format string, args ...any) {
	if c.suppressed(path) {
		return
	}
	c.p.fileError(lineOf(c.root, path), path+": "+fmt.Sprintf(format, args...))
}

func (c *checker) suppressed(path string) bool {
	for b := range c.bad {
		if within(path, b) || within(b, path) {
			return true
		}
	}
	return false
}

// within reports whether path is base or lies below it.
func within(path, base string) bool {
	if base == "" || path == base {
		return true
	}
	return strings.HasPrefix(path, base) && (path[len(base)] == '.' || path[len(base)] == '[')
}

// document validates a typed document and returns its header and a pointer
// to its spec.
func (c *checker) document(doc any) (Header, any) {
	var h Header
	var spec any
	switch d := doc.(type) {
	case *Issuer:
		h, spec = d.Header, &d.Spec
		c.issuer(&d.Spec)
	case *Agent:
		h, spec = d.Header, &d.Spec
		c.agent(&d.Spec)
	case *Certificate:
		h, spec = d.Header, &d.Spec
		c.certificate(&d.Spec)
	case *AlertPolicy:
		h, spec = d.Header, &d.Spec
		c.alertPolicy(&d.Spec)
	case *NotificationChannel:
		h, spec = d.Header, &d.Spec
		c.notificationChannel(&d.Spec)
	case *BackupPolicy:
		h, spec = d.Header, &d.Spec
		c.backupPolicy(&d.Spec)
	case *TrustBundle:
		h, spec = d.Header, &d.Spec
		c.trustBundle(&d.Spec)
	case *Revocation:
		h, spec = d.Header, &d.Spec
		c.revocation(&d.Spec)
	}
	c.metadata(&h.Metadata)
	return h, spec
}

func (c *checker) metadata(m *Metadata) {
	if m.Name != "" {
		c.name("metadata.name", m.Name)
	}
	c.labels("metadata.labels", m.Labels, true)
	c.labels("metadata.annotations", m.Annotations, false)
}

// name checks an object name or a reference to one.
func (c *checker) name(path, s string) {
	if !isDNSLabel(s) {
		c.errorf(path, "%q is not a valid name (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)", s)
	}
}

// labels checks label (or annotation) keys, and label values when values is true.
func (c *checker) labels(path string, m map[string]string, values bool) {
	for _, k := range sortedKeys(m) {
		kpath := fmt.Sprintf("%s[%q]", path, k)
		if !isQualifiedName(k) {
			c.errorf(kpath, "%q is not a valid key (an optional DNS-subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)", k)
		}
		if values && m[k] != "" && !isLabelValue(m[k]) {
			c.errorf(kpath, "%q is not a valid label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)", m[k])
		}
	}
}

// exactlyOne reports unless exactly one of the named options is set.
func (c *checker) exactlyOne(path string, names []string, set ...bool) {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	switch {
	case n == 0:
		c.errorf(path, "one of %s is required", strings.Join(names, ", "))
	case n > 1:
		c.errorf(path, "only one of %s may be set", strings.Join(names, ", "))
	}
}

// absPath checks an optional absolute, clean file path.
func (c *checker) absPath(path, p string) {
	if p == "" {
		return
	}
	if secretFields[path] {
		if msg := secretPathProblem(p); msg != "" {
			c.errorf(path, "%s", msg)
		}
		return
	}
	if msg := absPathProblem(p); msg != "" {
		c.errorf(path, "%q %s", p, msg)
	}
}

// requiredAbsPath checks a required absolute file path.
func (c *checker) requiredAbsPath(path, p string) {
	if p == "" {
		c.errorf(path, "required")
		return
	}
	c.absPath(path, p)
}

// duration checks an optional positive Go duration.
func (c *checker) duration(path, s string) {
	if s == "" {
		return
	}
	if _, msg := parsePositiveDuration(s); msg != "" {
		c.errorf(path, "%q %s", s, msg)
	}
}

func (c *checker) email(path, s string) {
	if !isEmail(s) {
		c.errorf(path, "%q is not a valid email address", s)
	}
}

// httpURL checks an http or https URL; https only unless loopbackHTTP allows
// http for loopback hosts (local test servers). The message names the
// URL's scheme and host, never the URL: it may carry credentials.
func (c *checker) httpURL(path, s string, loopbackHTTP bool) {
	if msg := httpURLProblem(s, loopbackHTTP); msg != "" {
		c.errorf(path, "%s", msg)
	}
}
