// Package review renders a certops plan for pull-request review: which
// objects a change between two revisions of the config repository creates,
// updates or deletes, down to the changed fields, as text for a terminal,
// markdown for a PR comment, or JSON for tools.
package review

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// FormatVersion is the version of the JSON document Report.JSON writes. It
// changes whenever the document's shape does: 2 added formatVersion,
// baseCommit, headCommit, valid, refusal and errors, and made a field's old
// and new values JSON values (they were JSON text inside JSON strings); 3
// added trust bundles to hosts (an entry names bundle instead of
// certificate); 4 added alertRouting; 5 added rateLimitWarnings.
const FormatVersion = 5

// Report is a plan prepared for review, or the reason there is none: a head
// revision the reconciler would refuse (Valid false, Errors say why).
type Report struct {
	// FormatVersion is FormatVersion in what Report.JSON writes.
	FormatVersion int `json:"formatVersion"`
	// Base and Head label the compared revisions (e.g. "main", "HEAD").
	Base string `json:"base"`
	Head string `json:"head"`
	// BaseCommit and HeadCommit are the full commit hashes the labels
	// resolved to; empty when unknown.
	BaseCommit string `json:"baseCommit"`
	HeadCommit string `json:"headCommit"`
	// Valid is false when the reconciler would refuse the head before
	// planning it; then Refusal says why, Errors lists the problems, and
	// there are no changes. Build sets it, Refused clears it.
	Valid bool `json:"valid"`
	// Refusal completes "the head …": "is invalid", or "has commits not
	// signed by a trusted key". Empty for a valid head.
	Refusal string `json:"refusal,omitempty"`
	// Errors are the head's problems as FILE:LINE: message; empty when valid.
	Errors []spec.Error `json:"errors"`
	// Counts tallies the changes per kind; kinds without changes are absent.
	Counts  map[spec.Kind]state.Counts `json:"counts"`
	Changes []ObjectChange             `json:"changes"`
	// PruneWarnings are shown prominently above the changes. Build leaves
	// them empty: the caller that knows the deletion guard fills them in.
	PruneWarnings []string `json:"pruneWarnings"`
	// RateLimitWarnings say where the change makes more agents order
	// certificates for one set of names from an ACME issuer than the
	// issuer's rateLimits allow in a week (so some will wait); shown
	// prominently like PruneWarnings.
	RateLimitWarnings []string `json:"rateLimitWarnings"`
	// Hosts lists what changes on the hosts: per certificate (then per
	// trust bundle), the files its agents write and the reload they run,
	// where those or the agents change.
	Hosts []HostChange `json:"hosts"`
	// AlertRouting lists where the alerts about Certificates and Agents
	// go, for those created, relabelled or routed elsewhere, when the
	// AlertPolicy routes by labels (empty otherwise).
	AlertRouting []AlertRouting `json:"alertRouting"`
}

// ObjectChange is one created, updated or deleted object and its changed fields.
type ObjectChange struct {
	Action state.Action `json:"action"`
	Kind   spec.Kind    `json:"kind"`
	Name   string       `json:"name"`
	// File and Line locate the object at head, or at base for a delete.
	File string `json:"file"`
	Line int    `json:"line"`
	// Fields are the differing leaves of the object's content: every field
	// for a create (New only) or a delete (Old only), the changed ones for an update.
	Fields []FieldDiff `json:"fields"`
}

// FieldDiff is one leaf of an object's content that differs between base and head.
type FieldDiff struct {
	// Path names the leaf: labels.team, spec.dnsNames[1], labels["app.kubernetes.io/name"].
	Path string `json:"path"`
	// Old and New are the values as JSON; nil means the leaf is absent
	// (at base, or at head), and JSON leaves the key out.
	Old json.RawMessage `json:"old,omitempty"`
	New json.RawMessage `json:"new,omitempty"`
}

// Build prepares plan for review. base and head are the desired states at the
// two revisions; plan is reconcile.Compute of head against base's hashes.
// Changes come in kind order (spec.KeyLess), each object's fields by path.
func Build(base, head map[spec.Key]*spec.Object, plan state.Plan) Report {
	before, after := hostEffects(base), hostEffects(head) // what the certificates make their agents do
	r := Report{Valid: true, Counts: plan.Counts(), Changes: make([]ObjectChange, 0, len(plan.Changes)),
		Hosts: hostChanges(before, after, base, head), AlertRouting: alertRouting(base, head),
		RateLimitWarnings: rateLimitWarnings(before, after, head)}
	for _, c := range plan.Changes {
		cur := c.Object
		if cur == nil {
			cur = head[c.Key]
		}
		var old *spec.Object
		switch c.Action {
		case state.ActionUpdate:
			old = base[c.Key]
		case state.ActionDelete:
			old, cur = base[c.Key], nil
		}
		oc := ObjectChange{Action: c.Action, Kind: c.Key.Kind, Name: c.Key.Name}
		if src := cmp.Or(cur, old); src != nil {
			oc.File, oc.Line = src.Source.File, src.Source.Line
		}
		oc.Fields = diffFields(flatten(old), flatten(cur))
		r.Changes = append(r.Changes, oc)
	}
	slices.SortStableFunc(r.Changes, func(a, b ObjectChange) int {
		ka, kb := spec.Key{Kind: a.Kind, Name: a.Name}, spec.Key{Kind: b.Kind, Name: b.Name}
		switch {
		case spec.KeyLess(ka, kb):
			return -1
		case spec.KeyLess(kb, ka):
			return 1
		}
		return 0
	})
	return r
}

