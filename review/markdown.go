package review

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxMarkdownBytes bounds what Markdown writes. GitHub refuses comments
// longer than 65,536 characters, and a character is at least one byte.
const MaxMarkdownBytes = 60_000

// Caps within the byte budget, so that one object cannot take it all.
const (
	maxFieldsPerObject  = 50  // fields in one object's diff
	maxLineBytes        = 500 // one line of a diff, a names-only line, an error, a warning
	maxMarkdownWarnings = 10  // warnings shown above the changes
	maxHostAgents       = 20  // agents named on one host entry
	// hostsShare: the hosts section may claim up to 1/hostsShare of the
	// budget ahead of the objects; it gets whatever the objects leave too.
	hostsShare = 4
	// routingShare: likewise for the alert routing section, after the hosts.
	routingShare = 8
)

// Markdown writes the plan as a PR comment of at most MaxMarkdownBytes: a
// heading, a per-kind summary table (always), prune warnings, then a
// collapsed diff per object, and "On the hosts". When everything does not
// fit, objects degrade in order: a collapsed diff each while they fit, then
// one line each (names only) while they fit, then a count of the rest; the
// hosts section likewise, then "Alert routing" (one line per object while
// they fit). For a refused head it writes the errors instead.
// Everything taken from the repository is escaped or fenced.
func (r Report) Markdown(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "### certops plan: %s → %s\n\n",
		escapeMarkdown(truncate(revLabel(r.Base, r.BaseCommit), 200)), escapeMarkdown(truncate(revLabel(r.Head, r.HeadCommit), 200)))
	if !r.Valid {
		r.markdownRefusal(&b)
		_, err := w.Write(b.Bytes())
		return err
	}
	if len(r.Changes) == 0 {
		b.WriteString("No changes.\n")
	} else {
		b.WriteString("| Kind | Create | Update | Delete |\n| :--- | ---: | ---: | ---: |\n")
		for _, k := range r.changedKinds() {
			n := r.Counts[k]
			fmt.Fprintf(&b, "| %s | %d | %d | %d |\n", escapeMarkdown(string(k)), n.Create, n.Update, n.Delete)
		}
	}
	warnings := slices.Concat(r.PruneWarnings, r.RateLimitWarnings)
	for i, warning := range warnings {
		if i == maxMarkdownWarnings {
			fmt.Fprintf(&b, "\n> **Warning:** … and %d more (see `certops plan --format json`)\n", len(warnings)-i)
			break
		}
		fmt.Fprintf(&b, "\n> **Warning:** %s\n", escapeMarkdown(truncate(warning, maxLineBytes)))
	}
	hosts := newHostsSection(r.Hosts)
	routing := newRoutingSection(r.AlertRouting)
	objects := MaxMarkdownBytes - b.Len()
	routingReserve := 0
	if len(r.AlertRouting) > 0 {
		routingReserve = min(routing.fullSize(), objects/routingShare)
		objects -= routingReserve
	}
	if len(r.Hosts) > 0 {
		objects -= min(hosts.fullSize(), objects/hostsShare)
	}
	writeMarkdownObjects(&b, r.Changes, objects)
	if len(r.Hosts) > 0 {
		hosts.write(&b, MaxMarkdownBytes-b.Len()-routingReserve)
	}
	routing.write(&b, MaxMarkdownBytes-b.Len())
	_, err := w.Write(b.Bytes())
	return err
}

// markdownRefusal writes why the head would be refused and its errors, as
// many as fit in the budget.
func (r Report) markdownRefusal(b *bytes.Buffer) {
	fmt.Fprintf(b, "#### The head %s and would be refused\n\n%s:\n\n", escapeMarkdown(r.Refusal), plural(len(r.Errors), "error"))
	lines := make([]string, len(r.Errors))
	for i, e := range r.Errors {
		lines[i] = truncate(e.Error(), maxLineBytes) + "\n"
	}
	fence := fenceFor(lines...)
	more := fmt.Sprintf("… and %d more errors\n", len(lines))
	budget := MaxMarkdownBytes - b.Len() - 2*(len(fence)+1) - len(more)
	b.WriteString(fence + "\n")
	for i, l := range lines {
		if len(l) > budget {
			fmt.Fprintf(b, "… and %d more errors\n", len(lines)-i)
			break
		}
		budget -= len(l)
		b.WriteString(l)
	}
	b.WriteString(fence + "\n")
}

// writeMarkdownObjects writes the changes in budget bytes: as many collapsed
// diffs as fit (see fit), then the next ones as one line each in a collapsed
// list, then a count of the rest.
func writeMarkdownObjects(b *bytes.Buffer, changes []ObjectChange, budget int) {
	short := make([]string, len(changes))
	for i, c := range changes {
		short[i] = truncate(actionSign(c.Action)+" "+c.title(), maxLineBytes) + "\n"
	}
	fence := fenceFor(short...)
	// The names-only list's wrapper and the count line, at their longest.
	listHead := func(n int) string {
		return fmt.Sprintf("\n<details><summary>%d more objects, names only</summary>\n\n%s\n", n, fence)
	}
	listTail := fence + "\n\n</details>\n"
	more := func(n int) string { return fmt.Sprintf("\n… and %d more objects.\n", n) }
	overhead := len(listHead(len(changes))) + len(listTail) + len(more(len(changes)))

	var full []string
	fullSize := func(i int) int {
		for len(full) <= i {
			full = append(full, markdownObject(changes[len(full)]))
		}
		return len(full[i])
	}
	nFull, nShort := fit(budget, len(changes), fullSize, short, overhead)
	for _, block := range full[:nFull] {
		b.WriteString(block)
	}
	if nShort > 0 {
		b.WriteString(listHead(nShort))
		for _, l := range short[nFull : nFull+nShort] {
			b.WriteString(l)
		}
		b.WriteString(listTail)
	}
	if rest := len(changes) - nFull - nShort; rest > 0 {
		b.WriteString(more(rest))
	}
}

