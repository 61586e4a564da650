package apiv1_test

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/alert"
	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

func TestDocsCopyOfTheOpenAPIDocumentIsTheSame(t *testing.T) {
	docs, err := os.ReadFile("../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(docs, apiv1.OpenAPIDocument()) {
		t.Error("docs/openapi.json differs from apiv1/openapi.json, which the server embeds and serves: " +
			"edit apiv1/openapi.json, then copy it (cp apiv1/openapi.json docs/openapi.json)")
	}
}

func TestOpenAPIDocumentIsACopy(t *testing.T) {
	a := apiv1.OpenAPIDocument()
	want := string(a)
	a[0] = 'X'
	if got := string(apiv1.OpenAPIDocument()); got != want {
		t.Error("changing the returned document changed the next one")
	}
}

// schemaTypes returns the document's object schemas and the Go types whose
// JSON they describe.
func schemaTypes() map[string]reflect.Type {
	return map[string]reflect.Type{
		"Error":              reflect.TypeFor[agentproto.ErrorBody](),
		"ErrorDetail":        reflect.TypeFor[agentproto.ErrorDetail](),
		"Status":             reflect.TypeFor[apiv1.Status](),
		"Condition":          reflect.TypeFor[state.Condition](),
		"Alert":              reflect.TypeFor[alert.Alert](),
		"CertificateSummary": reflect.TypeFor[apiv1.CertificateSummary](),
		"DeploymentSummary":  reflect.TypeFor[apiv1.DeploymentSummary](),
		"CertificateList":    reflect.TypeFor[apiv1.CertificateList](),
		"AgentSummary":       reflect.TypeFor[apiv1.AgentSummary](),
		"Liveness":           reflect.TypeFor[apiv1.Liveness](),
		"AgentList":          reflect.TypeFor[apiv1.AgentList](),
		"Certificate":        reflect.TypeFor[apiv1.Certificate](),
		"CertificateStatus":  reflect.TypeFor[apiv1.CertificateStatus](),
		"Deployment":         reflect.TypeFor[apiv1.Deployment](),
		"Revocation":         reflect.TypeFor[apiv1.Revocation](),
		"Agent":              reflect.TypeFor[apiv1.Agent](),
		"AgentStatus":        reflect.TypeFor[apiv1.AgentStatus](),
		"PolicyRefusal":      reflect.TypeFor[apiv1.PolicyRefusal](),
		"RevisionList":       reflect.TypeFor[apiv1.RevisionList](),
		"RevisionRecord":     reflect.TypeFor[state.RevisionRecord](),
		"Revision":           reflect.TypeFor[state.Revision](),
		"RevisionError":      reflect.TypeFor[spec.Error](),
		"Counts":             reflect.TypeFor[state.Counts](),
		"ActionRecord":       reflect.TypeFor[state.ActionRecord](),
	}
}

// untypedSchemas returns the object schemas with no Go type of their own.
func untypedSchemas() map[string]string {
	return map[string]string{
		"Health":          "a map written by the handler",
		"Ready":           "a map written by the handler",
		"ObjectMeta":      "apiv1.Object, checked through the schemas that embed it",
		"OpenAPIDocument": "the document itself",
	}
}

// enum is an enum schema's Go type (nil for a plain string) and values.
type enum struct {
	typ    reflect.Type
	values []string
}

