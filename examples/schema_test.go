package examples_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	yaml "sigs.k8s.io/yaml/goyaml.v3"
)

// schemaFile is the committed JSON Schema editors check the examples against.
const schemaFile = "../docs/schema/certops-v1.json"

// compileSchema compiles the committed schema with a real JSON Schema
// validator (draft 2020-12, as its $schema says).
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", schemaFile, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("certops-v1.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("certops-v1.json")
	if err != nil {
		t.Fatalf("compile %s: %v", schemaFile, err)
	}
	return sch
}

// documents decodes every non-empty YAML document of data with the YAML
// library certops parses with, into plain JSON values (maps, slices,
// strings, json.Number, bools, nil), keyed by 1-based document number.
func documents(data []byte) (map[int]any, error) {
	docs := map[int]any{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for n := 1; ; n++ {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if v == nil {
			continue // an empty document, which certops skips too
		}
		// Through JSON, so that the validator sees exactly JSON's types.
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if docs[n], err = jsonschema.UnmarshalJSON(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
	}
}

// validateFile validates every document of one file, as FILE:DOC: error.
func validateFile(sch *jsonschema.Schema, name string, data []byte) []string {
	docs, err := documents(data)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", name, err)}
	}
	var problems []string
	for n := 1; len(docs) > 0; n++ {
		doc, ok := docs[n]
		if !ok {
			continue
		}
		delete(docs, n)
		if err := sch.Validate(doc); err != nil {
			problems = append(problems, fmt.Sprintf("%s:%d: %v", name, n, err))
		}
	}
	return problems
}

// exampleFiles is every YAML file under config/, by slash path.
func exampleFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := fs.WalkDir(os.DirFS("."), "config", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (path.Ext(p) != ".yaml" && path.Ext(p) != ".yml") {
			return err
		}
		files[p], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no YAML files under config/")
	}
	return files
}

// TestExamplesMatchSchema: every document under config/ is valid against
// the committed JSON Schema, the one editors check with.
func TestExamplesMatchSchema(t *testing.T) {
	sch := compileSchema(t)
	docs := 0
	for name, data := range exampleFiles(t) {
		d, err := documents(data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		docs += len(d)
		for _, p := range validateFile(sch, name, data) {
			t.Error(p)
		}
	}
	if docs != 30 { // the objects TestConfigLoadsFromDisk counts
		t.Errorf("validated %d documents, want the 30 objects of the example", docs)
	}
}

// TestSchemaRefusesBadDocuments: the validator is real; an unknown field,
// a wrongly typed value or a missing kind is refused, naming the document.
func TestSchemaRefusesBadDocuments(t *testing.T) {
	sch := compileSchema(t)
	const agent = "apiVersion: certops/v1\nkind: Agent\nmetadata: {name: web-01}\nspec:\n  tokenSHA256: 49c3d8ff1f76949ea228e0b458dfabc64b57e9d700d98c554c3ff399542464b9\n"
	if p := validateFile(sch, "ok.yaml", []byte(agent+"---\n"+agent)); len(p) != 0 {
		t.Fatalf("a valid file is refused: %v", p)
	}
	for name, tt := range map[string]struct{ doc, want string }{
		"unknown field": {agent + "  tokenFile: /x\n", "tokenFile"},
		"bad type":      {strings.Replace(agent, "metadata: {name: web-01}", "metadata: {name: 7}", 1), "name"},
		"bad pattern":   {strings.Replace(agent, "49c3", "XYZ!", 1), "tokenSHA256"},
		"no kind":       {strings.Replace(agent, "kind: Agent\n", "", 1), "kind"},
	} {
		// The bad document is the second: the first, valid one, is not reported.
		p := validateFile(sch, "bad.yaml", []byte(agent+"---\n"+tt.doc))
		if len(p) != 1 || !strings.HasPrefix(p[0], "bad.yaml:2: ") || !strings.Contains(p[0], tt.want) {
			t.Errorf("%s: got %q, want one error for bad.yaml:2 naming %s", name, p, tt.want)
		}
	}
}

// TestExamplesCarryModeline: yaml-language-server reads a modeline per
// document, so every document under config/ starts with one, pointing at
// the committed schema.
func TestExamplesCarryModeline(t *testing.T) {
	separator := regexp.MustCompile(`(?m)^---[ \t]*$`)
	modeline := regexp.MustCompile(`^# yaml-language-server: \$schema=(\S+)$`)
	for name, data := range exampleFiles(t) {
		for i, doc := range separator.Split(string(data), -1) {
			first, _, _ := strings.Cut(strings.TrimPrefix(doc, "\n"), "\n")
			m := modeline.FindStringSubmatch(first)
			switch {
			case m == nil:
				t.Errorf("%s:%d: the document does not start with a yaml-language-server modeline (first line %q)", name, i+1, first)
			case path.Join(path.Dir(name), m[1]) != "../docs/schema/certops-v1.json":
				t.Errorf("%s:%d: the modeline points at %s, want the committed schema", name, i+1, m[1])
			}
		}
	}
}
