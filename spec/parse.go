package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "sigs.k8s.io/yaml/goyaml.v3"
)

// MaxFileSize is the largest desired-state file certops reads, in bytes.
// Larger files are rejected as a whole; split them into several files.
const MaxFileSize = 1 << 20

// maxNodeVisits bounds the YAML nodes one file may expand to through
// aliases. A file of MaxFileSize bytes holds fewer nodes than this without
// aliases, so only alias bombs ("billion laughs") ever reach it.
const maxNodeVisits = MaxFileSize

// maxErrorsPerFile stops error collection for a hopeless file.
const maxErrorsPerFile = 1000

// ParseFile parses and validates one file of desired-state documents
// separated by "---". name is the file's slash-separated path relative to
// the config root; it is used in errors only.
//
// Per file it checks the size limit (MaxFileSize), UTF-8 and YAML syntax;
// per document it requires apiVersion certops/v1 and a known kind, decodes
// strictly (unknown or duplicate keys and wrongly typed values are errors;
// fields without omitempty in their json tag are required) and validates
// the kind's semantics. Empty documents are skipped. Anchors and aliases are
// supported, "<<" merge keys are not.
//
// Every problem of the file is returned. Objects are returned for every
// document whose kind and name could be read, even when it has errors, so
// that Validate can check references across a revision without reporting
// spurious dangling references; a revision is usable only if no errors were
// found anywhere.
//
// After a document validates cleanly, defaults are written into its
// Certificate spec so that equal meaning gives equal Object.Hash:
// duration 2160h, privateKey ECDSA/256 (RSA 2048), rotationPolicy Always,
// and usages in cert-manager's space-separated form ("server auth").
func ParseFile(name string, data []byte) ([]*Object, ErrorList) {
	p := &fileParser{file: name}
	if len(data) > MaxFileSize {
		p.fileError(0, fmt.Sprintf("file is %d bytes, larger than the limit of %d bytes", len(data), MaxFileSize))
		return nil, p.errs
	}
	if !utf8.Valid(data) {
		line := 1 + bytes.Count(data[:invalidUTF8Offset(data)], []byte("\n"))
		p.fileError(line, "file is not valid UTF-8")
		return nil, p.errs
	}
	var objs []*Object
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.syntaxError(err)
			break
		}
		if o := p.document(&doc); o != nil {
			objs = append(objs, o)
		}
		if p.full() {
			break
		}
	}
	p.errs.Sort()
	return objs, p.errs
}

func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(b)
}

// syntaxError reports a goyaml.v3 syntax error ("yaml: line 3: did not
// find expected key") at its line.
func (p *fileParser) syntaxError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, text
			}
		}
	}
	p.fileError(line, "invalid YAML: "+msg)
}

// fileParser collects the errors of one file.
type fileParser struct {
	file   string
	errs   ErrorList
	visits int
	// fieldCache holds fields(t) of the struct types decoded so far.
	fieldCache map[reflect.Type][]fieldInfo
	// strings holds one copy of each string value and map key decoded from
	// the file: the objects of a file repeat many (issuer names, key
	// algorithms, durations, reload commands, label keys and values), and
	// the loaded state is kept for the next revision.
	strings map[string]string
}

// intern returns the file's copy of s.
func (p *fileParser) intern(s string) string {
	if v, ok := p.strings[s]; ok {
		return v
	}
	if p.strings == nil {
		p.strings = map[string]string{}
	}
	p.strings[s] = s
	return s
}

func (p *fileParser) fileError(line int, msg string) {
	if len(p.errs) == maxErrorsPerFile {
		p.errs = append(p.errs, Error{File: p.file, Line: line, Message: "too many errors, giving up on this file"})
	}
	if p.full() {
		return
	}
	p.errs = append(p.errs, Error{File: p.file, Line: line, Message: msg})
}

func (p *fileParser) full() bool { return len(p.errs) > maxErrorsPerFile }