// Refused is the report for a head revision the reconciler would refuse
// before planning it: reason completes "the head …" (e.g. "is invalid"),
// errs are its problems. The caller fills in the revisions.
func Refused(reason string, errs spec.ErrorList) Report {
	return Report{Refusal: reason, Errors: slices.Clone(errs), Counts: map[spec.Kind]state.Counts{}}
}

// pathElem is one step of a leaf's path: a map key or an array index.
type pathElem struct {
	key     string
	index   int
	isIndex bool
}

// leaf is one scalar (or empty map or array) in an object's content.
type leaf struct {
	path  []pathElem
	value string // JSON-rendered
}

// flatten returns the leaves of obj's canonical content by rendered path;
// nil for a nil object.
func flatten(obj *spec.Object) map[string]leaf {
	if obj == nil {
		return nil
	}
	b, err := spec.CanonicalJSON(obj.Content())
	if err != nil {
		// As in spec.Object.Hash: specs are plain data, so this cannot fail
		// for objects the planner has already hashed.
		panic(fmt.Sprintf("review: canonical JSON of %s: %v", obj.Key(), err))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var content any
	if err := dec.Decode(&content); err != nil {
		panic(fmt.Sprintf("review: decoding canonical JSON of %s: %v", obj.Key(), err))
	}
	leaves := map[string]leaf{}
	collectLeaves(nil, content, leaves)
	if obj.Kind == spec.KindTrustBundle {
		summarizePEMSources(leaves)
	}
	return leaves
}

// collectLeaves adds v's leaves under path to leaves. Maps descend by key,
// arrays by index; empty ones are leaves themselves so that {} and [] still show.
func collectLeaves(path []pathElem, v any, leaves map[string]leaf) {
	// The three-index slice makes every append copy, so siblings never share a path.
	path = path[:len(path):len(path)]
	switch v := v.(type) {
	case map[string]any:
		if len(v) > 0 {
			for k, child := range v {
				collectLeaves(append(path, pathElem{key: k}), child, leaves)
			}
			return
		}
	case []any:
		if len(v) > 0 {
			for i, child := range v {
				collectLeaves(append(path, pathElem{index: i, isIndex: true}), child, leaves)
			}
			return
		}
	}
	leaves[renderPath(path)] = leaf{path: path, value: renderJSON(v)}
}

// diffFields compares two flattened contents leaf by leaf, in path order.
func diffFields(old, cur map[string]leaf) []FieldDiff {
	paths := make(map[string][]pathElem, len(old)+len(cur))
	for p, l := range old {
		paths[p] = l.path
	}
	for p, l := range cur {
		paths[p] = l.path
	}
	keys := make([]string, 0, len(paths))
	for p := range paths {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, func(a, b string) int { return comparePaths(paths[a], paths[b]) })

	diffs := make([]FieldDiff, 0, len(keys))
	for _, p := range keys {
		o, inOld := old[p]
		n, inCur := cur[p]
		if inOld && inCur && o.value == n.value {
			continue
		}
		d := FieldDiff{Path: p}
		if inOld {
			d.Old = json.RawMessage(o.value)
		}
		if inCur {
			d.New = json.RawMessage(n.value)
		}
		diffs = append(diffs, d)
	}
	return diffs
}

// comparePaths orders paths step by step: keys alphabetically, indices
// numerically (so [2] precedes [10]), keys before indices, parents before children.
func comparePaths(a, b []pathElem) int {
	for i := range min(len(a), len(b)) {
		x, y := a[i], b[i]
		var c int
		switch {
		case x.isIndex && y.isIndex:
			c = cmp.Compare(x.index, y.index)
		case x.isIndex:
			c = 1
		case y.isIndex:
			c = -1
		default:
			c = strings.Compare(x.key, y.key)
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// renderPath writes a path as spec.deploy.files.mode, spec.dnsNames[1] or
// labels["app.kubernetes.io/name"] (keys that are not plain words are quoted).
func renderPath(path []pathElem) string {
	var b strings.Builder
	for i, e := range path {
		switch {
		case e.isIndex:
			b.WriteString("[" + strconv.Itoa(e.index) + "]")
		case !isPlainKey(e.key):
			b.WriteString("[" + renderJSON(e.key) + "]")
		case i > 0:
			b.WriteString("." + e.key)
		default:
			b.WriteString(e.key)
		}
	}
	return b.String()
}

func isPlainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// renderJSON renders a decoded JSON value on one line, without HTML escaping
// (the renderers escape for their own format).
func renderJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// v came out of a JSON decoder, so it always encodes.
		panic(fmt.Sprintf("review: rendering %v: %v", v, err))
	}
	return strings.TrimSuffix(b.String(), "\n")
}