// enums returns the document's enum schemas: the Go type each describes
// and its values, from its constants.
func enums() map[string]enum {
	return map[string]enum{
		"ErrorCode": {reflect.TypeFor[agentproto.Code](), strs(agentproto.CodeInvalid, agentproto.CodeUnauthorized, agentproto.CodeForbidden,
			agentproto.CodeNotFound, agentproto.CodeMethodNotAllowed, agentproto.CodeConflict, agentproto.CodeTooLarge, agentproto.CodeRejected,
			agentproto.CodeCSRMismatch, agentproto.CodeNameNotPermitted, agentproto.CodeBackoff, agentproto.CodeInternal,
			agentproto.CodeUnavailable, agentproto.CodeIssuerUnavailable)},
		"ConditionType":   {reflect.TypeFor[state.ConditionType](), strs(state.ConditionReady, state.ConditionReconciling, state.ConditionStalled)},
		"ConditionStatus": {reflect.TypeFor[state.ConditionStatus](), strs(state.True, state.False, state.Unknown)},
		"Severity":        {reflect.TypeFor[alert.Severity](), strs(alert.Warning, alert.Critical)},
		"Kind":            {reflect.TypeFor[spec.Kind](), strs(spec.Kinds...)},
		"DeploymentState": {reflect.TypeFor[state.DeploymentState](), strs(state.DeploymentPending, state.DeploymentIssued,
			state.DeploymentIssueFailed, state.DeploymentInstalled, state.DeploymentFailed, state.DeploymentRolledBack)},
		"LivenessState":   {nil, []string{apiv1.Online, apiv1.Offline}}, // a plain string in Go
		"RevisionOutcome": {reflect.TypeFor[state.RevisionOutcome](), strs(state.OutcomeApplied, state.OutcomeInvalid, state.OutcomePruneBlocked, state.OutcomeFailed, state.OutcomeUntrusted)},
		"Action":          {reflect.TypeFor[state.Action](), strs(state.ActionCreate, state.ActionUpdate, state.ActionDelete)},
	}
}

func strs[S ~string](s ...S) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return out
}

// TestOpenAPISchemasMatchTheGoTypes compares every object schema with its
// Go type field by field, so a field added to a type, even one no test
// answer sets, fails until the document describes it: each JSON field is a
// property, required unless omitempty, of the matching type; the schema
// lists nothing else and admits nothing else (additionalProperties or
// unevaluatedProperties false). Enum schemas list their type's constants.
func TestOpenAPISchemasMatchTheGoTypes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]map[string]any
		}
	}
	if err := json.Unmarshal(apiv1.OpenAPIDocument(), &doc); err != nil {
		t.Fatal(err)
	}
	c := checker{t: t, schemas: doc.Components.Schemas}
	for name, s := range c.schemas {
		_, typed := schemaTypes()[name]
		_, enum := enums()[name]
		_, untyped := untypedSchemas()[name]
		switch {
		case typed:
			c.object(name, schemaTypes()[name])
		case enum:
			got, _ := s["enum"].([]any)
			if want := enums()[name].values; !slices.Equal(sortedStrings(got), sorted(want)) {
				t.Errorf("schema %s: enum %v, want the constants %v", name, got, want)
			}
		case untyped:
		case s["type"] == "object" && s["properties"] != nil:
			t.Errorf("schema %s: an object schema with no Go type in schemaTypes", name)
		}
	}
}

type checker struct {
	t       *testing.T
	schemas map[string]map[string]any
}

// object checks the object schema name against the struct type typ.
func (c checker) object(name string, typ reflect.Type) {
	props, required, closed := c.flatten(c.schemas[name])
	if !closed {
		c.t.Errorf("schema %s: neither additionalProperties nor unevaluatedProperties is false", name)
	}
	fields := jsonFields(typ)
	for _, f := range fields {
		p, ok := props[f.name]
		if !ok {
			c.t.Errorf("schema %s: no property %q (%s.%s)", name, f.name, typ, f.goName)
			continue
		}
		if required[f.name] == f.omitempty {
			c.t.Errorf("schema %s: property %q required=%v, want %v (omitempty=%v)", name, f.name, required[f.name], !f.omitempty, f.omitempty)
		}
		c.value(name+"."+f.name, p, f.typ)
	}
	for p := range props {
		if !slices.ContainsFunc(fields, func(f field) bool { return f.name == p }) {
			c.t.Errorf("schema %s: property %q is not a field of %s", name, p, typ)
		}
	}
}

