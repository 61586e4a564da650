package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	yaml "sigs.k8s.io/yaml/goyaml.v3"

	"github.com/certops/certops/agentproto"
)

// ReasonHostPolicyRefused is agentproto.ReasonHostPolicyRefused.
const ReasonHostPolicyRefused = agentproto.ReasonHostPolicyRefused

// Policy is the host's bound on what the config repository may make this
// agent write or run (certops-agent --policy-file). The host owns it, not
// Git.
type Policy struct {
	// AllowedDirs: every file the agent writes (certificate files, http-01
	// challenge files) must resolve inside one of these directories, with
	// no symlink leading out of it. Merged with Config.AllowedDirs.
	AllowedDirs []string `yaml:"allowedDirs"`
	// AllowedReloads are the reload argv lists allowed, compared element
	// by element; a last element "*" matches any rest (also none). With a
	// policy, an assignment with a reload not listed here is refused (an
	// empty list allows no reload at all).
	AllowedReloads [][]string `yaml:"allowedReloads"`
	// MaxFileMode caps the mode of the certificate, chain, fullchain and
	// DER files (octal, e.g. "0644"); empty: no cap. Keys and the key
	// containers (combined, PKCS#12, JKS) are capped at 0600 whatever the
	// policy.
	MaxFileMode string `yaml:"maxFileMode"`

	maxMode os.FileMode
}

// LoadPolicy reads and strictly decodes a policy file: an unknown field, a
// relative or unclean directory, an empty reload argv or a bad mode is an
// error.
func LoadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy is LoadPolicy of the file's content.
func ParsePolicy(b []byte) (*Policy, error) {
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("want one YAML document")
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

func (p *Policy) validate() error {
	for _, d := range p.AllowedDirs {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d {
			return fmt.Errorf("allowedDirs: %q is not a clean absolute path", d)
		}
	}
	for i, argv := range p.AllowedReloads {
		if len(argv) == 0 || argv[0] == "" || argv[0] == "*" {
			return fmt.Errorf("allowedReloads[%d]: want a command and its arguments, got %q", i, argv)
		}
	}
	if p.MaxFileMode != "" {
		m, err := strconv.ParseUint(p.MaxFileMode, 8, 32)
		if err != nil || m > 0o777 {
			return fmt.Errorf("maxFileMode %q: want octal permissions such as \"0644\"", p.MaxFileMode)
		}
		p.maxMode = os.FileMode(m)
	}
	return nil
}

// reloadAllowed reports whether argv matches one of allowed: the same
// elements, or the elements before a last "*" followed by anything.
func reloadAllowed(allowed [][]string, argv []string) bool {
	for _, a := range allowed {
		if n := len(a); n > 0 && a[n-1] == "*" {
			if len(argv) >= n-1 && slices.Equal(a[:n-1], argv[:n-1]) {
				return true
			}
		} else if slices.Equal(a, argv) {
			return true
		}
	}
	return false
}

// refused is an error of the host policy.
func refused(format string, args ...any) error {
	return fmt.Errorf(ReasonHostPolicyRefused+": "+format, args...)
}

// allowedDirs is the union of Config.AllowedDirs and the policy's.
func (c *Config) allowedDirs() []string {
	dirs := slices.Clone(c.AllowedDirs)
	if c.Policy != nil {
		for _, d := range c.Policy.AllowedDirs {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// allowed checks that path (clean, absolute) is inside one of the allowed
// directories, none given allowing any. Inside means lexically below the
// directory and, resolved from it through os.Root, not led out of it by a
// symlink: every existing directory on the way is checked. The last
// element itself is not followed: an install replaces it by a rename.
func (a *Agent) allowed(path string) error {
	dirs := a.dirs
	if len(dirs) == 0 {
		return nil
	}
	var escape error
	for _, d := range dirs {
		rel, err := filepath.Rel(d, path)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		if err := beneath(d, filepath.Dir(rel)); err != nil {
			escape = err
			continue
		}
		return nil
	}
	if escape != nil {
		return refused("path %s is outside allowedDirs %v: %v", path, dirs, escape)
	}
	return refused("path %s is outside allowedDirs %v", path, dirs)
}

// beneath checks that rel, and each of its parents, resolves inside dir
// when it exists. A dir that does not exist holds no symlink.
func beneath(dir, rel string) error {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer root.Close()
	for q := rel; q != "."; q = filepath.Dir(q) {
		fi, err := root.Stat(q)
		if errors.Is(err, fs.ErrNotExist) {
			continue // created by the install; its parent decides
		}
		if err != nil {
			return fmt.Errorf("%s does not resolve inside %s (%v)", filepath.Join(dir, q), dir, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", filepath.Join(dir, q))
		}
		return nil // the deepest existing directory is inside: so are its parents
	}
	return nil
}

// reloadAllowed checks argv against the policy's allowedReloads.
func (a *Agent) reloadAllowed(argv []string) error {
	p := a.cfg.Policy
	if p == nil || len(argv) == 0 || reloadAllowed(p.AllowedReloads, argv) {
		return nil
	}
	return refused("reload %q is not in allowedReloads %q", argv, p.AllowedReloads)
}

// checkPolicy is the host policy's verdict on an assignment, before
// anything is issued, written or run.
func (a *Agent) checkPolicy(as agentproto.Assignment) error {
	var errs []error
	f := as.Files
	for _, p := range []struct{ field, path string }{
		{"cert", f.Cert}, {"chain", f.Chain}, {"fullchain", f.Fullchain}, {"key", f.Key},
		{"combined", f.Combined}, {"der", f.DER}, {"pkcs12", f.PKCS12}, {"jks", f.JKS},
		// Read, not written: the password files are bounded by the same
		// directories, so Git cannot make the agent read any secret it can.
		{"pkcs12PasswordFile", f.PKCS12PasswordFile}, {"jksPasswordFile", f.JKSPasswordFile},
	} {
		if p.path == "" || !filepath.IsAbs(p.path) || filepath.Clean(p.path) != p.path {
			continue // fileSet reports an unusable path
		}
		err := a.allowed(p.path)
		if err == nil && f.Layout == layoutSymlink && !strings.HasSuffix(p.field, "PasswordFile") {
			// The files are written under D/.certops.NAME/current/: that
			// directory must not lead out either.
			dir, base := filepath.Split(p.path)
			err = a.allowed(filepath.Join(dir, versionsPrefix+as.Name, currentLink, base))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("files.%s: %w", p.field, err))
		}
	}
	if err := a.reloadAllowed(as.Reload); err != nil {
		errs = append(errs, err)
	}
	return policyRefusal(errs)
}

// policyRefusal joins the host policy's refusals into one error: the reason
// once, then each rule that refused; nil when there are none.
func policyRefusal(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = strings.Replace(err.Error(), ReasonHostPolicyRefused+": ", "", 1)
	}
	return refused("%s", strings.Join(msgs, "; "))
}

// capMode caps a file's mode: keys and key containers at 0600 always,
// other files at the policy's maxFileMode when set.
func (a *Agent) capMode(m os.FileMode, key bool) os.FileMode {
	if key {
		return m & 0o600
	}
	if p := a.cfg.Policy; p != nil && p.MaxFileMode != "" {
		return m & p.maxMode
	}
	return m
}