// fit decides how many of n items show in full and how many of the next
// ones as a short line, in budget bytes. All show in full if they fit.
// Otherwise items show in full while they leave room for the short lines of
// all the others (but never more than a third of the budget), then as short
// lines while those fit; overhead is what the short lines' wrapper and a
// count of the rest take. fullSize is called for the first items only, up
// to the one where the total passes the budget.
func fit(budget, n int, fullSize func(int) int, short []string, overhead int) (nFull, nShort int) {
	total := 0
	for i := 0; i < n && total <= budget; i++ {
		total += fullSize(i)
	}
	if total <= budget {
		return n, 0
	}
	suffix := make([]int, n+1) // suffix[i]: the short lines of items i…n-1
	for i := n - 1; i >= 0; i-- {
		suffix[i] = suffix[i+1] + len(short[i])
	}
	budget -= overhead
	used := 0
	for nFull < n && used+fullSize(nFull)+min(suffix[nFull+1], budget/3) <= budget {
		used += fullSize(nFull)
		nFull++
	}
	for nFull+nShort < n && used+len(short[nFull+nShort]) <= budget {
		used += len(short[nFull+nShort])
		nShort++
	}
	return nFull, nShort
}

// markdownObject is one object as a <details> block around a diff.
// The summary is raw HTML (markdown is not parsed there), so it is entity-escaped;
// the diff is literal text, so it only needs a fence its content cannot close.
func markdownObject(c ObjectChange) string {
	var diff []string
	for i, f := range c.Fields {
		if i == maxFieldsPerObject {
			diff = append(diff, fmt.Sprintf("… and %d more fields\n", len(c.Fields)-i))
			break
		}
		if f.Old != nil {
			diff = append(diff, truncate("- "+f.Path+": "+string(f.Old), maxLineBytes)+"\n")
		}
		if f.New != nil {
			diff = append(diff, truncate("+ "+f.Path+": "+string(f.New), maxLineBytes)+"\n")
		}
	}
	if len(c.Fields) == 0 {
		diff = append(diff, "(no field-level differences)\n")
	}
	fence := fenceFor(diff...)
	return fmt.Sprintf("\n<details><summary><code>%s %s</code></summary>\n\n%sdiff\n%s%s\n\n</details>\n",
		actionSign(c.Action), escapeMarkdown(truncate(c.title(), maxLineBytes)), fence, strings.Join(diff, ""), fence)
}

// hostsSection is the "On the hosts" section: every entry in full (three
// lines) and as one short line, inside one fence.
type hostsSection struct {
	full, short []string
	fence       string
}

const hostsHeading = "\n#### On the hosts\n\nWhat the agents will write and run (each host's policy decides):\n\n"

func newHostsSection(hosts []HostChange) hostsSection {
	s := hostsSection{full: make([]string, len(hosts)), short: make([]string, len(hosts))}
	for i, h := range hosts {
		agents := h.Agents
		if len(agents) > maxHostAgents {
			agents = append(agents[:maxHostAgents:maxHostAgents], fmt.Sprintf("… and %d more agents", len(h.Agents)-maxHostAgents))
		}
		title := h.Title() + " (" + strings.Join(h.Changed, ", ") + ")"
		s.full[i] = truncate(title+" on "+listOrNone(agents), maxLineBytes) + "\n" +
			truncate("  files:  "+listOrNone(h.Paths), maxLineBytes) + "\n" +
			truncate("  reload: "+argvOrNone(h.Reload), maxLineBytes) + "\n"
		s.short[i] = truncate(title+" on "+plural(len(h.Agents), "agent"), maxLineBytes) + "\n"
	}
	s.fence = fenceFor(append(s.full, s.short...)...)
	return s
}

// overhead is the heading, the fences and the count line at its longest.
func (s hostsSection) overhead() int {
	return len(hostsHeading) + 2*(len(s.fence)+1) + len(s.more(len(s.full)))
}

func (s hostsSection) more(n int) string {
	return fmt.Sprintf("… and %d more certificates\n", n)
}

// fullSize is the section's size with every entry in full.
func (s hostsSection) fullSize() int {
	n := s.overhead()
	for _, e := range s.full {
		n += len(e)
	}
	return n
}

// write writes the section in budget bytes: entries in full, then short
// lines, then a count of the rest (see fit).
func (s hostsSection) write(b *bytes.Buffer, budget int) {
	nFull, nShort := fit(budget-s.overhead(), len(s.full), func(i int) int { return len(s.full[i]) }, s.short, 0)
	b.WriteString(hostsHeading + s.fence + "\n")
	for _, e := range s.full[:nFull] {
		b.WriteString(e)
	}
	for _, e := range s.short[nFull : nFull+nShort] {
		b.WriteString(e)
	}
	if rest := len(s.full) - nFull - nShort; rest > 0 {
		b.WriteString(s.more(rest))
	}
	b.WriteString(s.fence + "\n")
}

// fenceFor is a code fence that none of lines can close: backticks, one
// more than the longest run in them, and at least three.
func fenceFor(lines ...string) string {
	longest := 0
	for _, l := range lines {
		longest = max(longest, longestRun(l, '`'))
	}
	return strings.Repeat("`", max(3, longest+1))
}

// truncate cuts s to at most n bytes on a character boundary, ending it
// with "…" when it cuts.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