// flatten returns the properties and required names of an object schema,
// with those of its allOf, and whether it admits no other property.
func (c checker) flatten(s map[string]any) (props map[string]map[string]any, required map[string]bool, closed bool) {
	props, required = map[string]map[string]any{}, map[string]bool{}
	for _, sub := range asSlice(s["allOf"]) {
		subProps, subRequired, _ := c.flatten(c.resolve(sub.(map[string]any)))
		for k, v := range subProps {
			props[k] = v
		}
		for k := range subRequired {
			required[k] = true
		}
	}
	for k, v := range asMap(s["properties"]) {
		if _, ok := props[k]; !ok || v.(map[string]any)["const"] == nil {
			props[k] = v.(map[string]any) // a const next to an allOf's property narrows it
		}
	}
	for _, r := range asSlice(s["required"]) {
		required[r.(string)] = true
	}
	return props, required, s["additionalProperties"] == false || s["unevaluatedProperties"] == false
}

func (c checker) resolve(s map[string]any) map[string]any {
	if ref, ok := s["$ref"].(string); ok {
		return c.schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
	}
	return s
}

// value checks that schema s, at path, describes values of type typ.
func (c checker) value(path string, s map[string]any, typ reflect.Type) {
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		if e, ok := enums()[name]; ok {
			if e.typ != nil && e.typ != typ || e.typ == nil && typ.Kind() != reflect.String {
				c.t.Errorf("%s: the enum %s describes %v, the field is %v", path, name, e.typ, typ)
			}
			return
		}
		if want, ok := schemaTypes()[name]; ok {
			if want != typ {
				c.t.Errorf("%s: schema %s describes %v, the field is %v", path, name, want, typ)
			}
			return
		}
		s = c.schemas[name] // e.g. Labels
	}
	// A typed string with an enum schema must use it.
	for name, e := range enums() {
		if e.typ == typ {
			c.t.Errorf("%s: a %v, want a $ref to schema %s", path, typ, name)
			return
		}
	}
	want := ""
	switch {
	case typ == reflect.TypeFor[time.Time]():
		if s["type"] != "string" || s["format"] != "date-time" {
			c.t.Errorf("%s: a time, want type string, format date-time; got %v", path, s)
		}
		return
	case typ == reflect.TypeFor[json.RawMessage]():
		want = "object"
	case typ.Kind() == reflect.String:
		want = "string"
	case typ.Kind() == reflect.Bool:
		want = "boolean"
	case typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Uint64:
		want = "integer"
	case typ.Kind() == reflect.Slice:
		want = "array"
		c.value(path+"[]", asMap2(s["items"]), typ.Elem())
	case typ.Kind() == reflect.Map:
		want = "object"
		c.value(path+"{}", asMap2(s["additionalProperties"]), typ.Elem())
	default:
		c.t.Errorf("%s: %v has no rule in this test", path, typ)
		return
	}
	got := s["type"]
	if got == nil && s["const"] != nil {
		got = jsonType(s["const"])
	}
	if got != want {
		c.t.Errorf("%s: type %v, want %s for %v", path, got, want, typ)
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64:
		return "number"
	}
	return ""
}

type field struct {
	name, goName string
	omitempty    bool
	typ          reflect.Type
}

// jsonFields lists the fields encoding/json writes for struct type typ,
// with those of its embedded structs.
func jsonFields(typ reflect.Type) []field {
	var out []field
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		if f.Anonymous && tag == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out = append(out, field{name: name, goName: f.Name, omitempty: strings.Contains(","+opts+",", ",omitempty,"), typ: f.Type})
	}
	return out
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

// asMap2 is asMap for a schema that must be there.
func asMap2(v any) map[string]any {
	if m, ok := v.(map[string]any); ok {
		return m
	}
	return map[string]any{}
}

func sortedStrings(v []any) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i], _ = s.(string)
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}
