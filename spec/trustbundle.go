package spec

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// KindTrustBundle is a set of CA certificates the agents install as one
// PEM file, for the services on the hosts to trust.
const KindTrustBundle Kind = "TrustBundle"

// TrustBundle is a document of kind TrustBundle.
type TrustBundle struct {
	Header `json:",inline" yaml:",inline"`
	Spec   TrustBundleSpec `json:"spec" yaml:"spec"`
}

// TrustBundleSpec lists the CA certificates of the bundle and where the
// agents install it.
type TrustBundleSpec struct {
	// Sources are the bundle's CA certificates; at least one. The bundle
	// holds each certificate once, in a stable order (see agentapi).
	Sources []TrustSource     `json:"sources" yaml:"sources"`
	Deploy  TrustBundleDeploy `json:"deploy" yaml:"deploy"`
}

// TrustSource is exactly one of Issuer or PEM.
type TrustSource struct {
	// Issuer names an Issuer: its CA certificate for a localCA issuer,
	// the root (last certificate) of the chain its certificates come with
	// for an ACME issuer, once the server has issued one, and the CA
	// certificates of caBundleFile for an external or a vault issuer.
	Issuer string `json:"issuer,omitempty" yaml:"issuer,omitempty"`
	// PEM is one or more CA certificates ("-----BEGIN CERTIFICATE-----"
	// blocks) committed in Git.
	PEM string `json:"pem,omitempty" yaml:"pem,omitempty"`
}

// TrustBundleDeploy says which agents install the bundle, where, and how
// to reload. Its targeting is a Certificate's (see Targeting).
type TrustBundleDeploy struct {
	Agents        []string       `json:"agents,omitempty" yaml:"agents,omitempty"`
	AgentSelector *LabelSelector `json:"agentSelector,omitempty" yaml:"agentSelector,omitempty"`
	Files         BundleFiles    `json:"files" yaml:"files"`
	Reload        []string       `json:"reload,omitempty" yaml:"reload,omitempty"`
}

// BundleFiles is where the bundle goes on the agent hosts.
type BundleFiles struct {
	// Bundle is the absolute path of the PEM file.
	Bundle string `json:"bundle" yaml:"bundle"`
	// Mode is an octal file mode as a string (default "0644").
	Mode  string `json:"mode,omitempty" yaml:"mode,omitempty"`
	Owner string `json:"owner,omitempty" yaml:"owner,omitempty"`
	Group string `json:"group,omitempty" yaml:"group,omitempty"`
}

// Targeting is the deploy block's agents and selector as a Deployment, so
// that one rule (Deployment.Selects, AgentIndex.Targets) decides which
// agents get certificates and bundles alike.
func (d *TrustBundleDeploy) Targeting() *Deployment {
	return &Deployment{Agents: d.Agents, AgentSelector: d.AgentSelector}
}

// TrustBundle returns the object's spec if it is a TrustBundle, else nil.
func (o *Object) TrustBundle() *TrustBundleSpec { s, _ := o.Spec.(*TrustBundleSpec); return s }

