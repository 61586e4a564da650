package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
)

// Key identifies an object: names are unique per kind.
type Key struct {
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
}

func (k Key) String() string { return string(k.Kind) + "/" + k.Name }

// Position is where a node came from: a file relative to the config root and a 1-based line.
type Position struct {
	File string `json:"file"`
	Line int    `json:"line"`
}

// Object is one validated desired-state document in kind-independent form.
// Spec holds a pointer to the kind's spec type (*IssuerSpec, *AgentSpec, ...).
type Object struct {
	Kind        Kind              `json:"kind"`
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Spec        any               `json:"spec"`
	Source      Position          `json:"source"`

	// refLines holds the lines of the field paths ("metadata.name",
	// "spec.issuerRef", "spec.deploy.agents[2]", ...) that errors found
	// across objects point at. A slice, not a map: there are a handful per
	// object and tens of thousands of objects.
	refLines []refLine
	hash     string
}

// refLine is the line of one field path of an object.
type refLine struct {
	path string
	line int
}

// NewSpec returns a pointer to a zero spec of kind k (*IssuerSpec,
// *AgentSpec, …), or nil for an unknown kind: what Object.Spec holds.
func NewSpec(k Kind) any {
	switch k {
	case KindIssuer:
		return &IssuerSpec{}
	case KindAgent:
		return &AgentSpec{}
	case KindCertificate:
		return &CertificateSpec{}
	case KindAlertPolicy:
		return &AlertPolicySpec{}
	case KindNotificationChannel:
		return &NotificationChannelSpec{}
	case KindBackupPolicy:
		return &BackupPolicySpec{}
	case KindTrustBundle:
		return &TrustBundleSpec{}
	case KindRevocation:
		return &RevocationSpec{}
	}
	return nil
}

// Key returns the object's identity.
func (o *Object) Key() Key { return Key{Kind: o.Kind, Name: o.Name} }

// Content is what is stored and compared: labels, annotations and spec.
type Content struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Spec        any               `json:"spec"`
}

// Content returns the stored form of the object.
func (o *Object) Content() Content {
	return Content{Labels: o.Labels, Annotations: o.Annotations, Spec: o.Spec}
}

// Hash is the hex SHA-256 of the object's canonical content (see CanonicalJSON).
// It is computed once and cached.
func (o *Object) Hash() string {
	if o.hash == "" {
		b, err := CanonicalJSON(o.Content())
		if err != nil {
			// Specs are plain data; marshalling cannot fail for loaded objects.
			panic(fmt.Sprintf("spec: canonical JSON of %s: %v", o.Key(), err))
		}
		o.hash = HashBytes(b)
	}
	return o.hash
}

// CanonicalJSON renders v as JSON with object keys sorted and no insignificant
// whitespace, so equal content always gives equal bytes — whether v is a typed
// spec or the same content read back from a jsonb column.
func CanonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return canonicalize(b)
}

// HashBytes is the hex SHA-256 of b.
func HashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// State is a whole validated desired state: every object of one revision.
type State struct {
	Objects map[Key]*Object
}

// Sorted returns the objects in apply order: by kind (see Kinds), then name.
func (s State) Sorted() []*Object {
	out := make([]*Object, 0, len(s.Objects))
	for _, o := range s.Objects {
		out = append(out, o)
	}
	SortObjects(out)
	return out
}

// SortObjects sorts objects by kind order, then name.
func SortObjects(objs []*Object) {
	sort.Slice(objs, func(i, j int) bool { return KeyLess(objs[i].Key(), objs[j].Key()) })
}

// KeyLess orders keys by kind (see Kinds), then name.
func KeyLess(a, b Key) bool {
	if a.Kind != b.Kind {
		return KindOrder(a.Kind) < KindOrder(b.Kind)
	}
	return a.Name < b.Name
}

// KindOrder is the position of k in Kinds, or len(Kinds) for an unknown kind.
func KindOrder(k Kind) int {
	for i, kk := range Kinds {
		if kk == k {
			return i
		}
	}
	return len(Kinds)
}
