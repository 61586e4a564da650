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

// Text writes a compact human-readable plan: a per-kind summary, then one line
// per object (+ create, ~ update, - delete) with an update's fields indented.
func (r Report) Text(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "certops plan: %s → %s\n", revLabel(r.Base, r.BaseCommit), revLabel(r.Head, r.HeadCommit))
	if !r.Valid {
		fmt.Fprintf(&b, "The head %s and would be refused: %s.\n", r.Refusal, plural(len(r.Errors), "error"))
		for _, e := range r.Errors {
			fmt.Fprintln(&b, e.Error())
		}
		_, err := w.Write(b.Bytes())
		return err
	}
	if len(r.Changes) == 0 {
		b.WriteString("No changes.\n")
	}
	for _, k := range r.changedKinds() {
		n := r.Counts[k]
		fmt.Fprintf(&b, "%s: %d to create, %d to update, %d to delete\n", k, n.Create, n.Update, n.Delete)
	}
	for _, warning := range slices.Concat(r.PruneWarnings, r.RateLimitWarnings) {
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
				fmt.Fprintf(&b, "    ~ %s: %s → %s\n", f.Path, f.Old, f.New)
			case f.New != nil:
				fmt.Fprintf(&b, "    + %s: %s\n", f.Path, f.New)
			case f.Old != nil:
				fmt.Fprintf(&b, "    - %s: %s\n", f.Path, f.Old)
			}
		}
	}
	if len(r.Hosts) > 0 {
		b.WriteString("\nOn the hosts (what the agents will write and run; each host's policy decides):\n")
		for _, h := range r.Hosts {
			fmt.Fprintf(&b, "  %s (%s) on %s\n", h.Title(), strings.Join(h.Changed, ", "), listOrNone(h.Agents))
			fmt.Fprintf(&b, "    files:  %s\n", listOrNone(h.Paths))
			fmt.Fprintf(&b, "    reload: %s\n", argvOrNone(h.Reload))
		}
	}
	textRouting(&b, r.AlertRouting)
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

// JSON writes the report itself, indented, with formatVersion set; empty
// lists are [] rather than null. A field's old and new values are JSON
// values, left out where the leaf is absent.
func (r Report) JSON(w io.Writer) error {
	r.FormatVersion = FormatVersion
	if r.Errors == nil {
		r.Errors = []spec.Error{}
	}
	if r.Hosts == nil {
		r.Hosts = []HostChange{}
	}
	if r.AlertRouting == nil {
		r.AlertRouting = []AlertRouting{}
	}
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
	if r.RateLimitWarnings == nil {
		r.RateLimitWarnings = []string{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Values are shown as they are in the repository; nothing embeds this in HTML.
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// revLabel is a revision as people see it: the label, and the short commit
// hash it resolved to unless the label already is that hash.
func revLabel(ref, commit string) string {
	short := commit[:min(len(commit), 7)]
	if short == "" || strings.HasPrefix(ref, short) || strings.HasPrefix(commit, ref) {
		return ref
	}
	return ref + " (" + short + ")"
}

// plural is "1 error", "2 errors".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
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