// ParseCACertificates parses PEM text that must hold only CA certificates:
// at least one CERTIFICATE block, nothing else but whitespace between
// blocks, each with basicConstraints CA:TRUE and valid at now. The error
// names the (1-based) block that is wrong.
func ParseCACertificates(text string, now time.Time) ([]*x509.Certificate, error) {
	rest := []byte(text)
	var out []*x509.Certificate
	for n := 1; ; n++ {
		if len(bytes.TrimSpace(rest)) == 0 {
			break
		}
		if i := bytes.Index(rest, []byte("-----BEGIN")); i < 0 || len(bytes.TrimSpace(rest[:i])) > 0 {
			return nil, fmt.Errorf("block %d: text that is not a PEM block (want only \"-----BEGIN CERTIFICATE-----\" blocks)", n)
		}
		block, next := pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("block %d: not a valid PEM block", n)
		}
		rest = next
		switch {
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("block %d is a private key (%s): never commit keys; a trust bundle holds CA certificates only", n, block.Type)
		case block.Type != "CERTIFICATE":
			return nil, fmt.Errorf("block %d is a %q block, not a CERTIFICATE", n, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("block %d is not a valid certificate: %v", n, err)
		}
		subject := c.Subject.String()
		switch {
		case !c.BasicConstraintsValid || !c.IsCA:
			return nil, fmt.Errorf("block %d (%s) is not a CA certificate (no basicConstraints CA:TRUE); a trust bundle holds CA certificates only", n, subject)
		case now.After(c.NotAfter):
			return nil, fmt.Errorf("block %d (%s) expired on %s", n, subject, c.NotAfter.UTC().Format(time.RFC3339))
		case now.Before(c.NotBefore):
			return nil, fmt.Errorf("block %d (%s) is not valid before %s", n, subject, c.NotBefore.UTC().Format(time.RFC3339))
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("holds no certificate (want \"-----BEGIN CERTIFICATE-----\" blocks)")
	}
	return out, nil
}

func (c *checker) trustBundle(s *TrustBundleSpec) {
	if len(s.Sources) == 0 {
		c.errorf("spec.sources", "at least one source is required")
	}
	seenIssuer := map[string]int{}
	for i, src := range s.Sources {
		path := fmt.Sprintf("spec.sources[%d]", i)
		c.exactlyOne(path, []string{"issuer", "pem"}, src.Issuer != "", src.PEM != "")
		if src.Issuer != "" {
			c.name(path+".issuer", src.Issuer)
			c.unique(seenIssuer, path+".issuer", "spec.sources", src.Issuer, i)
		}
		if src.PEM != "" {
			if _, err := ParseCACertificates(src.PEM, time.Now()); err != nil {
				c.errorf(path+".pem", "%v", err)
			}
		}
	}
	d := &s.Deploy
	const path = "spec.deploy"
	c.targeting(path, d.Agents, d.AgentSelector)
	if d.Reload != nil && (len(d.Reload) == 0 || d.Reload[0] == "") {
		c.errorf(path+".reload", "must be a non-empty argv list whose first element is the command")
	}
	f := &d.Files
	c.requiredAbsPath(path+".files.bundle", f.Bundle)
	if f.Mode != "" {
		m, err := strconv.ParseUint(f.Mode, 8, 32)
		if err != nil || m > 0o777 || len(f.Mode) < 3 || len(f.Mode) > 4 {
			c.errorf(path+".files.mode", "%q is not an octal file mode up to \"0777\" (e.g. \"0644\")", f.Mode)
		}
	}
	if f.Owner != "" && !isOwner(f.Owner) {
		c.errorf(path+".files.owner", "%q is not a valid user name or uid", f.Owner)
	}
	if f.Group != "" && !isOwner(f.Group) {
		c.errorf(path+".files.group", "%q is not a valid group name or gid", f.Group)
	}
}

// trustBundleLines are the field paths of a TrustBundle that errors across
// objects point at.
func trustBundleLines(p *fileParser, s *TrustBundleSpec) []string {
	var paths []string
	for i, src := range s.Sources {
		if src.Issuer != "" {
			paths = append(paths, p.intern(fmt.Sprintf("spec.sources[%d].issuer", i)))
		}
	}
	for i := range s.Deploy.Agents {
		paths = append(paths, p.intern(fmt.Sprintf("spec.deploy.agents[%d]", i)))
	}
	return append(paths, "spec.deploy.files.bundle")
}

// trustBundleRefs reports a TrustBundle's references to Issuers and Agents
// that do not exist.
func trustBundleRefs(o *Object, s *TrustBundleSpec, exists func(Kind, string) bool) ErrorList {
	var errs ErrorList
	at := func(path, format string, args ...any) {
		errs = append(errs, Error{File: o.Source.File, Line: o.line(path), Message: path + ": " + fmt.Sprintf(format, args...)})
	}
	for i, src := range s.Sources {
		if isDNSLabel(src.Issuer) && !exists(KindIssuer, src.Issuer) {
			at(fmt.Sprintf("spec.sources[%d].issuer", i), "Issuer %q does not exist", src.Issuer)
		}
	}
	for i, a := range s.Deploy.Agents {
		if isDNSLabel(a) && !exists(KindAgent, a) {
			at(fmt.Sprintf("spec.deploy.agents[%d]", i), "Agent %q does not exist", a)
		}
	}
	return errs
}

// writtenFiles is the targeting and the file paths of an object that
// writes files on agents (a Certificate with a deploy block, a
// TrustBundle), for the check that no two objects write the same file.
func writtenFiles(o *Object) (*Deployment, []deployFile) {
	switch s := o.Spec.(type) {
	case *CertificateSpec:
		if s.Deploy != nil {
			return s.Deploy, deployFiles(&s.Deploy.Files)
		}
	case *TrustBundleSpec:
		if s.Deploy.Files.Bundle != "" {
			return s.Deploy.Targeting(), []deployFile{{"bundle", s.Deploy.Files.Bundle}}
		}
	}
	return nil, nil
}
