package review

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// Markdown caps keep a PR comment readable and under the forge's size limit.
const (
	maxDetailedObjects = 200
	maxFieldsPerObject = 50
)

// Text writes a compact human-readable plan: a per-kind summary, then one line
// per object (+ create, ~ update, - delete) with an update's fields indented.
func (r Report) Text(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "certops plan: %s → %s\n", r.Base, r.Head)
	if len(r.Changes) == 0 {
		b.WriteString("No changes.\n")
	}
	for _, k := range r.changedKinds() {
		n := r.Counts[k]
		fmt.Fprintf(&b, "%s: %d to create, %d to update, %d to delete\n", k, n.Create, n.Update, n.Delete)
	}
	for _, warning := range r.PruneWarnings {
		fmt.Fprintf(&b, "warning: %s\n", warning)
	}
	if len(r.Changes) > 0 {
		b.WriteString("\n")
	}
	for _, c := range r.Changes {
		fmt.Fprintf(&b, "%s %s\n", actionSign(c.Action), c.title())
		if c.Action != state.ActionUpdate {
			continue
		}
		for _, f := range c.Fields {
			switch {
			case f.Old != nil && f.New != nil:
				fmt.Fprintf(&b, "    ~ %s: %s → %s\n", f.Path, *f.Old, *f.New)
			case f.New != nil:
				fmt.Fprintf(&b, "    + %s: %s\n", f.Path, *f.New)
			case f.Old != nil:
				fmt.Fprintf(&b, "    - %s: %s\n", f.Path, *f.Old)
			}
		}
	}
	if len(r.Hosts) > 0 {
		b.WriteString("\nOn the hosts (what the agents will write and run; each host's policy decides):\n")
		for _, h := range r.Hosts {
			fmt.Fprintf(&b, "  Certificate/%s (%s) on %s\n", h.Certificate, strings.Join(h.Changed, ", "), listOrNone(h.Agents))
			fmt.Fprintf(&b, "    files:  %s\n", listOrNone(h.Paths))
			fmt.Fprintf(&b, "    reload: %s\n", argvOrNone(h.Reload))
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// listOrNone renders a list for people, or "(none)".
func listOrNone(l []string) string {
	if len(l) == 0 {
		return "(none)"
	}
	return strings.Join(l, ", ")
}

// argvOrNone renders an argv as the JSON list it is (no shell runs it).
func argvOrNone(argv []string) string {
	if len(argv) == 0 {
		return "(none)"
	}
	return renderJSON(argv)
}

// Markdown writes the plan as a PR comment: a heading, a per-kind summary
// table, prune warnings, then a collapsible diff per object. Everything taken
// from the repository is escaped, and the output is capped (see maxDetailedObjects).
func (r Report) Markdown(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "### certops plan: %s → %s\n\n", escapeMarkdown(r.Base), escapeMarkdown(r.Head))
	if len(r.Changes) == 0 {
		b.WriteString("No changes.\n")
	} else {
		b.WriteString("| Kind | Create | Update | Delete |\n| :--- | ---: | ---: | ---: |\n")
		for _, k := range r.changedKinds() {
			n := r.Counts[k]
			fmt.Fprintf(&b, "| %s | %d | %d | %d |\n", escapeMarkdown(string(k)), n.Create, n.Update, n.Delete)
		}
	}
	for _, warning := range r.PruneWarnings {
		fmt.Fprintf(&b, "\n> **Warning:** %s\n", escapeMarkdown(warning))
	}
	for i, c := range r.Changes {
		if i == maxDetailedObjects {
			fmt.Fprintf(&b, "\n… and %d more objects.\n", len(r.Changes)-i)
			break
		}
		writeMarkdownObject(&b, c)
	}
	if len(r.Hosts) > 0 {
		var hosts strings.Builder
		for i, h := range r.Hosts {
			if i == maxDetailedObjects {
				fmt.Fprintf(&hosts, "… and %d more certificates\n", len(r.Hosts)-i)
				break
			}
			fmt.Fprintf(&hosts, "Certificate/%s (%s) on %s\n  files:  %s\n  reload: %s\n",
				h.Certificate, strings.Join(h.Changed, ", "), listOrNone(h.Agents), listOrNone(h.Paths), argvOrNone(h.Reload))
		}
		fence := strings.Repeat("`", max(3, longestRun(hosts.String(), '`')+1))
		fmt.Fprintf(&b, "\n#### On the hosts\n\nWhat the agents will write and run (each host's policy decides):\n\n%s\n%s%s\n", fence, hosts.String(), fence)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// writeMarkdownObject writes one object as a <details> block around a diff.
// The summary is raw HTML (markdown is not parsed there), so it is entity-escaped;
// the diff is literal text, so it only needs a fence its content cannot close.
func writeMarkdownObject(b *bytes.Buffer, c ObjectChange) {
	var diff strings.Builder
	for i, f := range c.Fields {
		if i == maxFieldsPerObject {
			fmt.Fprintf(&diff, "… and %d more fields\n", len(c.Fields)-i)
			break
		}
		if f.Old != nil {
			fmt.Fprintf(&diff, "- %s: %s\n", f.Path, *f.Old)
		}
		if f.New != nil {
			fmt.Fprintf(&diff, "+ %s: %s\n", f.Path, *f.New)
		}
	}
	if len(c.Fields) == 0 {
		diff.WriteString("(no field-level differences)\n")
	}
	fence := strings.Repeat("`", max(3, longestRun(diff.String(), '`')+1))
	fmt.Fprintf(b, "\n<details><summary><code>%s %s</code></summary>\n\n", actionSign(c.Action), escapeMarkdown(c.title()))
	fmt.Fprintf(b, "%sdiff\n%s%s\n\n</details>\n", fence, diff.String(), fence)
}

// JSON writes the report itself, indented; empty lists are [] rather than null.
func (r Report) JSON(w io.Writer) error {
	if r.Counts == nil {
		r.Counts = map[spec.Kind]state.Counts{}
	}
	r.Changes = slices.Clone(r.Changes)
	if r.Changes == nil {
		r.Changes = []ObjectChange{}
	}
	for i := range r.Changes {
		if r.Changes[i].Fields == nil {
			r.Changes[i].Fields = []FieldDiff{}
		}
	}
	if r.PruneWarnings == nil {
		r.PruneWarnings = []string{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// changedKinds lists the kinds with at least one change, in apply order.
func (r Report) changedKinds() []spec.Kind {
	var kinds []spec.Kind
	for k, n := range r.Counts {
		if n != (state.Counts{}) {
			kinds = append(kinds, k)
		}
	}
	slices.SortFunc(kinds, func(a, b spec.Kind) int {
		return cmp.Or(cmp.Compare(spec.KindOrder(a), spec.KindOrder(b)), strings.Compare(string(a), string(b)))
	})
	return kinds
}

// title is "Kind/name (file:line)", leaving out what is unknown.
func (c ObjectChange) title() string {
	t := string(c.Kind) + "/" + c.Name
	switch {
	case c.File != "" && c.Line > 0:
		t += fmt.Sprintf(" (%s:%d)", c.File, c.Line)
	case c.File != "":
		t += " (" + c.File + ")"
	}
	return t
}

func actionSign(a state.Action) string {
	switch a {
	case state.ActionCreate:
		return "+"
	case state.ActionUpdate:
		return "~"
	case state.ActionDelete:
		return "-"
	}
	return "?"
}

// escapeMarkdown makes s safe as one line of markdown text, a table cell or
// raw HTML: HTML specials and markdown punctuation become character references
// (which both contexts decode), and line breaks become spaces.
func escapeMarkdown(s string) string {
	return strings.NewReplacer(
		"&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;",
		"`", "&#96;", "|", "&#124;", "\\", "&#92;", "*", "&#42;", "_", "&#95;",
		"[", "&#91;", "]", "&#93;", "~", "&#126;", "@", "&#64;",
		"\r\n", " ", "\n", " ", "\r", " ",
	).Replace(s)
}

// longestRun is the length of the longest run of c in s.
func longestRun(s string, c byte) int {
	longest, run := 0, 0
	for i := range len(s) {
		if s[i] != c {
			run = 0
			continue
		}
		run++
		longest = max(longest, run)
	}
	return longest
}
