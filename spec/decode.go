package spec

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	yaml "sigs.k8s.io/yaml/goyaml.v3"
)

// decoder strictly decodes a YAML node tree into a typed document by
// reflection over the yaml tags, reporting every unknown, duplicate,
// missing or wrongly typed field at its line.
type decoder struct {
	p *fileParser
	// bad holds the paths that failed to decode; the checker stays quiet
	// about them so one mistake is reported once.
	bad     map[string]bool
	aborted bool
}

func (d *decoder) failed() bool { return len(d.bad) > 0 }

// errorf reports "path: msg" at line and marks path as bad.
func (d *decoder) errorf(line int, path, msg string) {
	if path != "" {
		msg = path + ": " + msg
	}
	d.fail(line, path, msg)
}

// fail reports msg at line and marks path as bad.
func (d *decoder) fail(line int, path, msg string) {
	if d.bad == nil {
		d.bad = map[string]bool{}
	}
	d.bad[path] = true
	d.p.fileError(line, msg)
}

// decode decodes n into v. at is the line that introduced the value (its
// key's line), where missing required fields inside it are reported.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, at int) {
	if d.aborted || d.p.full() {
		d.aborted = true
		return
	}
	d.p.visits++
	if d.p.visits > maxNodeVisits {
		d.aborted = true
		d.p.fileError(n.Line, fmt.Sprintf("document expands to more than %d YAML nodes through aliases; refusing it", maxNodeVisits))
		return
	}
	n = resolveAlias(n)
	if isNull(n) {
		return // absent: the zero value
	}
	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		d.decode(n, e.Elem(), path, at)
		v.Set(e)
	case reflect.Struct:
		d.decodeStruct(n, v, path, at)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			msg := "expected a string, got " + describe(n)
			switch {
			case n.Kind == yaml.ScalarNode && secretFields[path]:
				msg = "expected a string, got " + describeType(n) + " " + notShown
			case n.Kind == yaml.ScalarNode:
				msg += fmt.Sprintf(" (quote it: %q)", n.Value)
			}
			d.errorf(n.Line, path, msg)
			return
		}
		v.SetString(d.p.intern(n.Value))
	case reflect.Int:
		d.decodeScalar(n, v, path, "an integer", "!!int")
	case reflect.Float64:
		d.decodeScalar(n, v, path, "a number", "!!float", "!!int")
	case reflect.Bool:
		d.decodeScalar(n, v, path, "true or false", "!!bool")
	default:
		panic(fmt.Sprintf("spec: no YAML decoding for %s", v.Type()))
	}
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path, want string, tags ...string) {
	ok := false
	for _, t := range tags {
		ok = ok || (n.Kind == yaml.ScalarNode && n.ShortTag() == t)
	}
	if !ok {
		d.errorf(n.Line, path, fmt.Sprintf("expected %s, got %s", want, describe(n)))
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.errorf(n.Line, path, fmt.Sprintf("%s is out of range", n.Value))
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, at int) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "expected a mapping, got "+describe(n))
		return
	}
	fs := d.p.fieldsOf(v.Type())
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolveAlias(n.Content[i])
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, path, "keys must be strings, got "+describe(k))
			continue
		}
		fpath := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, fpath, fmt.Sprintf("duplicate key (first at line %d)", first))
			continue
		}
		seen[k.Value] = k.Line
		if k.ShortTag() == "!!merge" {
			d.errorf(k.Line, fpath, "merge keys (<<) are not supported; alias the whole value instead")
			continue
		}
		f, ok := fieldByName(fs, v, k.Value)
		if !ok {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := suggestField(v.Type(), k.Value); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			if path != "" {
				msg = path + ": " + msg
			}
			d.fail(k.Line, fpath, msg)
			continue
		}
		d.decode(n.Content[i+1], f, fpath, k.Line)
	}
	for _, name := range requiredFields(fs) {
		if _, ok := seen[name]; !ok {
			d.errorf(at, join(path, name), "required")
		}
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n.Line, path, "expected a list, got "+describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		d.decode(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i), e.Line)
	}
	v.Set(s)
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "expected a mapping, got "+describe(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolveAlias(n.Content[i])
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.errorf(k.Line, path, "keys must be strings, got "+describe(k))
			continue
		}
		kpath := path + "[" + strconv.Quote(k.Value) + "]"
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, kpath, fmt.Sprintf("duplicate key (first at line %d)", first))
			continue
		}
		seen[k.Value] = k.Line
		e := reflect.New(v.Type().Elem()).Elem()
		d.decode(n.Content[i+1], e, kpath, k.Line)
		m.SetMapIndex(reflect.ValueOf(d.p.intern(k.Value)), e)
	}
	v.Set(m)
}

