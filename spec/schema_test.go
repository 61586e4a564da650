package spec

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite docs/schema/certops-v1.json from the generator")

const schemaFile = "../docs/schema/certops-v1.json"

// TestSchema checks the committed schema matches the generator; regenerate
// it with: go test ./spec -run TestSchema -update
func TestSchema(t *testing.T) {
	got, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll("../docs/schema", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(schemaFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatalf("%v (run: go test ./spec -run TestSchema -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale; run: go test ./spec -run TestSchema -update\n%s", schemaFile, cmp.Diff(string(want), string(got)))
	}

	var doc map[string]any
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	defs := doc["$defs"].(map[string]any)
	tok := defs["AgentSpec"].(map[string]any)["properties"].(map[string]any)["tokenSHA256"].(map[string]any)
	if tok["pattern"] != "^[0-9a-f]{64}$" {
		t.Errorf("tokenSHA256 schema = %v", tok)
	}
	if defs["DeployFiles"].(map[string]any)["additionalProperties"] != false {
		t.Error("DeployFiles allows additional properties")
	}
}

func TestKindSchema(t *testing.T) {
	for _, k := range Kinds {
		b, err := KindSchema(k)
		if err != nil || !json.Valid(b) || !bytes.Contains(b, []byte(`"$ref": "#/$defs/`+string(k)+`"`)) {
			t.Errorf("KindSchema(%s) = %s, %v", k, b, err)
		}
	}
	if _, err := KindSchema("Secret"); err == nil {
		t.Error("KindSchema(Secret) succeeded")
	}
}

// TestReferenceDoc checks docs/yaml-reference.md against the types: every
// YAML example in it loads cleanly, and every field of every type is
// documented.
func TestReferenceDoc(t *testing.T) {
	doc := string(readTestdata(t, "../docs/yaml-reference.md"))
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(blocks) == 0 {
		t.Fatal("no yaml examples")
	}
	var all []string
	for _, b := range blocks {
		all = append(all, b[1])
	}
	objs, errs := ParseFile("yaml-reference.md", []byte(strings.Join(all, "\n---\n")))
	if len(errs) != 0 {
		t.Errorf("examples do not parse:\n%v", errs)
	}
	if errs := Validate(objs); len(errs) != 0 {
		t.Errorf("examples do not validate together:\n%v", errs)
	}
	var schema map[string]any
	b, _ := JSONSchema()
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	for name, def := range schema["$defs"].(map[string]any) {
		for field := range def.(map[string]any)["properties"].(map[string]any) {
			if !strings.Contains(doc, "`"+field+"`") {
				t.Errorf("field %s.%s is not documented", name, field)
			}
		}
	}
}
