package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"github.com/certops/certops/envflag"
	"github.com/certops/certops/failure"
)

// terminal is how the operator commands print: the width tables are cut
// to (0: unlimited, when stdout is not a terminal) and whether states are
// coloured (only on a terminal, and never with NO_COLOR set).
type terminal struct {
	w     io.Writer
	width int
	color bool
	now   time.Time
}

// newTerminal inspects stdout: a terminal's width and colours, or a plain
// writer's unlimited width without colours.
func newTerminal(env cliEnv) terminal {
	t := terminal{w: env.stdout, now: time.Now()}
	f, ok := env.stdout.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return t
	}
	if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
		t.width = w
	}
	t.color = colorAllowed(true, env.getenv)
	return t
}

// colorAllowed is the colour rule: on a terminal, unless NO_COLOR is set
// to anything (https://no-color.org) or TERM is dumb.
func colorAllowed(tty bool, getenv func(string) string) bool {
	return tty && getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"
}

// ANSI colours of states.
const (
	green  = "32"
	yellow = "33"
	red    = "31"
)

// stateColor is the colour of a state word, "" for none.
func stateColor(s string) string {
	switch s {
	case "installed", "online", "applied", "True", "Ready", "ready":
		return green
	case "pending", "issued", "prune-blocked", "untrusted", "Unknown", "Reconciling", "warning":
		return yellow
	case "issue-failed", "failed", "rolled-back", "offline", "invalid", "False", "Stalled", "critical", "not ready":
		return red
	}
	return ""
}

// paint colours s by its state word when colours are on.
func (t terminal) paint(s string) string {
	return t.paintAs(s, s)
}

// paintAs colours s as the state word says.
func (t terminal) paintAs(s, state string) string {
	c := stateColor(state)
	if !t.color || c == "" || s == "" {
		return s
	}
	return "\x1b[" + c + "m" + s + "\x1b[0m"
}

// table is rows of cells under a header. The cells of the states columns
// are coloured by the state word they hold, or by the one stateOf, when
// set, says for the row.
type table struct {
	header  []string
	rows    [][]string
	states  []int
	stateOf func(row int, cell string) string
}

// print writes the table with columns two spaces apart, cut to the
// terminal's width: the widest column is narrowed (its cells end in "…")
// until the table fits or every column is down to a few characters.
func (t terminal) print(tb table) {
	widths := make([]int, len(tb.header))
	for i, h := range tb.header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range tb.rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	if t.width > 0 {
		const minWidth, gap = 6, 2
		for {
			total := gap * (len(widths) - 1)
			widest := 0
			for i, w := range widths {
				total += w
				if w > widths[widest] {
					widest = i
				}
			}
			if total <= t.width || widths[widest] <= minWidth {
				break
			}
			widths[widest] = max(minWidth, widths[widest]-(total-t.width))
		}
	}
	isState := map[int]bool{}
	for _, c := range tb.states {
		isState[c] = true
	}
	line := func(row int, cells []string) {
		var b strings.Builder
		for i, c := range cells {
			cut := cutTo(c, widths[i])
			pad := widths[i] - utf8.RuneCountInString(cut)
			if row >= 0 && isState[i] {
				word := c
				if tb.stateOf != nil {
					word = tb.stateOf(row, c)
				}
				cut = t.paintAs(cut, word)
			}
			b.WriteString(cut)
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", pad+2))
			}
		}
		fmt.Fprintln(t.w, strings.TrimRight(b.String(), " "))
	}
	line(-1, tb.header)
	for i, r := range tb.rows {
		line(i, r)
	}
}

// cutTo shortens s to n characters, ending in "…" when cut.
func cutTo(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// ago is a time relative to now, "5m ago" or "in 81d"; "" for nil.
func (t terminal) ago(at *time.Time) string {
	if at == nil || at.IsZero() {
		return ""
	}
	d := t.now.Sub(*at)
	if d < 0 {
		return "in " + envflag.Approx(-d)
	}
	return envflag.Approx(d) + " ago"
}

// when is an absolute time with its relative one: "2027-02-24T18:00:00Z (in 81d)".
func (t terminal) when(at *time.Time) string {
	if at == nil || at.IsZero() {
		return "-"
	}
	return at.UTC().Format(time.RFC3339) + " (" + t.ago(at) + ")"
}

// Output formats of the operator commands.
const (
	outTable = "table"
	outWide  = "wide"
	outJSON  = "json"
	outYAML  = "yaml"
)

// checkOutput is bad usage unless o is one of formats.
func checkOutput(o string, formats ...string) error {
	for _, f := range formats {
		if o == f {
			return nil
		}
	}
	return failure.New(failure.Usage, fmt.Sprintf("-o %q: want one of %s", o, strings.Join(formats, ", ")))
}

// printValue writes v as indented JSON or as YAML (the same document:
// sigs.k8s.io/yaml converts the JSON, so field names are the API's).
func printValue(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == outYAML {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