// describe names a node's type and value for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		case "!!null":
			return "null"
		case "!!timestamp":
			return "timestamp " + n.Value
		}
		return n.ShortTag() + " value"
	}
	return "an unsupported YAML node"
}

// describeType names a scalar node's type without its value, for values
// that may be secrets.
func describeType(n *yaml.Node) string {
	switch n.ShortTag() {
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!timestamp":
		return "a timestamp"
	}
	return "a " + n.ShortTag() + " value"
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// fieldInfo is a struct field's YAML name and whether it is required.
type fieldInfo struct {
	name     string
	index    []int
	required bool
}

// fields lists a struct type's fields by yaml name, flattening inline
// embedded structs. A field is required when its json tag has no omitempty.
func fields(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.Anonymous && strings.Contains(opts, "inline") {
			for _, sub := range fields(f.Type) {
				sub.index = append([]int{i}, sub.index...)
				out = append(out, sub)
			}
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		_, jsonOpts, _ := strings.Cut(f.Tag.Get("json"), ",")
		out = append(out, fieldInfo{name: name, index: []int{i}, required: !strings.Contains(jsonOpts, "omitempty")})
	}
	return out
}

// fieldsOf is fields(t), computed once per type for the file: reflecting
// over struct tags for every key dominated the parse of large repositories.
func (p *fileParser) fieldsOf(t reflect.Type) []fieldInfo {
	fs, ok := p.fieldCache[t]
	if !ok {
		if p.fieldCache == nil {
			p.fieldCache = make(map[reflect.Type][]fieldInfo)
		}
		fs = fields(t)
		p.fieldCache[t] = fs
	}
	return fs
}

// fieldByName returns the field of struct v named name in fs, v's fields.
func fieldByName(fs []fieldInfo, v reflect.Value, name string) (reflect.Value, bool) {
	for _, f := range fs {
		if f.name == name {
			return v.FieldByIndex(f.index), true
		}
	}
	return reflect.Value{}, false
}

// requiredFields returns the names of the required fields among fs.
func requiredFields(fs []fieldInfo) []string {
	var out []string
	for _, f := range fs {
		if f.required {
			out = append(out, f.name)
		}
	}
	return out
}

// suggestField returns the field of t whose name differs from name only in
// case or by one character, if any.
func suggestField(t reflect.Type, name string) string {
	for _, f := range fields(t) {
		if strings.EqualFold(f.name, name) || editDistanceOne(f.name, name) {
			return f.name
		}
	}
	return ""
}

// editDistanceOne reports whether a and b differ by exactly one insertion,
// deletion or substitution.
func editDistanceOne(a, b string) bool {
	if len(a) < len(b) {
		a, b = b, a
	}
	if len(a)-len(b) > 1 || a == b {
		return false
	}
	i := 0
	for i < len(b) && a[i] == b[i] {
		i++
	}
	if len(a) == len(b) {
		return a[i+1:] == b[i+1:]
	}
	return a[i+1:] == b[i:]
}

// lineOf finds the line of a field path such as `spec.deploy.agents[2]` or
// `metadata.labels["team"]` in a document: the value's line for scalars and
// list elements, the key's line for mappings and lists (their own line is
// that of their first entry). For a missing path it returns the line of the
// deepest part that exists.
func lineOf(root *yaml.Node, path string) int {
	n, line := root, root.Line
	for path != "" {
		n = resolveAlias(n)
		if path[0] == '[' {
			if rest, ok := strings.CutPrefix(path, `["`); ok {
				q, err := strconv.QuotedPrefix(`"` + rest)
				if err != nil {
					return line
				}
				key, _ := strconv.Unquote(q)
				path = strings.TrimPrefix(rest[len(q)-1:], "]")
				k, v := lookupKey(n, key)
				if k == nil {
					return line
				}
				n, line = v, k.Line
				continue
			}
			end := strings.IndexByte(path, ']')
			idx, err := strconv.Atoi(path[1:max(end, 1)])
			if end < 0 || err != nil || n.Kind != yaml.SequenceNode || idx < 0 || idx >= len(n.Content) {
				return line
			}
			path = path[end+1:]
			n = n.Content[idx]
			line = n.Line
			continue
		}
		path = strings.TrimPrefix(path, ".")
		end := strings.IndexAny(path, ".[")
		if end < 0 {
			end = len(path)
		}
		k, v := lookupKey(n, path[:end])
		if k == nil {
			return line
		}
		path = path[end:]
		n, line = v, k.Line
		if r := resolveAlias(v); r.Kind == yaml.ScalarNode {
			line = v.Line
		}
	}
	return line
}

func lookupKey(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if resolveAlias(m.Content[i]).Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}