// document turns one YAML document into an Object, or nil if it is empty or
// its kind or name cannot be read.
func (p *fileParser) document(doc *yaml.Node) *Object {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if isNull(root) {
		return nil // an empty document, e.g. only comments
	}
	if root.Kind != yaml.MappingNode {
		p.fileError(root.Line, "a document must be a mapping with apiVersion, kind, metadata and spec")
		return nil
	}
	apiVersion, apiLine := scalarField(root, "apiVersion")
	kind, kindLine := scalarField(root, "kind")
	switch {
	case apiLine == 0:
		p.fileError(root.Line, fmt.Sprintf("apiVersion: required (want %q)", APIVersion))
		return nil
	case apiVersion != APIVersion:
		p.fileError(apiLine, fmt.Sprintf("apiVersion: %q is not supported (want %q)", apiVersion, APIVersion))
		return nil
	case kindLine == 0:
		p.fileError(root.Line, "kind: required (one of "+kindList()+")")
		return nil
	}
	typed := newDocument(Kind(kind))
	if typed == nil {
		p.fileError(kindLine, fmt.Sprintf("kind: unknown kind %q (want one of %s)", kind, kindList()))
		return nil
	}

	d := &decoder{p: p}
	d.decode(root, reflect.ValueOf(typed).Elem(), "", root.Line)
	if d.aborted {
		return nil
	}
	c := &checker{p: p, root: root, bad: d.bad}
	before := len(p.errs)
	header, spec := c.document(typed)
	if len(p.errs) == before && !d.failed() {
		normalize(spec)
	}
	if header.Metadata.Name == "" {
		return nil
	}
	o := &Object{
		Kind:        header.Kind,
		Name:        header.Metadata.Name,
		Labels:      header.Metadata.Labels,
		Annotations: header.Metadata.Annotations,
		Spec:        spec,
		Source:      Position{File: p.file, Line: root.Line},
	}
	o.refLines = p.referenceLines(root, o)
	return o
}

func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// newDocument returns a pointer to a zero typed document of kind k, or nil.
func newDocument(k Kind) any {
	switch k {
	case KindIssuer:
		return &Issuer{}
	case KindAgent:
		return &Agent{}
	case KindCertificate:
		return &Certificate{}
	case KindAlertPolicy:
		return &AlertPolicy{}
	case KindNotificationChannel:
		return &NotificationChannel{}
	case KindBackupPolicy:
		return &BackupPolicy{}
	case KindTrustBundle:
		return &TrustBundle{}
	case KindRevocation:
		return &Revocation{}
	}
	return nil
}

// scalarField returns the value and line of a scalar key of a mapping; line
// is 0 when the key is missing or not a scalar.
func scalarField(m *yaml.Node, key string) (string, int) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			v := resolveAlias(m.Content[i+1])
			if v.Kind != yaml.ScalarNode || isNull(v) {
				return "", 0
			}
			return v.Value, v.Line
		}
	}
	return "", 0
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// referenceLines records the lines Validate needs for cross-object errors.
// The loaded state is kept between revisions, so the slice is sized
// exactly and the paths, the same in every object, are the file's copies.
func (p *fileParser) referenceLines(root *yaml.Node, o *Object) []refLine {
	var paths []string
	paths = append(paths, "metadata.name")
	switch s := o.Spec.(type) {
	case *AgentSpec:
		paths = append(paths, "spec.tokenSHA256")
	case *CertificateSpec:
		paths = append(paths, "spec.issuerRef")
		if s.Deploy != nil {
			for i := range s.Deploy.Agents {
				paths = append(paths, p.intern(fmt.Sprintf("spec.deploy.agents[%d]", i)))
			}
			for _, f := range deployFiles(&s.Deploy.Files) {
				paths = append(paths, p.intern("spec.deploy.files."+f.field))
			}
		}
	case *TrustBundleSpec:
		paths = append(paths, trustBundleLines(p, s)...)
	case *RevocationSpec:
		paths = append(paths, "spec.certificate")
	case *AlertPolicySpec:
		for i := range s.Notify {
			paths = append(paths, p.intern(fmt.Sprintf("spec.notify[%d]", i)))
		}
		for i, r := range s.Routes {
			for j := range r.Notify {
				paths = append(paths, p.intern(fmt.Sprintf("spec.routes[%d].notify[%d]", i, j)))
			}
		}
	}
	lines := make([]refLine, len(paths))
	for i, path := range paths {
		lines[i] = refLine{path, lineOf(root, path)}
	}
	return lines
}

// line returns the recorded line of a field path, falling back to the
// object's own line.
func (o *Object) line(path string) int {
	for _, r := range o.refLines {
		if r.path == path && r.line > 0 {
			return r.line
		}
	}
	return o.Source.Line
}
